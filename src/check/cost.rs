//! FLOP and byte counts of a case's graph, so a table row says how much work it checked (and
//! a GPU run can turn its time into a rate). FLOPs: 2 per multiply-add of the convolutions
//! and matrix products, one per output element elsewhere; bytes: every op's f32 inputs read
//! and its output written once (leaves and reshapes excluded: they move nothing).

use crate::graph::{Graph, Op};
use crate::tensor::numel;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    pub flops: u64,
    pub bytes: u64,
}

/// The cost of running every node of `g` once.
pub fn graph_cost(g: &Graph) -> Cost {
    let mut c = Cost::default();
    for n in &g.nodes {
        let out = numel(&n.shape) as u64;
        let shape = |i: usize| g.shape(n.inputs[i]).to_vec();
        let macs = match &n.op {
            Op::Input { .. } | Op::Const { .. } | Op::Fill { .. } | Op::Reshape { .. } => {
                continue;
            }
            // Output element × (input channels per group · kernel taps).
            Op::Conv2d(_) => {
                let w = shape(1);
                Some(out * (w[1] * w[2] * w[3]) as u64)
            }
            Op::Conv2dBackwardInput { p, .. } => {
                let w = shape(1);
                Some(out * (w[0] / p.groups.max(1) * w[2] * w[3]) as u64)
            }
            Op::Conv2dBackwardWeight { .. } => {
                let dy = shape(1);
                Some(out * (dy[0] * dy[2] * dy[3]) as u64)
            }
            Op::MatMul { trans_a, .. } => {
                let a = shape(0);
                let k = if *trans_a {
                    a[a.len() - 2]
                } else {
                    a[a.len() - 1]
                };
                Some(out * k as u64)
            }
            Op::Attention { layout, .. } | Op::AttentionBackward { layout, .. } => {
                let wrt = match &n.op {
                    Op::AttentionBackward { wrt, .. } => Some(*wrt),
                    _ => None,
                };
                let (q, k, v) = (shape(0), shape(1), shape(2));
                layout
                    .dims(&q, &k, &v)
                    .ok()
                    .map(|d| crate::graph::AttnLayout::macs(&d, wrt))
            }
            _ => None,
        };
        c.flops += macs.map_or(out, |m| 2 * m);
        let read: u64 = n.inputs.iter().map(|&i| numel(g.shape(i)) as u64).sum();
        c.bytes += 4 * (read + out);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_and_matmul_count_two_flops_per_multiply_add() {
        let mut g = Graph::new();
        let x = g.input("x", &[2, 6, 9, 7]);
        let w = g.input("w", &[10, 3, 3, 3]);
        g.conv2d(x, w, None, 1, 1, 2).unwrap();
        // 2·(2·10·9·7 outputs)·(3 channels per group · 9 taps)
        assert_eq!(graph_cost(&g).flops, 2 * (2 * 10 * 9 * 7) * 27);
        let a = g.input("a", &[4, 5]);
        let b = g.input("b", &[5, 3]);
        let before = graph_cost(&g);
        g.matmul(a, b, false, false).unwrap();
        let after = graph_cost(&g);
        assert_eq!(after.flops - before.flops, 2 * 4 * 3 * 5);
        assert_eq!(after.bytes - before.bytes, 4 * (20 + 15 + 12));
    }
}
