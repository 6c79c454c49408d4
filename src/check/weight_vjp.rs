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
use super::vjp::{compare_with_fd, worst, FdProblem, InputReport, VjpOptions};
use super::CheckError;
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

impl WeightGradReport {
    fn new(r: InputReport, is_weight: bool) -> Self {
        WeightGradReport {
            name: r.name,
            shape: r.shape,
            is_weight,
            dir_rel: r.dir_rel,
            elem_rel: r.elem_rel,
            grad_norm: r.grad_norm,
        }
    }
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
/// most `full_fd_max` elements, with the op checker's finite differences
/// ([`super::vjp::compare_with_fd`]).
pub fn check_weights(
    case: &WeightCase,
    seed: u64,
    full_fd_max: usize,
) -> Result<WeightReport, CheckError> {
    let b = build(case)?;
    let mut rng = random::rng(seed);
    // Values of every graph input: data inputs by their spec, weights by `weight_draw`.
    let mut names: Vec<String> = vec![];
    let mut values: Vec<Tensor<f64>> = vec![];
    for s in &case.inputs {
        names.push(s.name.clone());
        values.push(draw(&mut rng, &s.shape, &s.draw));
    }
    for (k, name) in b.names.iter().enumerate() {
        if b.is_weight[k] {
            let d = weight_draw(name, &b.shapes[k]);
            names.push(name.clone());
            values.push(draw(&mut rng, &b.shapes[k], &d));
        }
    }
    let checked: Vec<usize> = b
        .names
        .iter()
        .map(|n| names.iter().position(|m| m == n).expect("drawn above"))
        .collect();
    let opts = VjpOptions {
        directions: 2,
        h: case.h,
        full_fd_max,
        seed: None,
    };
    let problem = FdProblem {
        graph: &b.graph,
        output: b.output,
        grads: &b.grads,
        names: &names,
        values: &values,
        checked: &checked,
    };
    let fd = compare_with_fd(&problem, &mut rng, &opts)?;
    Ok(WeightReport {
        case: case.name.clone(),
        grads: fd
            .inputs
            .into_iter()
            .zip(&b.is_weight)
            .map(|(r, &w)| WeightGradReport::new(r, w))
            .collect(),
        joint_rel: fd.joint_rel,
        evals: fd.evals,
    })
}
