//! The one implementation of [`Backend`] and [`KernelBackend`] for both executors of the
//! kernels: the CUDA driver (`CudaBackend`) and the CPU emulator (`emu::EmuBackend`). They
//! differ only in what [`Driver`] asks for (memory, the launch call, graph capture); the
//! launch code, op dispatch, variant forcing and launch log are written once, here and in
//! `ops/`.

use super::abi::{DevMut, DevPtr, Grid, KernelArgs, LaunchState, Launcher};
use super::{ops, Precision, Variant};
use crate::backend::{BResult, Backend, BackendError, Operand, Scratch};
use crate::graph::Node;

/// One block of device memory holding every value of a plan.
pub trait DriverArena {
    /// Address of element 0.
    fn base(&self) -> u64;
    /// Elements.
    fn len(&self) -> usize;
}

/// Recording launches into a replayable graph (CUDA graphs).
pub trait GraphCapture {
    fn begin(&self) -> BResult<()>;
    fn end(&self) -> BResult<usize>;
    fn replay(&self, graph: usize) -> BResult<()>;
    fn release(&self, graph: usize);
}

/// What an executor of the kernels must provide. (Public only in name: this module is private,
/// so no type outside the crate can implement it.)
pub trait Driver {
    type Arena: DriverArena;
    /// The backend's name, before and after the precision note.
    fn name_parts(&self) -> (String, String);
    fn launch_state(&self) -> &LaunchState;
    /// Launches `kernel` on a grid with no empty dimension.
    ///
    /// # Safety
    /// As [`Launcher::launch_raw`].
    unsafe fn launch_nonempty(
        &self,
        kernel: &'static str,
        grid: Grid,
        args: KernelArgs,
    ) -> BResult<()>;
    fn alloc(&self, len: usize) -> BResult<Self::Arena>;
    fn write(&self, arena: &mut Self::Arena, offset: usize, data: &[f32]) -> BResult<()>;
    fn read(&self, arena: &Self::Arena, offset: usize, len: usize) -> BResult<Vec<f32>>;
    /// The op kind of the node about to run (labels profile rows).
    fn set_current_op(&self, kind: &'static str) {
        let _ = kind;
    }
    fn synchronize(&self) -> BResult<()> {
        Ok(())
    }
    fn capture(&self) -> Option<&dyn GraphCapture> {
        None
    }
}

impl<D: Driver> Launcher for D {
    unsafe fn launch_raw(&self, kernel: &'static str, grid: Grid, args: KernelArgs) -> BResult<()> {
        let (x, y, z) = grid.blocks;
        if x == 0 || y == 0 || z == 0 {
            return Ok(());
        }
        self.launch_state().log.record(kernel);
        // SAFETY: forwarded from the caller.
        unsafe { self.launch_nonempty(kernel, grid, args) }
    }
    fn state(&self) -> &LaunchState {
        self.launch_state()
    }
}

fn f32_at<A: DriverArena>(arena: &A, offset: usize) -> u64 {
    arena.base() + 4 * offset as u64
}

impl<D: Driver> Backend for D {
    type Elem = f32;
    type Arena = D::Arena;

    fn name(&self) -> String {
        let (before, after) = self.name_parts();
        match self.launch_state().precision {
            Precision::Fp32 => format!("{before}{after}"),
            Precision::Bf16 => format!("{before} (bf16 tensor-core convs, products){after}"),
        }
    }

    fn alloc(&self, len: usize) -> BResult<D::Arena> {
        crate::backend::fault::check_alloc(len as u64 * 4)?;
        Driver::alloc(self, len)
    }

    fn write(&self, arena: &mut D::Arena, offset: usize, data: &[f32]) -> BResult<()> {
        check_range(arena.len(), offset, data.len())?;
        Driver::write(self, arena, offset, data)
    }

    fn read(&self, arena: &D::Arena, offset: usize, len: usize) -> BResult<Vec<f32>> {
        check_range(arena.len(), offset, len)?;
        Driver::read(self, arena, offset, len)
    }

    fn fill(&self, arena: &mut D::Arena, offset: usize, len: usize, value: f32) -> BResult<()> {
        check_range(arena.len(), offset, len)?;
        ops::fill(self, DevMut::at(f32_at(arena, offset)), len, value)
    }

    fn copy(&self, arena: &mut D::Arena, src: usize, dst: usize, len: usize) -> BResult<()> {
        crate::backend::check_copy(arena.len(), src, dst, len)?;
        let (x, y) = (f32_at(arena, src), f32_at(arena, dst));
        ops::copy(self, DevPtr::at(x), DevMut::at(y), len)
    }

    /// The CUDA choice on the emulator too, so tests on it plan what a GPU plans.
    fn supports(&self, op: &crate::graph::Op, inputs: &[&[usize]]) -> bool {
        ops::fuses(op, inputs)
    }

