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

/// MACs of node `i` alone.
pub fn node_macs(g: &Graph, i: usize) -> Macs {
    let node = &g.nodes[i];
    let shape_of = |k: usize| g.shape(node.inputs[k]);
    let per_output = |w: &[usize]| (w[1] * w[2] * w[3]) as u64;
    let mut m = Macs::default();
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
        Op::Attention { layout, .. } | Op::AttentionBackward { layout, .. } => {
            let wrt = match &node.op {
                Op::AttentionBackward { wrt, .. } => Some(*wrt),
                _ => None,
            };
            if let Ok(d) = layout.dims(shape_of(0), shape_of(1), shape_of(2)) {
                m.matmul += crate::graph::AttnLayout::macs(&d, wrt);
            }
        }
        _ => {}
    }
    m
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
        for j in &g.nodes[i].inputs {
            needed[j.0] = true;
        }
        let n = node_macs(g, i);
        m.conv += n.conv;
        m.matmul += n.matmul;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::autodiff::grad;

    #[test]
    fn counts_conv_and_matmul_macs() {
        let mut g = Graph::new();
        let x = g.input("x", &[2, 4, 8, 8]);
        let w = g.constant("w", &[6, 2, 3, 3]);
        let y = g.conv2d(x, w, None, 2, 1, 2).unwrap(); // [2, 6, 4, 4]
        let a = g.input("a", &[3, 5, 7]);
        let b = g.input("b", &[7, 9]);
        let m = g.matmul(a, b, false, false).unwrap(); // [3, 5, 9], k = 7
        let unused = g.conv2d(x, w, None, 1, 1, 2).unwrap();
        let got = graph_macs(&g, &[y, m]);
        assert_eq!(got.conv, (2 * 6 * 4 * 4) * (2 * 3 * 3));
        assert_eq!(got.matmul, 3 * 5 * 9 * 7);
        assert!(graph_macs(&g, &[unused]).conv > 0);
        // The input gradient of a conv costs as much as the conv (and, the conv being
        // linear in x, does not need the forward value).
        let loss = g.sum_all(y).unwrap();
        let one = g.fill(1.0, &[]);
        let gx = grad(&mut g, &[(loss, one)], &[x]).unwrap()[0];
        assert_eq!(graph_macs(&g, &[gx]).conv, got.conv);
        assert_eq!(graph_macs(&g, &[y, gx]).conv, 2 * got.conv);
    }
}
