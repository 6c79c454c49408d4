//! Rewrite passes run on a whole graph (forward and backward) before planning: where the
//! backend says it runs a fused op well ([`crate::backend::Backend::supports`]), an
//! op-by-op pattern is replaced by that op. Models are written op by op; fusion is the
//! executor's business.
//!
//! A rewrite changes one node in place (its op and inputs; the shape is checked to be the
//! same), so node ids, the graph's topological order and callers' handles stay valid; the
//! pattern's other nodes simply become dead and the planner skips them. A pattern fires
//! only where its intermediate values have no other live consumer: otherwise they would be
//! computed anyway and the fused op would add work, not remove it.
//!
//! Backward patterns run first: the forward pattern's intermediates (a softmax, a group
//! norm output) are read by the op-by-op backward until that is fused too.

mod attention;
mod norm_silu;

use super::{shape, Graph, NodeId, Op};

/// Whether the backend runs `op` on inputs of these shapes well.
pub type Supports<'a> = &'a dyn Fn(&Op, &[&[usize]]) -> bool;

/// How many patterns each pass replaced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fused {
    pub group_norm_silu: usize,
    pub group_norm_silu_backward: usize,
    pub attention: usize,
    pub attention_backward: usize,
}

/// Live consumers of every node (nodes the outputs depend on), and which are outputs.
pub(super) struct Uses {
    users: Vec<Vec<NodeId>>,
    output: Vec<bool>,
    live: Vec<bool>,
}

impl Uses {
    fn new(g: &Graph, outputs: &[NodeId]) -> Self {
        let n = g.len();
        let mut live = vec![false; n];
        let mut output = vec![false; n];
        for &o in outputs {
            live[o.0] = true;
            output[o.0] = true;
        }
        for i in (0..n).rev() {
            if live[i] {
                for j in &g.nodes[i].inputs {
                    live[j.0] = true;
                }
            }
        }
        let mut users = vec![vec![]; n];
        for i in (0..n).filter(|&i| live[i]) {
            for j in &g.nodes[i].inputs {
                users[j.0].push(NodeId(i));
            }
        }
        Uses {
            users,
            output,
            live,
        }
    }

    /// Live readers of `id` (a reader that reads it twice is listed twice).
    pub(super) fn users(&self, id: NodeId) -> &[NodeId] {
        &self.users[id.0]
    }

    /// True when `id`'s value is read by exactly `n` live edges and is not an output.
    pub(super) fn only(&self, id: NodeId, n: usize) -> bool {
        !self.output[id.0] && self.users[id.0].len() == n
    }
}

/// One node's new op and inputs.
pub(super) struct Replace {
    pub node: NodeId,
    pub op: Op,
    pub inputs: Vec<NodeId>,
}

/// Whether `r` is well formed (same output shape) and the backend wants it.
pub(super) fn acceptable(g: &Graph, r: &Replace, supports: Supports) -> bool {
    let shapes: Vec<&[usize]> = r.inputs.iter().map(|i| g.shape(*i)).collect();
    r.inputs.iter().all(|i| i.0 < r.node.0)
        && shape::infer(&r.op, &shapes, None).is_ok_and(|s| s == g.shape(r.node))
        && supports(&r.op, &shapes)
}

fn apply(g: &mut Graph, r: Replace) {
    let node = &mut g.nodes[r.node.0];
    let old = node.op.kind();
    if let Some(stem) = node.label.strip_suffix(old) {
        node.label = format!("{stem}{}", r.op.kind());
    }
    node.op = r.op;
    node.inputs = r.inputs;
}

type Pass = fn(&Graph, &Uses, NodeId, Supports) -> Option<Vec<Replace>>;
/// Where a pass counts what it replaced.
type Counter = fn(&mut Fused) -> &mut usize;

/// Runs every pass on `g` for the values `outputs`; returns what was replaced.
pub fn fuse(g: &mut Graph, outputs: &[NodeId], supports: Supports) -> Fused {
    let mut fused = Fused::default();
    let passes: [(Pass, Counter); 4] = [
        (norm_silu::backward, |f| &mut f.group_norm_silu_backward),
        (norm_silu::forward, |f| &mut f.group_norm_silu),
        (attention::backward, |f| &mut f.attention_backward),
        (attention::forward, |f| &mut f.attention),
    ];
    for (pass, counter) in passes {
        let mut uses = Uses::new(g, outputs);
        for i in 0..g.len() {
            if !uses.live[i] {
                continue;
            }
            let Some(reps) = pass(g, &uses, NodeId(i), supports) else {
                continue;
            };
            if reps.is_empty() || !reps.iter().all(|r| acceptable(g, r, supports)) {
                continue;
            }
            *counter(&mut fused) += reps.len();
            for r in reps {
                apply(g, r);
            }
            uses = Uses::new(g, outputs);
        }
    }
    fused
}

#[cfg(test)]
mod tests;
