//! Memory planning: every value gets a region of one arena. Values of inputs, constants and
//! fills live for the whole run; every other value's region is returned to a free list after
//! its last reader ran, so later values reuse it. Reshapes alias their input. A node that
//! needs scratch space (the backend says how much) gets a region live only while it runs.

use super::{Graph, Node, NodeId, Op};
use crate::tensor::numel;

/// Offsets are aligned so that every region starts on a 256-byte boundary for f32.
const ALIGN: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub offset: usize,
    pub len: usize,
}

#[derive(Clone, Copy, Debug)]
pub struct PlanOptions {
    /// Reuse the regions of dead values. Off gives every value its own region (for checks).
    pub reuse: bool,
    /// Run the rewrite passes (`graph::rewrite`) the backend asks for before planning. Off
    /// plans the graph op by op as built (to measure what fusion saves, or to check it).
    pub fuse: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            reuse: true,
            fuse: true,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Plan {
    /// Nodes that must run, in order (leaves included).
    pub order: Vec<NodeId>,
    /// Region of each node's value (`None` for nodes not needed).
    pub regions: Vec<Option<Region>>,
    /// Scratch region of each node that asked for one.
    pub scratch: Vec<Option<Region>>,
    /// Elements in the arena.
    pub arena_len: usize,
    /// Elements held by inputs, constants and fills.
    pub persistent_len: usize,
}

impl Plan {
    pub fn region(&self, id: NodeId) -> Region {
        self.regions[id.0].expect("node was planned")
    }
}

fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// First-fit free list over `[persistent_len, ∞)`.
struct FreeList {
    /// Sorted, coalesced (offset, len) blocks.
    free: Vec<(usize, usize)>,
    top: usize,
    peak: usize,
}

impl FreeList {
    fn alloc(&mut self, len: usize) -> usize {
        let len = align(len.max(1));
        // Best fit keeps large blocks for large values (conv activations dominate).
        let mut best: Option<usize> = None;
        for (i, &(_, l)) in self.free.iter().enumerate() {
            if l >= len && best.is_none_or(|b| self.free[b].1 > l) {
                best = Some(i);
            }
        }
        if let Some(i) = best {
            let (o, l) = self.free[i];
            if l == len {
                self.free.remove(i);
            } else {
                self.free[i] = (o + len, l - len);
            }
            return o;
        }
        // Grow the arena, absorbing a free block that ends at the top.
        if let Some(&(o, l)) = self.free.last() {
            if o + l == self.top {
                self.free.pop();
                self.top = o + len;
                self.peak = self.peak.max(self.top);
                return o;
            }
        }
        let o = self.top;
        self.top += len;
        self.peak = self.peak.max(self.top);
        o
    }

    fn release(&mut self, offset: usize, len: usize) {
        let len = align(len.max(1));
        let pos = self.free.partition_point(|&(o, _)| o < offset);
        self.free.insert(pos, (offset, len));
        // Coalesce with neighbours.
        if pos + 1 < self.free.len() && self.free[pos].0 + self.free[pos].1 == self.free[pos + 1].0
        {
            self.free[pos].1 += self.free[pos + 1].1;
            self.free.remove(pos + 1);
        }
        if pos > 0 && self.free[pos - 1].0 + self.free[pos - 1].1 == self.free[pos].0 {
            self.free[pos - 1].1 += self.free[pos].1;
            self.free.remove(pos);
        }
        if let Some(&(o, l)) = self.free.last() {
            if o + l == self.top {
                self.free.pop();
                self.top = o;
            }
        }
    }
}

fn is_leaf(op: &Op) -> bool {
    matches!(op, Op::Input { .. } | Op::Const { .. } | Op::Fill { .. })
}

/// The plan of a graph whose ops need no scratch space.
pub fn plan(g: &Graph, outputs: &[NodeId], opts: PlanOptions) -> Plan {
    plan_with_scratch(g, outputs, opts, &|_, _| 0)
}

/// The plan with `scratch_len(node, input shapes)` elements of scratch for each node, placed
/// apart from the node's inputs and output and free again once the node ran.
pub fn plan_with_scratch(
    g: &Graph,
    outputs: &[NodeId],
    opts: PlanOptions,
    scratch_len: &dyn Fn(&Node, &[&[usize]]) -> usize,
) -> Plan {
    let n = g.len();
    let mut needed = vec![false; n];
    for &o in outputs {
        needed[o.0] = true;
    }
    for i in (0..n).rev() {
        if needed[i] {
            for j in &g.nodes[i].inputs {
                needed[j.0] = true;
            }
        }
    }
    let order: Vec<NodeId> = (0..n).filter(|&i| needed[i]).map(NodeId).collect();

    // A view shares the storage of its root.
    let mut root: Vec<usize> = (0..n).collect();
    for &id in &order {
        let node = &g.nodes[id.0];
        if node.op.is_view() {
            root[id.0] = root[node.inputs[0].0];
        }
    }
    // Last position in `order` at which each root's storage is read.
    let mut last_use = vec![0usize; n];
    for (pos, &id) in order.iter().enumerate() {
        last_use[root[id.0]] = last_use[root[id.0]].max(pos);
        for j in &g.nodes[id.0].inputs {
            last_use[root[j.0]] = last_use[root[j.0]].max(pos);
        }
    }
    for &o in outputs {
        last_use[root[o.0]] = usize::MAX;
    }

    let mut regions: Vec<Option<Region>> = vec![None; n];
    let mut persistent = 0;
    for &id in &order {
        if is_leaf(&g.nodes[id.0].op) {
            let len = numel(&g.nodes[id.0].shape);
            regions[id.0] = Some(Region {
                offset: persistent,
                len,
            });
            persistent += align(len.max(1));
        }
    }
    let mut fl = FreeList {
        free: vec![],
        top: persistent,
        peak: persistent,
    };
    let mut scratch: Vec<Option<Region>> = vec![None; n];
    for (pos, &id) in order.iter().enumerate() {
        let node = &g.nodes[id.0];
        if is_leaf(&node.op) {
            continue;
        }
        if node.op.is_view() {
            let r = regions[node.inputs[0].0].expect("input planned before its reader");
            regions[id.0] = Some(Region {
                offset: r.offset,
                len: numel(&node.shape),
            });
        } else {
            let len = numel(&node.shape);
            regions[id.0] = Some(Region {
                offset: fl.alloc(len),
                len,
            });
            let shapes: Vec<&[usize]> = node.inputs.iter().map(|j| g.shape(*j)).collect();
            let len = scratch_len(node, &shapes);
            if len > 0 {
                let offset = fl.alloc(len);
                fl.release(offset, len);
                scratch[id.0] = Some(Region { offset, len });
            }
        }
        if opts.reuse {
            let mut roots: Vec<usize> = node.inputs.iter().map(|j| root[j.0]).collect();
            roots.push(root[id.0]);
            roots.sort_unstable();
            roots.dedup();
            for r in roots {
                if last_use[r] == pos && !is_leaf(&g.nodes[r].op) {
                    let reg = regions[r].expect("planned");
                    fl.release(reg.offset, reg.len);
                }
            }
        }
    }
    Plan {
        order,
        regions,
        scratch,
        arena_len: fl.peak,
        persistent_len: persistent,
    }
}