    fn scratch_len(&self, node: &Node, inputs: &[&[usize]]) -> usize {
        ops::scratch_len(self.launch_state(), &node.op, inputs, &node.shape)
    }

    fn exec(
        &self,
        arena: &mut D::Arena,
        node: &Node,
        inputs: &[Operand],
        out: Operand,
        scratch: Scratch,
    ) -> BResult<()> {
        check_range(arena.len(), scratch.offset, scratch.len)?;
        self.set_current_op(node.op.kind());
        let scratch = ops::DevScratch {
            at: DevMut::at(f32_at(arena, scratch.offset)),
            len: scratch.len,
        };
        ops::exec(
            self,
            arena.base(),
            &node.op,
            node.precision,
            inputs,
            out,
            scratch,
        )
    }

    fn synchronize(&self) -> BResult<()> {
        Driver::synchronize(self)
    }

    fn can_capture(&self) -> bool {
        self.capture().is_some()
    }

    fn begin_capture(&self) -> BResult<()> {
        self.capture()
            .ok_or_else(|| crate::backend::no_capture(&self.name()))?
            .begin()
    }

    fn end_capture(&self) -> BResult<usize> {
        self.capture()
            .ok_or_else(|| crate::backend::no_capture(&self.name()))?
            .end()
    }

    fn replay(&self, graph: usize) -> BResult<()> {
        self.capture()
            .ok_or_else(|| crate::backend::no_capture(&self.name()))?
            .replay(graph)
    }

    fn release_capture(&self, graph: usize) {
        if let Some(c) = self.capture() {
            c.release(graph)
        }
    }
}

fn check_range(arena_len: usize, offset: usize, len: usize) -> BResult<()> {
    if offset + len > arena_len {
        return Err(BackendError::Device(format!(
            "region {offset}..{} outside the arena of {arena_len} elements",
            offset + len
        )));
    }
    Ok(())
}

/// The kernel entry points beyond the graph ops, shared by the CUDA backend and its CPU
/// emulator so the same tests run on both.
pub trait KernelBackend: Backend<Elem = f32> {
    /// y[i] = x[i] rounded to bf16 (as fp32) by the rounding helper of the tensor-core kernels
    /// (`bf16_rne` in kernels/mma.cuh), for n elements at arena offsets x and y.
    fn bf16_round(&self, arena: &Self::Arena, x: usize, y: usize, n: usize) -> BResult<()>;

    /// One warp-wide bf16 tensor-core product (`mma_probe`): d = c + a·b with a 16×16, b 16×8,
    /// c and d 16×8, row-major fp32 at the given arena offsets (operands rounded to bf16).
    fn mma_probe(&self, arena: &Self::Arena, a: usize, b: usize, c: usize, d: usize)
        -> BResult<()>;

    /// Fused attention for head width 64: out = softmax(scale·q·kᵀ)·v with q [b, l, 64],
    /// k, v [b, s, 64], out [b, l, 64] at the given arena offsets; `dims` = (b, l, s).
    #[allow(clippy::too_many_arguments)]
    fn fused_attention(
        &self,
        arena: &Self::Arena,
        q: usize,
        k: usize,
        v: usize,
        out: usize,
        dims: (usize, usize, usize),
        scale: f32,
    ) -> BResult<()>;

    /// Forces the conv / matrix-product tile and split count of later launches (tests that
    /// must reach every kernel variant); `Variant::default()` restores the heuristics.
    fn force_variant(&self, v: Variant);

    /// How often each kernel entry point was launched so far.
    fn launched(&self) -> std::collections::BTreeMap<&'static str, u64>;
}

impl<D: Driver> KernelBackend for D {
    fn bf16_round(&self, arena: &D::Arena, x: usize, y: usize, n: usize) -> BResult<()> {
        let (x, y) = (f32_at(arena, x), f32_at(arena, y));
        ops::bf16_round(self, DevPtr::at(x), DevMut::at(y), n)
    }

    fn mma_probe(&self, arena: &D::Arena, a: usize, b: usize, c: usize, d: usize) -> BResult<()> {
        let at = |o: usize| DevPtr::at(f32_at(arena, o));
        ops::mma_probe(self, at(a), at(b), at(c), DevMut::at(f32_at(arena, d)))
    }

    fn fused_attention(
        &self,
        arena: &D::Arena,
        q: usize,
        k: usize,
        v: usize,
        out: usize,
        dims: (usize, usize, usize),
        scale: f32,
    ) -> BResult<()> {
        let at = |o: usize| DevPtr::at(f32_at(arena, o));
        let out = DevMut::at(f32_at(arena, out));
        ops::fused_attention(self, at(q), at(k), at(v), out, dims, scale)
    }

    fn force_variant(&self, v: Variant) {
        *self
            .launch_state()
            .variant
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = v;
    }

    fn launched(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.launch_state().log.snapshot()
    }
}
