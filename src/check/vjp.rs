//! The VJP checker: for a case f and a random cotangent r, the gradients that reverse mode
//! computes must equal the derivatives of the scalar L(x) = ⟨f(x), r⟩ measured by finite
//! differences, all in f64 on the CPU backend.
//!
//! Checked three ways: along random directions of each input alone (catches a wrong
//! gradient of one argument), along random directions of all inputs at once (catches wrong
//! accumulation between arguments), and element by element for small inputs (catches
//! errors a random direction could average away, such as one wrong border pixel).
//!
//! Accuracy and tolerance. The derivative along d is the 5-point stencil
//! D = (8(L(h) − L(−h)) − (L(2h) − L(−2h))) / 12h with h = 10⁻³, whose truncation error is
//! h⁴·|L⁽⁵⁾|/30 ≈ 3·10⁻¹⁴·|L⁽⁵⁾| and whose rounding error is about ε·Σ|fᵢrᵢ|/h ≈ 10⁻¹³·Σ|fᵢrᵢ|
//! (ε = 2.2·10⁻¹⁶). For the O(1) inputs of the cases both are below 10⁻⁹ relative, while a
//! wrong VJP (a missing term, a transposed index, a dropped border) is off by 10⁻³ or
//! far more. [`TOL`] = 10⁻⁶ sits three decades above the noise and three below the
//! smallest real bug. Steps are scaled by each input's RMS value, so they are relative
//! steps of ~h whatever the input's spread. Inputs near kinks are drawn with unit spread
//! and kept 0.05 > 2h·max|dᵢ| away from them, so the stencil never straddles one. Op parameters are stored as f32 (scales, eps), which the forward and the
//! backward use alike, so f64 runs are consistent to well under the tolerance.

use super::cases::{Case, COTANGENT};
use super::CheckError;
use crate::backend::cpu::CpuBackend;
use crate::exec::Executor;
use crate::graph::plan::PlanOptions;
use crate::graph::NodeId;
use crate::tensor::{random, Tensor};
use std::fmt;

/// Relative error above which a gradient is wrong (see the module notes).
pub const TOL: f64 = 1e-6;

#[derive(Clone, Debug)]
pub struct VjpOptions {
    /// Random directions per input, and again for all inputs jointly.
    pub directions: usize,
    /// Finite-difference step along a direction with N(0,1) entries, in units of the
    /// input's RMS value.
    pub h: f64,
    /// Inputs with at most this many elements are also checked element by element.
    pub full_fd_max: usize,
    /// Overrides the case's own seed.
    pub seed: Option<u64>,
}

impl Default for VjpOptions {
    fn default() -> Self {
        VjpOptions {
            directions: 3,
            h: 1e-3,
            full_fd_max: 128,
            seed: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct InputReport {
    pub name: String,
    pub shape: Vec<usize>,
    /// Max relative error over random directions of this input alone.
    pub dir_rel: f64,
    /// Max over elements of |FD − grad| / ‖grad‖∞, when checked element by element.
    pub elem_rel: Option<f64>,
    /// ‖grad‖₂, to show the gradient is not trivially zero.
    pub grad_norm: f64,
}

#[derive(Clone, Debug)]
pub struct VjpReport {
    pub case: String,
    pub inputs: Vec<InputReport>,
    /// Max relative error over random directions of all inputs at once.
    pub joint_rel: f64,
    /// Forward evaluations spent on finite differences.
    pub evals: usize,
}

impl VjpReport {
    /// The largest error of any kind.
    pub fn max_rel(&self) -> f64 {
        self.inputs
            .iter()
            .flat_map(|i| [i.dir_rel, i.elem_rel.unwrap_or(0.0)])
            .fold(self.joint_rel, worst)
    }

    pub fn passes(&self, tol: f64) -> bool {
        // False for NaN, so a NaN gradient fails.
        self.max_rel() <= tol
    }
}

impl fmt::Display for VjpReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: max rel {:.2e} (joint {:.2e}, {} evals)",
            self.case,
            self.max_rel(),
            self.joint_rel,
            self.evals
        )?;
        for i in &self.inputs {
            write!(f, "  d/d{} {:?}: dir {:.2e}", i.name, i.shape, i.dir_rel)?;
            if let Some(e) = i.elem_rel {
                write!(f, ", per-element {e:.2e}")?;
            }
            writeln!(f, ", |grad| {:.3e}", i.grad_norm)?;
        }
        Ok(())
    }
}

