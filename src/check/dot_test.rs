//! The dot-product test for a linear operator A and the op claimed to be its adjoint:
//! ⟨A x, y⟩ = ⟨x, Aᵀ y⟩ for random x and y. Unlike finite differences it is exact up to
//! rounding, so it pins down adjoints (convolution transposes, blur adjoints) to ~10⁻¹⁵ in
//! f64, including the borders and strides where adjoints usually go wrong.

use super::CheckError;
use crate::backend::Backend;
use crate::exec::Executor;
use crate::graph::plan::PlanOptions;
use crate::graph::{Conv2dParams, Graph, NodeId, Op, Result as GResult};
use crate::tensor::{random, Tensor};
use std::fmt;

pub type LinearFn = dyn Fn(&mut Graph, NodeId, &[NodeId]) -> GResult<NodeId> + Send + Sync;

/// A linear map x ↦ A x together with its claimed adjoint y ↦ Aᵀ y. Both may depend on
/// fixed parameters (a weight, a sigma) that are passed as graph inputs.
pub struct LinearCase {
    pub name: String,
    pub x_shape: Vec<usize>,
    /// Fixed, named arguments of the operator, in the order the builders receive them.
    pub params: Vec<(String, Tensor<f64>)>,
    pub forward: Box<LinearFn>,
    pub adjoint: Box<LinearFn>,
}

#[derive(Clone, Debug)]
pub struct DotReport {
    pub name: String,
    pub trials: usize,
    /// Max over trials of |⟨Ax,y⟩ − ⟨x,Aᵀy⟩| / (‖Ax‖·‖y‖).
    pub max_rel: f64,
}

impl fmt::Display for DotReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: dot test max rel {:.2e} over {} trials",
            self.name, self.max_rel, self.trials
        )
    }
}

/// Runs the dot-product test `trials` times on a fresh backend from `mk`. Relative errors
/// are scaled by ‖Ax‖‖y‖ (the Cauchy–Schwarz bound of both sides), so the expected value is
/// a few ulps of the element type: ~10⁻¹⁵ in f64, ~10⁻⁷ in f32.
pub fn dot_test<B: Backend>(
    mk: impl Fn() -> B,
    case: &LinearCase,
    trials: usize,
    seed: u64,
) -> Result<DotReport, CheckError> {
    let mut g = Graph::new();
    let x = g.input("x", &case.x_shape);
    let params: Vec<NodeId> = case
        .params
        .iter()
        .map(|(n, t)| g.input(n, &t.shape))
        .collect();
    let ax = (case.forward)(&mut g, x, &params)?;
    let y_shape = g.shape(ax).to_vec();
    let y = g.input("y", &y_shape);
    let aty = (case.adjoint)(&mut g, y, &params)?;
    if g.shape(aty) != case.x_shape.as_slice() {
        return Err(CheckError::Exec(format!(
            "{}: adjoint has shape {:?}, x has {:?}",
            case.name,
            g.shape(aty),
            case.x_shape
        )));
    }
    let mut ex = Executor::new(mk(), &g, &[ax, aty], PlanOptions::default())?;
    for (n, t) in &case.params {
        ex.set_input(n, &t.cast())?;
    }
    let mut rng = random::rng(seed);
    let mut max_rel: f64 = 0.0;
    for _ in 0..trials {
        let xv: Tensor<f64> = random::normal(&mut rng, &case.x_shape, 1.0);
        let yv: Tensor<f64> = random::normal(&mut rng, &y_shape, 1.0);
        // The backend sees xv, yv rounded to its type; compare on those exact values.
        let xb: Tensor<B::Elem> = xv.cast();
        let yb: Tensor<B::Elem> = yv.cast();
        ex.set_input("x", &xb)?;
        ex.set_input("y", &yb)?;
        ex.run()?;
        let axv: Tensor<f64> = ex.output(ax)?.cast();
        let atyv: Tensor<f64> = ex.output(aty)?.cast();
        let lhs = axv.dot(&yb.cast());
        let rhs = xb.cast::<f64>().dot(&atyv);
        let scale = (axv.norm() * yv.norm()).max(f64::MIN_POSITIVE);
        max_rel = super::vjp::worst(max_rel, (lhs - rhs).abs() / scale);
    }
    Ok(DotReport {
        name: case.name.clone(),
        trials,
        max_rel,
    })
}

/// Conv2d with respect to its input (weight fixed) against `Conv2dBackwardInput`.
pub fn conv_input_case(
    x_shape: [usize; 4],
    out_ch: usize,
    k: usize,
    p: Conv2dParams,
    seed: u64,
) -> LinearCase {
    let w_shape = [out_ch, x_shape[1] / p.groups, k, k];
    let w: Tensor<f64> = random::normal(&mut random::rng(seed), &w_shape, 1.0);
    let in_hw = (x_shape[2], x_shape[3]);
    LinearCase {
        name: format!(
            "conv2d x{x_shape:?} w{w_shape:?} s{} p{} g{}",
            p.stride, p.pad, p.groups
        ),
        x_shape: x_shape.to_vec(),
        params: vec![("w".into(), w.cast::<f32>().cast())],
        forward: Box::new(move |g, x, ps| g.conv2d(x, ps[0], None, p.stride, p.pad, p.groups)),
        adjoint: Box::new(move |g, y, ps| {
            g.push(Op::Conv2dBackwardInput { p, in_hw }, &[y, ps[0]])
        }),
    }
}
