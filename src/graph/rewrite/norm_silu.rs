//! GroupNorm → [FiLM `h·(1 + scale) + shift`, as `Graph::scale_shift` builds it] → SiLU
//! ⇒ `GroupNormSilu`, and the op-by-op input gradient of that chain (SiLU's backward, the
//! FiLM product, `GroupNormBackward`) ⇒ `GroupNormSiluBackward`.

use super::{Replace, Supports, Uses};
use crate::graph::{BinaryOp, Graph, NodeId, Op, UnaryOp};

/// The forward chain ending at the SiLU's input `v`.
struct Chain {
    /// The GroupNorm node.
    norm: NodeId,
    groups: usize,
    eps: f32,
    /// (scale [B, C], shift [B, C], the FiLM product node, the `1 + scale` node).
    film: Option<(NodeId, NodeId, NodeId, NodeId)>,
}

impl Chain {
    fn inputs(&self, g: &Graph) -> Vec<NodeId> {
        let mut ins = g.node(self.norm).inputs.clone();
        if let Some((s, t, ..)) = self.film {
            ins.extend([s, t]);
        }
        ins
    }

    fn scale_shift(&self) -> bool {
        self.film.is_some()
    }
}

/// The `[B, C]` tensor a `[B, C, 1, 1]` reshape node reads.
fn unsqueezed(g: &Graph, id: NodeId, x_shape: &[usize]) -> Option<NodeId> {
    let n = g.node(id);
    let src = *n.inputs.first()?;
    (matches!(n.op, Op::Reshape { .. })
        && x_shape.len() == 4
        && g.shape(src) == [x_shape[0], x_shape[1]]
        && n.shape == [x_shape[0], x_shape[1], 1, 1])
    .then_some(src)
}

fn group_norm(g: &Graph, id: NodeId) -> Option<(usize, f32)> {
    match g.node(id).op {
        Op::GroupNorm { groups, eps } => Some((groups, eps)),
        _ => None,
    }
}

/// `v` = GroupNorm(x) or `Add(Mul(GroupNorm(x), 1 + scale), shift)` (either operand order).
fn chain(g: &Graph, v: NodeId) -> Option<Chain> {
    if let Some((groups, eps)) = group_norm(g, v) {
        return Some(Chain {
            norm: v,
            groups,
            eps,
            film: None,
        });
    }
    let add = g.node(v);
    if add.op != Op::Binary(BinaryOp::Add) {
        return None;
    }
    for (m, t4) in [
        (add.inputs[0], add.inputs[1]),
        (add.inputs[1], add.inputs[0]),
    ] {
        let mul = g.node(m);
        if mul.op != Op::Binary(BinaryOp::Mul) {
            continue;
        }
        for (u, one_plus) in [
            (mul.inputs[0], mul.inputs[1]),
            (mul.inputs[1], mul.inputs[0]),
        ] {
            let Some((groups, eps)) = group_norm(g, u) else {
                continue;
            };
            let xs = g.shape(u);
            let op1 = g.node(one_plus);
            if op1.op != Op::Unary(UnaryOp::Affine(1.0, 1.0)) {
                continue;
            }
            let (Some(scale), Some(shift)) =
                (unsqueezed(g, op1.inputs[0], xs), unsqueezed(g, t4, xs))
            else {
                continue;
            };
            if g.shape(m) != xs || g.shape(v) != xs {
                continue;
            }
            return Some(Chain {
                norm: u,
                groups,
                eps,
                film: Some((scale, shift, m, one_plus)),
            });
        }
    }
    None
}

/// At a `Unary(Silu)` node.
pub(super) fn forward(g: &Graph, u: &Uses, id: NodeId, _: Supports) -> Option<Vec<Replace>> {
    let y = g.node(id);
    if y.op != Op::Unary(UnaryOp::Silu) {
        return None;
    }
    let v = y.inputs[0];
    let c = chain(g, v)?;
    let private = match c.film {
        None => u.only(c.norm, 1),
        Some((_, _, m, _)) => u.only(c.norm, 1) && u.only(m, 1) && u.only(v, 1),
    };
    private.then(|| {
        vec![Replace {
            node: id,
            op: Op::GroupNormSilu {
                groups: c.groups,
                eps: c.eps,
                scale_shift: c.scale_shift(),
            },
            inputs: c.inputs(g),
        }]
    })
}

/// At a `GroupNormBackward(x, γ, du)` node whose du is SiLU's backward at the chain's
/// output (times `1 + scale` with FiLM).
pub(super) fn backward(g: &Graph, u: &Uses, id: NodeId, _: Supports) -> Option<Vec<Replace>> {
    let n = g.node(id);
    let Op::GroupNormBackward { groups, eps } = n.op else {
        return None;
    };
    let du = n.inputs[2];
    // du = dv, or du = dv·(1 + scale).
    let mut candidates = vec![(du, None)];
    let dun = g.node(du);
    if dun.op == Op::Binary(BinaryOp::Mul) {
        candidates.push((dun.inputs[0], Some(dun.inputs[1])));
        candidates.push((dun.inputs[1], Some(dun.inputs[0])));
    }
    for (dv, one_plus) in candidates {
        let dvn = g.node(dv);
        if dvn.op != Op::UnaryBackward(UnaryOp::Silu) {
            continue;
        }
        let (v, dy) = (dvn.inputs[0], dvn.inputs[1]);
        let Some(c) = chain(g, v) else { continue };
        let norm = g.node(c.norm);
        let same_norm = (c.groups, c.eps) == (groups, eps) && norm.inputs[..2] == n.inputs[..2];
        let film_ok = match (c.film, one_plus) {
            (None, None) => u.only(dv, 1),
            (Some((.., op1)), Some(o)) => op1 == o && u.only(dv, 1) && u.only(du, 1),
            _ => false,
        };
        if !(same_norm && film_ok) {
            continue;
        }
        let mut inputs = c.inputs(g);
        inputs.push(dy);
        return Some(vec![Replace {
            node: id,
            op: Op::GroupNormSiluBackward {
                groups,
                eps,
                scale_shift: c.scale_shift(),
            },
            inputs,
        }]);
    }
    None
}
