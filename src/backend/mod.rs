//! The backend interface: an arena of device memory and one call per graph op. The executor
//! owns the plan; a backend only computes. Nothing here assumes host memory, so the CUDA
//! backend implements the same trait with a device arena.

pub mod cpu;
pub mod cuda;
pub mod device;
pub mod fault;

use crate::graph::{Node, Op};
use crate::tensor::Scalar;

/// Where an op's operand lives in the arena, and its shape.
#[derive(Clone, Copy, Debug)]
pub struct Operand<'a> {
    pub offset: usize,
    pub shape: &'a [usize],
}

/// The arena region an op may use as scratch during its own `exec` (none when `len` is 0):
/// planned per node in that node's graph arena, from [`Backend::scratch_len`], so work recorded
/// for one graph never touches another's memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scratch {
    pub offset: usize,
    pub len: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{0}")]
    Unsupported(String),
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    /// An error that leaves the device usable: the work that hit it failed, later work may run.
    #[error("device error: {0}")]
    Device(String),
    /// The device (or its context) is gone or corrupted: nothing more can run on it.
    #[error("device lost: {0}")]
    DeviceLost(String),
}

pub type BResult<T> = std::result::Result<T, BackendError>;

pub trait Backend {
    /// The element type values are computed in.
    type Elem: Scalar;
    /// One contiguous block of backend memory holding every value of a plan.
    type Arena;

    fn name(&self) -> String;
    fn alloc(&self, len: usize) -> BResult<Self::Arena>;
    fn write(&self, arena: &mut Self::Arena, offset: usize, data: &[Self::Elem]) -> BResult<()>;
    fn read(&self, arena: &Self::Arena, offset: usize, len: usize) -> BResult<Vec<Self::Elem>>;
    fn fill(&self, arena: &mut Self::Arena, offset: usize, len: usize, value: f32) -> BResult<()>;
    /// Copies `len` elements from `src` to `dst` inside the arena without a trip through the
    /// host (the sampler feeds a step's output back as the next step's input). The regions
    /// must not overlap; on devices the copy is ordered after earlier work on the stream.
    fn copy(&self, arena: &mut Self::Arena, src: usize, dst: usize, len: usize) -> BResult<()>;
    /// Whether this backend runs `op` on inputs of these shapes well: the graph rewrite
    /// passes (`graph::rewrite`) replace an op-by-op pattern by a fused op only where the
    /// backend says yes. Every backend must still execute every op; this is a choice of
    /// speed, not of correctness.
    fn supports(&self, op: &Op, inputs: &[&[usize]]) -> bool {
        let _ = (op, inputs);
        false
    }
    /// Elements of scratch `node` needs with inputs of shapes `inputs` (its output shape is
    /// `node.shape`); the planner reserves that much of the arena for it. Default: none.
    fn scratch_len(&self, node: &Node, inputs: &[&[usize]]) -> usize {
        let _ = (node, inputs);
        0
    }
    /// Computes `node` (whose op is not a leaf and not a view) into `out`, using at most the
    /// `scratch` region (of `scratch_len` elements) as temporary memory.
    fn exec(
        &self,
        arena: &mut Self::Arena,
        node: &Node,
        inputs: &[Operand],
        out: Operand,
        scratch: Scratch,
    ) -> BResult<()>;
    /// Waits until all issued work is done (a no-op on the CPU).
    fn synchronize(&self) -> BResult<()> {
        Ok(())
    }
    /// Whether `begin_capture` / `end_capture` / `replay` work on this backend.
    fn can_capture(&self) -> bool {
        false
    }
    /// Starts recording the launches of the following `exec` calls into a replayable graph
    /// (CUDA graphs). Backends without such a facility say so.
    fn begin_capture(&self) -> BResult<()> {
        Err(no_capture(&self.name()))
    }
    /// Ends the recording begun by `begin_capture`, prepares the graph for replay and returns
    /// its handle (one backend may hold the graphs of several executors).
    fn end_capture(&self) -> BResult<usize> {
        Err(no_capture(&self.name()))
    }
    /// Re-issues the captured work of graph `graph` on the current arena contents.
    fn replay(&self, graph: usize) -> BResult<()> {
        let _ = graph;
        Err(no_capture(&self.name()))
    }
    /// Frees graph `graph` (its executor is dropped or records anew).
    fn release_capture(&self, graph: usize) {
        let _ = graph;
    }
}

/// The error of a backend without graph capture (`name`: the backend's name).
pub fn no_capture(name: &str) -> BackendError {
    BackendError::Unsupported(format!(
        "{name}: graph capture and replay are not supported"
    ))
}

/// Checks that `[src, src+len)` and `[dst, dst+len)` lie in an arena of `arena_len` elements
/// and do not overlap (every backend's `copy` enforces the same contract).
pub fn check_copy(arena_len: usize, src: usize, dst: usize, len: usize) -> BResult<()> {
    if src + len > arena_len || dst + len > arena_len {
        return Err(BackendError::Device(format!(
            "copy {src}..{} → {dst}..{} outside the arena of {arena_len} elements",
            src + len,
            dst + len
        )));
    }
    if len > 0 && src < dst + len && dst < src + len {
        return Err(BackendError::Device(format!(
            "copy {src}..{} → {dst}..{}: the regions overlap",
            src + len,
            dst + len
        )));
    }
    Ok(())
}

/// A shared backend: several executors (the pipeline's networks) on one device context.
impl<T: Backend> Backend for std::rc::Rc<T> {
    type Elem = T::Elem;
    type Arena = T::Arena;

    fn name(&self) -> String {
        (**self).name()
    }
    fn alloc(&self, len: usize) -> BResult<Self::Arena> {
        (**self).alloc(len)
    }
    fn write(&self, arena: &mut Self::Arena, offset: usize, data: &[Self::Elem]) -> BResult<()> {
        (**self).write(arena, offset, data)
    }
    fn read(&self, arena: &Self::Arena, offset: usize, len: usize) -> BResult<Vec<Self::Elem>> {
        (**self).read(arena, offset, len)
    }
    fn fill(&self, arena: &mut Self::Arena, offset: usize, len: usize, value: f32) -> BResult<()> {
        (**self).fill(arena, offset, len, value)
    }
    fn copy(&self, arena: &mut Self::Arena, src: usize, dst: usize, len: usize) -> BResult<()> {
        (**self).copy(arena, src, dst, len)
    }
    fn can_capture(&self) -> bool {
        (**self).can_capture()
    }
    fn supports(&self, op: &Op, inputs: &[&[usize]]) -> bool {
        (**self).supports(op, inputs)
    }
    fn scratch_len(&self, node: &Node, inputs: &[&[usize]]) -> usize {
        (**self).scratch_len(node, inputs)
    }
    fn exec(
        &self,
        arena: &mut Self::Arena,
        node: &Node,
        inputs: &[Operand],
        out: Operand,
        scratch: Scratch,
    ) -> BResult<()> {
        (**self).exec(arena, node, inputs, out, scratch)
    }
    fn synchronize(&self) -> BResult<()> {
        (**self).synchronize()
    }
    fn begin_capture(&self) -> BResult<()> {
        (**self).begin_capture()
    }
    fn end_capture(&self) -> BResult<usize> {
        (**self).end_capture()
    }
    fn replay(&self, graph: usize) -> BResult<()> {
        (**self).replay(graph)
    }
    fn release_capture(&self, graph: usize) {
        (**self).release_capture(graph)
    }
}
