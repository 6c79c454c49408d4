//! Weight gradients (training): the VJP with respect to the `Const` weight nodes of a layer or
//! a whole network, checked against finite differences in f64 on the CPU backend.
//!
//! The op-level checker ([`super::vjp`]) feeds every argument as an `Input`; training asks
//! reverse mode for gradients of `Const` nodes bound by checkpoint key, through composite
//! layers (linear, batch norm in both modes, attention) and whole networks (SDE, DGSA,
//! SwinIR). Here the graph is built exactly as the trainer builds it, the gradients are
//! appended with the weights in `wrt`, and only then are the `Const` nodes turned into
//! `Input`s of the same name, so the weights can be moved in f64 for the finite
//! differences (binding a constant rounds it to f32).
//!
//! Stencil and tolerance as in [`super::vjp`] (5-point, relative steps, [`super::vjp::TOL`]).
//! Networks with LeakyReLU are piecewise linear: a step that carries a pre-activation across 0
//! makes the stencil wrong by up to |Δslope·step| for that element, so those cases use a
//! step of 10⁻⁵ (straddling becomes ~10⁻⁵ as likely) and the rounding noise, ε·Σ|f·r|/h ≈
//! 10⁻¹⁰ relative, stays far below the tolerance.

use super::cases::{draw, Draw, InputSpec, COTANGENT};
use super::vjp::worst;
use super::CheckError;
use crate::backend::cpu::CpuBackend;
use crate::exec::Executor;
use crate::graph::plan::PlanOptions;
use crate::graph::{autodiff::grad, Graph, NodeId, Op, Result as GResult};
use crate::tensor::{random, Tensor};
use std::fmt;
use std::sync::Arc;

pub type WeightBuildFn = dyn Fn(&mut Graph, &[NodeId]) -> GResult<NodeId> + Send + Sync;

/// A layer or network whose weights are `Const` nodes; `inputs` are its data inputs
/// (checked too where `grad` is set).
#[derive(Clone)]
pub struct WeightCase {
    pub name: String,
    pub inputs: Vec<InputSpec>,
    pub build: Arc<WeightBuildFn>,
    /// Finite-difference step relative to each tensor's RMS value.
    pub h: f64,
    /// Largest relative error that passes ([`super::vjp::TOL`] unless a case says why).
    pub tol: f64,
}

#[derive(Clone, Debug)]
pub struct WeightGradReport {
    pub name: String,
    pub shape: Vec<usize>,
    pub is_weight: bool,
    pub dir_rel: f64,
    pub elem_rel: Option<f64>,
    pub grad_norm: f64,
}

#[derive(Clone, Debug)]
pub struct WeightReport {
    pub case: String,
    pub grads: Vec<WeightGradReport>,
    pub joint_rel: f64,
    pub evals: usize,
}

impl WeightReport {
    pub fn max_rel(&self) -> f64 {
        self.grads
            .iter()
            .flat_map(|g| [g.dir_rel, g.elem_rel.unwrap_or(0.0)])
            .fold(self.joint_rel, worst)
    }
    pub fn weights_checked(&self) -> usize {
        self.grads.iter().filter(|g| g.is_weight).count()
    }
}

impl fmt::Display for WeightReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: max rel {:.2e} (joint {:.2e}, {} weights, {} evals)",
            self.case,
            self.max_rel(),
            self.joint_rel,
            self.weights_checked(),
            self.evals
        )?;
        for g in &self.grads {
            write!(f, "  d/d{} {:?}: dir {:.2e}", g.name, g.shape, g.dir_rel)?;
            if let Some(e) = g.elem_rel {
                write!(f, ", per-element {e:.2e}")?;
            }
            writeln!(f, ", |grad| {:.3e}", g.grad_norm)?;
        }
        Ok(())
    }
}

/// How a weight named `name` is drawn: variances positive, matrices scaled by fan-in so
/// activations stay O(1) through a network, vectors (biases, norm scales) O(1).
pub fn weight_draw(name: &str, shape: &[usize]) -> Draw {
    if name.ends_with("running_var") {
        Draw::Uniform(0.5, 2.0)
    } else if shape.len() >= 2 {
        let fan_in: usize = shape[1..].iter().product();
        Draw::Normal(1.0 / (fan_in.max(1) as f64).sqrt())
    } else if name.ends_with("bn.weight") || name.ends_with("norm.weight") {
        Draw::Uniform(0.5, 1.5)
    } else {
        Draw::Normal(0.5)
    }
}