/// Forward evaluations of L(x) = ⟨f(x), r⟩ on one planned executor.
struct Loss {
    ex: Executor<CpuBackend<f64>>,
    names: Vec<String>,
    output: NodeId,
    r: Tensor<f64>,
    evals: usize,
}

impl Loss {
    /// L(x) and Σ|fᵢ·rᵢ| (the scale of its rounding error).
    fn eval(&mut self, xs: &[Tensor<f64>]) -> Result<(f64, f64), CheckError> {
        for (name, x) in self.names.iter().zip(xs) {
            self.ex.set_input(name, x)?;
        }
        self.ex.run()?;
        self.evals += 1;
        let y = self.ex.output(self.output)?;
        let l = y.dot(&self.r);
        let mag = y
            .data
            .iter()
            .zip(&self.r.data)
            .map(|(a, b)| (a * b).abs())
            .sum();
        Ok((l, mag))
    }

    /// 5-point derivative of L at xs along `dirs` (one per input; `None` = not moved), and
    /// the rounding-noise scale of that estimate.
    fn derivative(
        &mut self,
        xs: &[Tensor<f64>],
        dirs: &[Option<Tensor<f64>>],
        h: f64,
    ) -> Result<(f64, f64), CheckError> {
        let mut at = |t: f64| -> Result<(f64, f64), CheckError> {
            let moved: Vec<Tensor<f64>> = xs
                .iter()
                .zip(dirs)
                .map(|(x, d)| match d {
                    Some(d) => {
                        let mut x = x.clone();
                        x.data
                            .iter_mut()
                            .zip(&d.data)
                            .for_each(|(a, b)| *a += t * b);
                        x
                    }
                    None => x.clone(),
                })
                .collect();
            self.eval(&moved)
        };
        let (p1, m1) = at(h)?;
        let (n1, m2) = at(-h)?;
        let (p2, m3) = at(2.0 * h)?;
        let (n2, m4) = at(-2.0 * h)?;
        let d = (8.0 * (p1 - n1) - (p2 - n2)) / (12.0 * h);
        let noise = f64::EPSILON * (m1 + m2 + m3 + m4) / h;
        Ok((d, noise))
    }
}

/// The larger error, NaN if either is NaN (`f64::max` would drop a NaN and hide a bug).
pub fn worst(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// |fd − an| relative to the larger of the two, floored at `typical`, the standard
/// deviation of ⟨g, d⟩ over random directions d (‖g‖·σ_d): a random direction can make
/// ⟨g, d⟩ arbitrarily small by cancellation, and then the ratio would measure the
/// stencil's noise, not the gradient. Against that floor the ratio is the relative error
/// of the gradient itself, ‖δg‖/‖g‖. Also floored at 100× the stencil's rounding noise.
fn rel(fd: f64, an: f64, typical: f64, noise: f64) -> f64 {
    let denom = fd
        .abs()
        .max(an.abs())
        .max(typical)
        .max(100.0 * noise)
        .max(f64::MIN_POSITIVE);
    (fd - an).abs() / denom
}

/// Checks the VJPs of every differentiable input of `case`.
pub fn check_case(case: &Case, opts: &VjpOptions) -> Result<VjpReport, CheckError> {
    let cg = case.grad_graph()?;
    let seed = opts.seed.unwrap_or_else(|| case.seed());
    let xs = case.draw_inputs(seed);
    let mut rng = random::rng(seed ^ 0x5eed);
    let names: Vec<String> = case.inputs.iter().map(|s| s.name.clone()).collect();
    let fd = compare_with_fd(
        &FdProblem {
            graph: &cg.graph,
            output: cg.output,
            grads: &cg.grads,
            names: &names,
            values: &xs,
            checked: &cg.wrt,
        },
        &mut rng,
        opts,
    )?;
    Ok(VjpReport {
        case: format!("{}/{}", case.family, case.name),
        inputs: fd.inputs,
        joint_rel: fd.joint_rel,
        evals: fd.evals,
    })
}

/// A graph with its reverse-mode gradients, ready for [`compare_with_fd`]: `grads[i]` is the
/// gradient of ⟨output, r⟩ (r fed to the [`COTANGENT`] input) with respect to the input
/// `names[checked[i]]`; `values` are the values of every input in `names`.
pub(crate) struct FdProblem<'a> {
    pub graph: &'a crate::graph::Graph,
    pub output: NodeId,
    pub grads: &'a [NodeId],
    pub names: &'a [String],
    pub values: &'a [Tensor<f64>],
    pub checked: &'a [usize],
}

/// The comparison of each checked input's gradient with finite differences, and the joint one.
pub(crate) struct FdResult {
    pub inputs: Vec<InputReport>,
    pub joint_rel: f64,
    pub evals: usize,
}

