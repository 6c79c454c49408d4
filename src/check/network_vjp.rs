//! The input gradient of a whole network with its weights fixed (a loss network such as
//! DISTS, whose weights are constants bound by name), against finite differences in f64
//! through the op checker's stencil ([`super::vjp::compare_with_fd`]).

use super::cases::COTANGENT;
use super::vjp::{compare_with_fd, FdProblem, VjpOptions, VjpReport};
use super::CheckError;
use crate::graph::{autodiff::grad, Graph, NodeId, Op};
use crate::tensor::{random, Tensor};

/// Checks ∂⟨f, r⟩/∂x for every input `x` named in `wrt`, `f` = `output` of `graph`
/// (built with its weights as `Const` nodes); `inputs` are the values of all the graph's
/// inputs, `weight` gives each constant's value (held fixed, not checked).
pub fn check_network(
    graph: &Graph,
    output: NodeId,
    inputs: &[(String, Tensor<f64>)],
    wrt: &[&str],
    weight: &dyn Fn(&str) -> Option<Tensor<f32>>,
    seed: u64,
    opts: &VjpOptions,
) -> Result<VjpReport, CheckError> {
    let mut g = graph.clone();
    let ids = wrt
        .iter()
        .map(|n| {
            g.find_input(n)
                .ok_or_else(|| CheckError::Exec(format!("no input {n}")))
        })
        .collect::<Result<Vec<NodeId>, _>>()?;
    let ys = g.shape(output).to_vec();
    let ct = g.input(COTANGENT, &ys);
    let grads = grad(&mut g, &[(output, ct)], &ids)?;
    let mut names: Vec<String> = inputs.iter().map(|i| i.0.clone()).collect();
    let mut values: Vec<Tensor<f64>> = inputs.iter().map(|i| i.1.clone()).collect();
    // Constants become inputs fed their fixed values: the stencil's executor binds inputs only.
    for n in g.nodes.iter_mut() {
        if let Op::Const { name } = &n.op {
            if names.contains(name) {
                return Err(CheckError::Exec(format!(
                    "constant {name} has two nodes; build each weight once"
                )));
            }
            {
                let w = weight(name)
                    .ok_or_else(|| CheckError::Exec(format!("no value for constant {name}")))?;
                names.push(name.clone());
                values.push(w.cast());
            }
            n.op = Op::Input { name: name.clone() };
        }
    }
    let checked = wrt
        .iter()
        .map(|n| {
            names
                .iter()
                .position(|m| m == n)
                .ok_or_else(|| CheckError::Exec(format!("no value for input {n}")))
        })
        .collect::<Result<Vec<usize>, _>>()?;
    let problem = FdProblem {
        graph: &g,
        output,
        grads: &grads,
        names: &names,
        values: &values,
        checked: &checked,
    };
    let mut rng = random::rng(seed);
    let fd = compare_with_fd(&problem, &mut rng, opts)?;
    Ok(VjpReport {
        case: "network".into(),
        inputs: fd.inputs,
        joint_rel: fd.joint_rel,
        evals: fd.evals,
    })
}
