//! Backend parity: runs a case's forward and VJPs on any backend with the same inputs and
//! cotangent, so two backends (or two element types) can be compared value by value. The
//! f32-vs-f64 CPU test uses it now; the CUDA-vs-CPU test can call it unchanged.

use super::cases::{Case, COTANGENT};
use super::CheckError;
use crate::backend::Backend;
use crate::exec::Executor;
use crate::graph::plan::PlanOptions;
use crate::tensor::{random, Tensor};

/// A case's output and its input gradients (in `CaseGraph::wrt` order), widened to f64.
#[derive(Clone, Debug)]
pub struct CaseValues {
    /// "output", then "d/d<input>" for each differentiable input.
    pub names: Vec<String>,
    pub values: Vec<Tensor<f64>>,
}

/// Evaluates `case` on `backend`: inputs drawn with `seed` (f32-representable), the
/// cotangent drawn from `seed` too, so every backend sees identical values.
pub fn eval_case<B: Backend>(backend: B, case: &Case, seed: u64) -> Result<CaseValues, CheckError> {
    eval_case_with(backend, case, seed, PlanOptions::default())
}

/// [`eval_case`] on an arena filled with NaN first ([`Executor::poison`]), so an output
/// element the backend never writes shows as NaN and fails any comparison.
pub fn eval_case_poisoned<B: Backend>(
    backend: B,
    case: &Case,
    seed: u64,
) -> Result<CaseValues, CheckError> {
    eval_case_inner(backend, case, seed, PlanOptions::default(), true)
}

/// [`eval_case`] with explicit plan options (memory reuse on or off).
pub fn eval_case_with<B: Backend>(
    backend: B,
    case: &Case,
    seed: u64,
    opts: PlanOptions,
) -> Result<CaseValues, CheckError> {
    eval_case_inner(backend, case, seed, opts, false)
}

fn eval_case_inner<B: Backend>(
    backend: B,
    case: &Case,
    seed: u64,
    opts: PlanOptions,
    poison: bool,
) -> Result<CaseValues, CheckError> {
    let cg = if case.differentiable {
        case.grad_graph()?
    } else {
        case.forward_graph()?
    };
    let xs = case.draw_inputs(seed);
    let mut outs = vec![cg.output];
    outs.extend(&cg.grads);
    let mut ex = Executor::new(backend, &cg.graph, &outs, opts)?;
    if poison {
        ex.poison(f32::NAN)?;
    }
    for (s, x) in case.inputs.iter().zip(&xs) {
        ex.set_input(&s.name, &x.cast())?;
    }
    if cg.cotangent.is_some() {
        let shape = cg.graph.shape(cg.output).to_vec();
        let r: Tensor<f64> = random::normal(&mut random::rng(seed ^ 0xc07a), &shape, 1.0);
        ex.set_input(COTANGENT, &r.cast::<f32>().cast())?;
    }
    ex.run()?;
    let mut names = vec!["output".to_string()];
    names.extend(
        cg.wrt
            .iter()
            .map(|&k| format!("d/d{}", case.inputs[k].name)),
    );
    let values = outs
        .iter()
        .map(|&o| Ok(ex.output(o)?.cast()))
        .collect::<Result<_, CheckError>>()?;
    Ok(CaseValues { names, values })
}

/// Per value, ‖a − b‖ / ‖b‖ (b the reference), with the value's name.
pub fn compare(a: &CaseValues, reference: &CaseValues) -> Vec<(String, f64)> {
    a.names
        .iter()
        .zip(a.values.iter().zip(&reference.values))
        .map(|(n, (x, y))| (n.clone(), x.rel_err(y)))
        .collect()
}