/// The one finite-difference check shared by the op checker and the weight checker
/// (`weight_vjp`): reverse mode's gradients against the 5-point stencil along random
/// directions of each checked input alone, element by element for small ones, and along
/// random directions of all of them at once (when more than one).
pub(crate) fn compare_with_fd(
    p: &FdProblem,
    rng: &mut rand_chacha::ChaCha8Rng,
    opts: &VjpOptions,
) -> Result<FdResult, CheckError> {
    let xs = p.values;
    let out_shape = p.graph.shape(p.output).to_vec();
    let r: Tensor<f64> = random::normal(rng, &out_shape, 1.0);

    // Analytic gradients.
    let no_reuse = PlanOptions {
        reuse: false,
        ..Default::default()
    };
    let mut gex = Executor::new(CpuBackend::<f64>::new(), p.graph, p.grads, no_reuse)?;
    for (name, x) in p.names.iter().zip(xs) {
        gex.set_input(name, x)?;
    }
    gex.set_input(COTANGENT, &r)?;
    gex.run()?;
    let grads: Vec<Tensor<f64>> = p
        .grads
        .iter()
        .map(|&g| gex.output(g))
        .collect::<Result<_, _>>()?;

    let fex = Executor::new(
        CpuBackend::<f64>::new(),
        p.graph,
        &[p.output],
        PlanOptions::default(),
    )?;
    let mut loss = Loss {
        ex: fex,
        names: p.names.to_vec(),
        output: p.output,
        r,
        evals: 0,
    };

    // Steps are relative to each input's magnitude: a weight of std 0.1 moved by 10⁻³
    // per element would be a 1% step, and the stencil's h⁴ error would grow 10⁴-fold.
    let scales: Vec<f64> = xs
        .iter()
        .map(|x| (x.dot(x) / x.numel().max(1) as f64).sqrt().max(1e-3))
        .collect();
    let mut reports = vec![];
    for (gi, &k) in p.checked.iter().enumerate() {
        let shape = &xs[k].shape;
        let g = &grads[gi];
        let mut dir_rel: f64 = 0.0;
        for _ in 0..opts.directions {
            let d: Tensor<f64> = random::normal(rng, shape, scales[k]);
            let an = g.dot(&d);
            let mut dirs: Vec<Option<Tensor<f64>>> = vec![None; xs.len()];
            let typical = g.norm() * d.norm() / (d.numel() as f64).sqrt();
            dirs[k] = Some(d);
            let (fd, noise) = loss.derivative(xs, &dirs, opts.h)?;
            dir_rel = worst(dir_rel, rel(fd, an, typical, noise));
        }
        let elem_rel = if g.numel() <= opts.full_fd_max {
            let gmax = g.data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let mut elem: f64 = 0.0;
            for j in 0..g.numel() {
                let mut e = Tensor::zeros(shape);
                e.data[j] = scales[k];
                let mut dirs: Vec<Option<Tensor<f64>>> = vec![None; xs.len()];
                dirs[k] = Some(e);
                let (fd, noise) = loss.derivative(xs, &dirs, opts.h)?;
                let denom = gmax.max(100.0 * noise / scales[k]).max(f64::MIN_POSITIVE);
                elem = worst(elem, (fd / scales[k] - g.data[j]).abs() / denom);
            }
            Some(elem)
        } else {
            None
        };
        reports.push(InputReport {
            name: p.names[k].clone(),
            shape: shape.clone(),
            dir_rel,
            elem_rel,
            grad_norm: g.norm(),
        });
    }

    // All inputs at once: catches gradients that are right alone but accumulate wrongly.
    let mut joint_rel: f64 = 0.0;
    if p.checked.len() > 1 {
        for _ in 0..opts.directions {
            let mut dirs: Vec<Option<Tensor<f64>>> = vec![None; xs.len()];
            let (mut an, mut var) = (0.0, 0.0);
            for (gi, &k) in p.checked.iter().enumerate() {
                let d: Tensor<f64> = random::normal(rng, &xs[k].shape, scales[k]);
                an += grads[gi].dot(&d);
                var += grads[gi].dot(&grads[gi]) * d.dot(&d) / d.numel() as f64;
                dirs[k] = Some(d);
            }
            let (fd, noise) = loss.derivative(xs, &dirs, opts.h)?;
            joint_rel = worst(joint_rel, rel(fd, an, var.sqrt(), noise));
        }
    }
    Ok(FdResult {
        inputs: reports,
        joint_rel,
        evals: loss.evals,
    })
}
