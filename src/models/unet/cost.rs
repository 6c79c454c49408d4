//! Multiply-accumulate counts read off a graph: convolutions (and their backward ops) and
//! matrix products (linear layers and attention). Element-wise work is left out, as in the
//! usual "MACs per forward" figures.

use crate::graph::{Graph, NodeId, Op};
use crate::tensor::numel;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Macs {
    /// Convolutions, forward and backward.
    pub conv: u64,
    /// Matrix products (linear layers, attention).
    pub matmul: u64,
}

impl Macs {
    pub fn total(&self) -> u64 {
        self.conv + self.matmul
    }
}

/// MACs of the nodes that `outputs` depend on.
pub fn graph_macs(g: &Graph, outputs: &[NodeId]) -> Macs {
    let mut needed = vec![false; g.len()];
    for o in outputs {
        needed[o.0] = true;
    }
    let mut m = Macs::default();
    for i in (0..g.len()).rev() {
        if !needed[i] {
            continue;
        }
        let node = &g.nodes[i];
        for j in &node.inputs {
            needed[j.0] = true;
        }
        let shape_of = |k: usize| g.shape(node.inputs[k]);
        let per_output = |w: &[usize]| (w[1] * w[2] * w[3]) as u64;
        match &node.op {
            // Every output (forward) or every dy element (backward) meets one filter.
            Op::Conv2d(_) | Op::Conv2dBackwardInput { .. } => {
                let (n, w) = match &node.op {
                    Op::Conv2d(_) => (numel(&node.shape), shape_of(1)),
                    _ => (numel(shape_of(0)), shape_of(1)),
                };
                m.conv += n as u64 * per_output(w);
            }
            Op::Conv2dBackwardWeight { w_shape, .. } => {
                m.conv += numel(shape_of(1)) as u64 * per_output(w_shape);
            }
            Op::MatMul { trans_a, .. } => {
                let a = shape_of(0);
                let k = if *trans_a {
                    a[a.len() - 2]
                } else {
                    a[a.len() - 1]
                };
                m.matmul += numel(&node.shape) as u64 * k as u64;
            }
            _ => {}
        }
    }
    m
}