/// The case's graph with gradients of every weight and every `grad` input, weights then
/// turned into inputs; returns (graph, output, names checked, their nodes, gradient nodes).
struct Built {
    graph: Graph,
    output: NodeId,
    names: Vec<String>,
    shapes: Vec<Vec<usize>>,
    is_weight: Vec<bool>,
    grads: Vec<NodeId>,
}

fn build(case: &WeightCase) -> Result<Built, CheckError> {
    let mut g = Graph::new();
    let ins: Vec<NodeId> = case
        .inputs
        .iter()
        .map(|s| g.input(&s.name, &s.shape))
        .collect();
    let output = (case.build)(&mut g, &ins)?;
    let mut names = vec![];
    let mut shapes = vec![];
    let mut is_weight = vec![];
    let mut wrt = vec![];
    for (i, n) in g.nodes.iter().enumerate() {
        if let Op::Const { name } = &n.op {
            if names.contains(name) {
                return Err(CheckError::Exec(format!(
                    "{}: weight {name} is used by two nodes; the checker moves one node per name",
                    case.name
                )));
            }
            names.push(name.clone());
            shapes.push(n.shape.clone());
            is_weight.push(true);
            wrt.push(NodeId(i));
        }
    }
    for (s, &id) in case.inputs.iter().zip(&ins) {
        if s.grad {
            names.push(s.name.clone());
            shapes.push(s.shape.clone());
            is_weight.push(false);
            wrt.push(id);
        }
    }
    let ys = g.shape(output).to_vec();
    let ct = g.input(COTANGENT, &ys);
    let grads = grad(&mut g, &[(output, ct)], &wrt)?;
    for n in g.nodes.iter_mut() {
        if let Op::Const { name } = &n.op {
            n.op = Op::Input { name: name.clone() };
        }
    }
    Ok(Built {
        graph: g,
        output,
        names,
        shapes,
        is_weight,
        grads,
    })
}

