//! Q·Kᵀ → [scale] → softmax → ·V ⇒ `Attention`, and the op-by-op VJP of that chain (the
//! two products' and the softmax's backward) ⇒ one `AttentionBackward` per wanted input.
//!
//! Products are matched by what they compute, not by how autodiff happens to phrase them:
//! a `MatMul(x, y, tx, ty)` is the product op(x)·op(y), and a stored value is either the
//! logical matrix or its transpose, so each gradient has exactly one form to compare with.

use super::{Replace, Supports, Uses};
use crate::graph::{AttnInput, AttnLayout, Graph, NodeId, Op, UnaryOp};

/// A product operand: a node, read transposed or not.
type Term = (NodeId, bool);

/// Whether `id` computes x·y (stored as is) or (x·y)ᵀ = yᵀ·xᵀ (stored transposed).
fn is_product(g: &Graph, id: NodeId, x: Term, y: Term, stored_t: bool) -> bool {
    let (a, b) = if stored_t {
        ((y.0, !y.1), (x.0, !x.1))
    } else {
        (x, y)
    };
    let n = g.node(id);
    n.op == Op::MatMul {
        trans_a: a.1,
        trans_b: b.1,
    } && n.inputs == [a.0, b.0]
}

fn matmul(g: &Graph, id: NodeId) -> Option<(NodeId, NodeId, bool, bool)> {
    match g.node(id).op {
        Op::MatMul { trans_a, trans_b } => {
            let i = &g.node(id).inputs;
            Some((i[0], i[1], trans_a, trans_b))
        }
        _ => None,
    }
}

/// One op-by-op attention: O = softmax(scale·S)·V with S = Q̃·K̃ᵀ.
struct Instance {
    out: NodeId,
    p: NodeId,
    /// The scale node (absent: scale 1).
    a: Option<NodeId>,
    s: NodeId,
    q: Term,
    /// op(b) = K̃ᵀ.
    kt: Term,
    v: NodeId,
    /// The O product is P·op(v) (false) or op(v)·Pᵀ (true, O stored transposed).
    o_t: bool,
    /// How the product reads v.
    v_read_t: bool,
    scale: f32,
}

impl Instance {
    fn layout(&self) -> AttnLayout {
        AttnLayout {
            q: self.q.1,
            k: !self.kt.1,
            // Ṽ = op(v) when O = P·op(v); Ṽ = op(v)ᵀ when O = op(v)·Pᵀ.
            v: self.v_read_t != self.o_t,
            o: self.o_t,
        }
    }

    fn op(&self, wrt: Option<AttnInput>) -> Op {
        let (scale, layout) = (self.scale, self.layout());
        match wrt {
            None => Op::Attention { scale, layout },
            Some(wrt) => Op::AttentionBackward { scale, layout, wrt },
        }
    }

    fn qkv(&self) -> Vec<NodeId> {
        vec![self.q.0, self.kt.0, self.v]
    }
}

/// The attention whose output is node `out`, if it is one.
fn instance(g: &Graph, out: NodeId) -> Option<Instance> {
    let (c, d, tc, td) = matmul(g, out)?;
    let is_softmax = |id: NodeId| g.node(id).op == Op::Softmax;
    let (p, v, v_read_t, o_t) = if is_softmax(c) && !tc {
        (c, d, td, false)
    } else if is_softmax(d) && td {
        (d, c, tc, true)
    } else {
        return None;
    };
    let a = g.node(p).inputs[0];
    let (a, s, scale) = match g.node(a).op {
        Op::Unary(UnaryOp::Affine(scale, 0.0)) => (Some(a), g.node(a).inputs[0], scale),
        Op::MatMul { .. } => (None, a, 1.0),
        _ => return None,
    };
    let (qa, kb, ta, tb) = matmul(g, s)?;
    Some(Instance {
        out,
        p,
        a,
        s,
        q: (qa, ta),
        kt: (kb, tb),
        v,
        o_t,
        v_read_t,
        scale,
    })
}

/// At the second product's node.
pub(super) fn forward(g: &Graph, u: &Uses, id: NodeId, _: Supports) -> Option<Vec<Replace>> {
    let i = instance(g, id)?;
    let private = u.only(i.p, 1) && u.only(i.s, 1) && i.a.is_none_or(|a| u.only(a, 1));
    private.then(|| {
        vec![Replace {
            node: id,
            op: i.op(None),
            inputs: i.qkv(),
        }]
    })
}

/// At the second product's node: replaces the products that compute dQ, dK and dV.
pub(super) fn backward(g: &Graph, u: &Uses, id: NodeId, _: Supports) -> Option<Vec<Replace>> {
    let i = instance(g, id)?;
    // dA = SoftmaxBackward(P, dP): the one backward reader of P besides dV.
    let mut da = None;
    let mut others = vec![];
    for &r in u.users(i.p) {
        if r == i.out {
            continue;
        }
        if g.node(r).op == Op::SoftmaxBackward && g.node(r).inputs[0] == i.p && da.is_none() {
            da = Some(r);
        } else {
            others.push(r);
        }
    }
    let dout_t = i.o_t; // dÕ = dO or dOᵀ
                        // The cotangent dO: named by dP = dÕ·Ṽᵀ (in P's layout) when q or k are wanted, else by
                        // the dV product (its operand that is not P).
    let dout = match da {
        Some(da) => matmul(g, g.node(da).inputs[1])?.0,
        None => {
            let (x, y, ..) = matmul(g, *others.first()?)?;
            if x == i.p {
                y
            } else {
                x
            }
        }
    };
    if g.shape(dout) != g.shape(i.out) {
        return None;
    }
    let mut reps = vec![];
    let inputs = vec![i.q.0, i.kt.0, i.v, i.out, dout];
    if let Some(da) = da {
        let dp = g.node(da).inputs[1];
        let vt: Term = if i.o_t {
            (i.v, i.v_read_t)
        } else {
            (i.v, !i.v_read_t)
        };
        if !is_product(g, dp, (dout, dout_t), vt, false) || !u.only(dp, 1) {
            return None;
        }
        let ds = match i.a {
            Some(_) => {
                let [r] = u.users(da) else { return None };
                if !u.only(da, 1) || g.node(*r).op != Op::Unary(UnaryOp::Affine(i.scale, 0.0)) {
                    return None;
                }
                *r
            }
            None => da,
        };
        let ds_users = u.users(ds);
        if ds_users.is_empty() || !u.only(ds, ds_users.len()) {
            return None;
        }
        for &r in ds_users {
            // dQ̃ = dS·K̃ (K̃ = op(b)ᵀ); d op(b) = op(a)ᵀ·dS.
            let wrt = if is_product(g, r, (ds, false), (i.kt.0, !i.kt.1), i.q.1) {
                AttnInput::Q
            } else if is_product(g, r, (i.q.0, !i.q.1), (ds, false), i.kt.1) {
                AttnInput::K
            } else {
                return None;
            };
            reps.push(Replace {
                node: r,
                op: i.op(Some(wrt)),
                inputs: inputs.clone(),
            });
        }
    }
    // dṼ = Pᵀ·dÕ, stored as v is (transposed relative to Ṽ iff layout.v).
    for r in others {
        if !is_product(g, r, (i.p, true), (dout, dout_t), i.layout().v) {
            return None;
        }
        reps.push(Replace {
            node: r,
            op: i.op(Some(AttnInput::V)),
            inputs: inputs.clone(),
        });
    }
    Some(reps)
}