/// Checks the gradient of ⟨f, r⟩ with respect to every weight of `case` (and its `grad`
/// inputs) along random directions, jointly, and element by element for tensors of at
/// most `full_fd_max` elements.
pub fn check_weights(
    case: &WeightCase,
    seed: u64,
    full_fd_max: usize,
) -> Result<WeightReport, CheckError> {
    let b = build(case)?;
    let mut rng = random::rng(seed);
    // Values of every graph input: data inputs by their spec, weights by `weight_draw`.
    let mut values: Vec<(String, Tensor<f64>)> = vec![];
    for s in &case.inputs {
        values.push((s.name.clone(), draw(&mut rng, &s.shape, &s.draw)));
    }
    for (k, name) in b.names.iter().enumerate() {
        if b.is_weight[k] {
            let d = weight_draw(name, &b.shapes[k]);
            values.push((name.clone(), draw(&mut rng, &b.shapes[k], &d)));
        }
    }
    let ys = b.graph.shape(b.output).to_vec();
    let r: Tensor<f64> = random::normal(&mut rng, &ys, 1.0);

    let no_reuse = PlanOptions { reuse: false };
    let mut gex = Executor::new(CpuBackend::<f64>::new(), &b.graph, &b.grads, no_reuse)?;
    for (n, v) in &values {
        gex.set_input(n, v)?;
    }
    gex.set_input(COTANGENT, &r)?;
    gex.run()?;
    let grads: Vec<Tensor<f64>> = b
        .grads
        .iter()
        .map(|&id| gex.output(id))
        .collect::<Result<_, _>>()?;

    let mut fex = Executor::new(
        CpuBackend::<f64>::new(),
        &b.graph,
        &[b.output],
        PlanOptions::default(),
    )?;
    let mut evals = 0usize;
    let index_of = |name: &str| values.iter().position(|(n, _)| n == name).expect("drawn");
    let slots: Vec<usize> = b.names.iter().map(|n| index_of(n)).collect();
    let scales: Vec<f64> = slots
        .iter()
        .map(|&s| {
            let x = &values[s].1;
            (x.dot(x) / x.numel().max(1) as f64).sqrt().max(1e-3)
        })
        .collect();

    // L along `dirs` (one per checked tensor) at offset t.
    let mut loss_at = |dirs: &[Option<&Tensor<f64>>], t: f64| -> Result<(f64, f64), CheckError> {
        for (n, v) in &values {
            fex.set_input(n, v)?;
        }
        for (k, d) in dirs.iter().enumerate() {
            if let Some(d) = d {
                let mut x = values[slots[k]].1.clone();
                x.data
                    .iter_mut()
                    .zip(&d.data)
                    .for_each(|(a, b)| *a += t * b);
                fex.set_input(&b.names[k], &x)?;
            }
        }
        fex.run()?;
        evals += 1;
        let y = fex.output(b.output)?;
        let mag: f64 = y.data.iter().zip(&r.data).map(|(a, c)| (a * c).abs()).sum();
        Ok((y.dot(&r), mag))
    };
    let h = case.h;
    let mut derivative = |dirs: &[Option<&Tensor<f64>>]| -> Result<(f64, f64), CheckError> {
        let (p1, m1) = loss_at(dirs, h)?;
        let (n1, m2) = loss_at(dirs, -h)?;
        let (p2, m3) = loss_at(dirs, 2.0 * h)?;
        let (n2, m4) = loss_at(dirs, -2.0 * h)?;
        let d = (8.0 * (p1 - n1) - (p2 - n2)) / (12.0 * h);
        Ok((d, f64::EPSILON * (m1 + m2 + m3 + m4) / h))
    };
    let rel = |fd: f64, an: f64, typical: f64, noise: f64| {
        let denom = fd
            .abs()
            .max(an.abs())
            .max(typical)
            .max(100.0 * noise)
            .max(f64::MIN_POSITIVE);
        (fd - an).abs() / denom
    };

    let n = b.names.len();
    let mut reports = vec![];
    for k in 0..n {
        let g = &grads[k];
        let mut dir_rel: f64 = 0.0;
        for _ in 0..2 {
            let d: Tensor<f64> = random::normal(&mut rng, &b.shapes[k], scales[k]);
            let an = g.dot(&d);
            let typical = g.norm() * d.norm() / (d.numel() as f64).sqrt();
            let mut dirs: Vec<Option<&Tensor<f64>>> = vec![None; n];
            dirs[k] = Some(&d);
            let (fd, noise) = derivative(&dirs)?;
            dir_rel = worst(dir_rel, rel(fd, an, typical, noise));
        }
        let elem_rel = if g.numel() <= full_fd_max {
            let gmax = g.data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let mut e_rel: f64 = 0.0;
            for j in 0..g.numel() {
                let mut e = Tensor::zeros(&b.shapes[k]);
                e.data[j] = scales[k];
                let mut dirs: Vec<Option<&Tensor<f64>>> = vec![None; n];
                dirs[k] = Some(&e);
                let (fd, noise) = derivative(&dirs)?;
                let denom = gmax.max(100.0 * noise / scales[k]).max(f64::MIN_POSITIVE);
                e_rel = worst(e_rel, (fd / scales[k] - g.data[j]).abs() / denom);
            }
            Some(e_rel)
        } else {
            None
        };
        reports.push(WeightGradReport {
            name: b.names[k].clone(),
            shape: b.shapes[k].clone(),
            is_weight: b.is_weight[k],
            dir_rel,
            elem_rel,
            grad_norm: g.norm(),
        });
    }
    // All tensors at once: catches gradients that are right alone but accumulate wrongly.
    let mut joint_rel: f64 = 0.0;
    for _ in 0..2 {
        let ds: Vec<Tensor<f64>> = (0..n)
            .map(|k| random::normal(&mut rng, &b.shapes[k], scales[k]))
            .collect();
        let (mut an, mut var) = (0.0, 0.0);
        for k in 0..n {
            an += grads[k].dot(&ds[k]);
            var += grads[k].dot(&grads[k]) * ds[k].dot(&ds[k]) / ds[k].numel() as f64;
        }
        let dirs: Vec<Option<&Tensor<f64>>> = ds.iter().map(Some).collect();
        let (fd, noise) = derivative(&dirs)?;
        joint_rel = worst(joint_rel, rel(fd, an, var.sqrt(), noise));
    }
    Ok(WeightReport {
        case: case.name.clone(),
        grads: reports,
        joint_rel,
        evals,
    })
}
