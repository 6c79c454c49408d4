//! The CUDA backend: every graph op as a hand-written kernel (`kernels/*.cu`) compiled at run
//! time by NVRTC for the device's own architecture, on cudarc 0.19.
//!
//! One context, one capturable stream (event tracking off: there is one stream and graph
//! capture must not see cudarc's bookkeeping events). The arena is ONE device allocation; ops
//! receive raw device addresses (base + offset·4) as kernel arguments, so an op's inputs and
//! output may be views of the same allocation. Ops that need temporary memory (split-K conv
//! partial sums, blur passes, norm statistics) get a scratch region of their own graph's arena
//! (`Backend::scratch_len`, planned per node), so a recorded graph touches only its own arena.
//! The launch code is `ops/` (one file per kernel family) on the typed launchers of `abi.rs`;
//! the `Backend` impl is shared with the emulator (`driver.rs`).

pub mod abi;
/// Which fused ops the CUDA backend asks the rewrite passes for (shared with the emulator;
/// a reference backend for whole-graph comparisons can plan the same graph).
pub use ops::fuses;
pub mod bench;
pub mod cache;
pub mod check;
mod driver;
#[cfg(unix)]
pub mod emu;
pub mod kernels;
pub mod nvrtc;
mod ops;
pub mod precision;
pub mod probe;
pub mod profile;
pub mod variant;

pub use driver::KernelBackend;
pub use precision::Precision;
pub use probe::{probe, DeviceInfo};
pub use variant::{LaunchLog, Variant};

use super::{BResult, BackendError};
use abi::{Grid, KernelArgs, LaunchState};
use cudarc::driver::{
    sys, CudaContext, CudaFunction, CudaGraph, CudaSlice, CudaStream, DevicePtr, DriverError,
};
use nvrtc::CompileOpts;
use profile::Profiler;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

/// Backend construction options.
#[derive(Clone, Debug, Default)]
pub struct CudaOptions {
    /// Compile with `--use_fast_math` (approximate transcendental functions). Off by default:
    /// the reference kernels are checked for parity with the CPU first.
    pub fast_math: bool,
    /// Operand precision of the convolutions and matrix products (default fp32; see
    /// [`Precision`]).
    pub precision: Precision,
}

/// One device allocation holding every value of a plan.
pub struct CudaArena {
    buf: CudaSlice<f32>,
    base: u64,
    len: usize,
}

impl CudaArena {
    /// Device address of element `offset`.
    pub fn addr(&self, offset: usize) -> u64 {
        self.base + 4 * offset as u64
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

struct CaptureState {
    /// Recorded graphs by handle: several executors (the pipeline's samplers for different
    /// batch sizes) share one backend, each replaying its own graph on its own arena.
    graphs: Vec<Option<CudaGraph>>,
}

pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    info: DeviceInfo,
    opts: CompileOpts,
    functions: Mutex<HashMap<&'static str, CudaFunction>>,
    capture: Mutex<CaptureState>,
    profiler: Mutex<Option<Profiler>>,
    /// Op kind of the node being executed (labels profile rows).
    current_op: Mutex<&'static str>,
    notes: Mutex<Vec<String>>,
    launch: LaunchState,
}

pub(crate) fn dev_err(what: &str, e: DriverError) -> BackendError {
    match error_class(e.0) {
        ErrorClass::OutOfMemory => {
            BackendError::OutOfMemory(format!("{what}: CUDA_ERROR_OUT_OF_MEMORY"))
        }
        ErrorClass::Lost => BackendError::DeviceLost(format!("{what}: {e:?}")),
        ErrorClass::Recoverable => BackendError::Device(format!("{what}: {e:?}")),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    OutOfMemory,
    /// Sticky errors: the context is corrupted (a kernel faulted) or the device is gone;
    /// every later call fails too, so a batch run must stop rather than try the next batch.
    Lost,
    Recoverable,
}

pub(crate) fn error_class(code: sys::cudaError_enum) -> ErrorClass {
    use sys::cudaError_enum as E;
    match code {
        E::CUDA_ERROR_OUT_OF_MEMORY => ErrorClass::OutOfMemory,
        E::CUDA_ERROR_ILLEGAL_ADDRESS
        | E::CUDA_ERROR_LAUNCH_FAILED
        | E::CUDA_ERROR_HARDWARE_STACK_ERROR
        | E::CUDA_ERROR_ILLEGAL_INSTRUCTION
        | E::CUDA_ERROR_MISALIGNED_ADDRESS
        | E::CUDA_ERROR_INVALID_ADDRESS_SPACE
        | E::CUDA_ERROR_INVALID_PC
        | E::CUDA_ERROR_ECC_UNCORRECTABLE
        | E::CUDA_ERROR_DEVICE_UNAVAILABLE
        | E::CUDA_ERROR_CONTEXT_IS_DESTROYED
        | E::CUDA_ERROR_DEINITIALIZED
        | E::CUDA_ERROR_LAUNCH_TIMEOUT
        | E::CUDA_ERROR_NO_DEVICE
        | E::CUDA_ERROR_ASSERT => ErrorClass::Lost,
        _ => ErrorClass::Recoverable,
    }
}

impl CudaBackend {
    /// Opens device 0. Fails with a clear message when there is no usable GPU or NVRTC.
    pub fn new() -> Result<Self, String> {
        Self::with_options(CudaOptions::default())
    }

    /// Opens device 0 with `options`.
    pub fn with_options(options: CudaOptions) -> Result<Self, String> {
        Self::on_device(0, options)
    }

    /// Opens device `ordinal` (`--device cuda:N`, or one worker of a device list). Its
    /// context becomes the calling thread's current one: a worker of a device list builds
    /// its backend in its own thread and uses it only there, so each thread has exactly one
    /// current context and never needs to switch.
    pub fn on_device(ordinal: usize, options: CudaOptions) -> Result<Self, String> {
        let (ctx, info) = probe::open_on(ordinal)?;
        check_precision(&info, options.precision)?;
        // One stream, and graph capture: cudarc's per-allocation events would only add waits.
        // SAFETY: called before any allocation or stream of this context exists.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx
            .new_stream()
            .map_err(|e| format!("cannot create a CUDA stream: {e:?}"))?;
        let mut opts = CompileOpts::new(&info.arch());
        opts.fast_math = options.fast_math;
        let launch = LaunchState::new(
            info.multiprocessors as usize,
            options.precision,
            has_bf16_mma(&info),
        );
        Ok(CudaBackend {
            ctx,
            stream,
            info,
            opts,
            functions: Mutex::new(HashMap::new()),
            capture: Mutex::new(CaptureState { graphs: vec![] }),
            profiler: Mutex::new(None),
            current_op: Mutex::new(""),
            notes: Mutex::new(vec![]),
            launch,
        })
    }

    /// Operand precision of the convolutions and products from now on (before wrapping the
    /// backend in an `Rc`; a plan captured as a CUDA graph keeps the kernels it recorded).
    pub fn set_precision(&mut self, precision: Precision) -> Result<(), String> {
        check_precision(&self.info, precision)?;
        self.launch.precision = precision;
        Ok(())
    }

    pub fn precision(&self) -> Precision {
        self.launch.precision
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// Messages about the kernel cache (e.g. an unwritable cache directory).
    pub fn notes(&self) -> Vec<String> {
        self.notes.lock().unwrap().clone()
    }

    /// Compiles (or loads from the cache) every kernel file now, instead of on first use.
    pub fn preload_all(&self) -> BResult<()> {
        for f in kernels::FILES {
            self.function(f.kernels[0])?;
        }
        Ok(())
    }

    /// The loaded function `name`, compiling its file on first use.
    pub(crate) fn function(&self, name: &'static str) -> BResult<CudaFunction> {
        if let Some(f) = self.functions.lock().unwrap().get(name) {
            return Ok(f.clone());
        }
        let file = kernels::file_of(name).ok_or_else(|| {
            BackendError::Unsupported(format!("no kernel named {name} in kernels/*.cu"))
        })?;
        let (cubin, _hit, note) =
            cache::compile_cached(file, &self.opts).map_err(BackendError::Device)?;
        if let Some(n) = note {
            self.notes.lock().unwrap().push(n);
        }
        let module = self
            .ctx
            .load_module(cudarc::nvrtc::Ptx::from_binary(cubin))
            .map_err(|e| dev_err(&format!("loading {}.cu", file.name), e))?;
        let mut map = self.functions.lock().unwrap();
        for k in file.kernels {
            let f = module
                .load_function(k)
                .map_err(|e| dev_err(&format!("kernel {k}"), e))?;
            map.insert(k, f);
        }
        Ok(map[name].clone())
    }

    /// Launches `name` on the backend's stream.
    ///
    /// # Safety
    /// As [`abi::Launcher::launch_raw`].
    unsafe fn launch_impl(
        &self,
        name: &'static str,
        grid: Grid,
        params: &mut [*mut c_void],
    ) -> BResult<()> {
        let f = self.function(name)?;
        self.ctx
            .bind_to_thread()
            .map_err(|e| dev_err("binding the context", e))?;
        let mut prof = self.profiler.lock().unwrap();
        let start = match prof.as_mut() {
            Some(p) => Some(p.start(&self.ctx, &self.stream)?),
            None => None,
        };
        // SAFETY: the parameters match the kernel's signature (the caller's contract); every
        // pointer is inside the arena, which outlive the stream's work.
        unsafe {
            cudarc::driver::result::launch_kernel(
                f.cu_function(),
                grid.blocks,
                (grid.threads, 1, 1),
                0,
                self.stream.cu_stream(),
                params,
            )
        }
        .map_err(|e| dev_err(&format!("launching {name}"), e))?;
        if let (Some(p), Some(s)) = (prof.as_mut(), start) {
            let op = *self.current_op.lock().unwrap();
            p.finish(&self.ctx, &self.stream, op, name, s)?;
        }
        Ok(())
    }

    /// Starts recording per-launch device times (CUDA events around every kernel).
    pub fn start_profiling(&self) {
        *self.profiler.lock().unwrap() = Some(Profiler::default());
    }

    /// Stops recording; the per-(op, kernel) table and every launch in order (for a trace).
    pub fn finish_profiling_with_timeline(
        &self,
    ) -> BResult<(Vec<profile::KernelStat>, Vec<profile::Launch>)> {
        let p = self.profiler.lock().unwrap().take();
        match p {
            Some(p) => p.report_with_timeline(),
            None => Ok((vec![], vec![])),
        }
    }

    /// Stops recording and returns the per-(op, kernel) table of device times.
    pub fn finish_profiling(&self) -> BResult<Vec<profile::KernelStat>> {
        let p = self.profiler.lock().unwrap().take();
        match p {
            Some(p) => p.report(),
            None => Ok(vec![]),
        }
    }
}

impl driver::DriverArena for CudaArena {
    fn base(&self) -> u64 {
        self.base
    }
    fn len(&self) -> usize {
        self.len
    }
}

impl driver::Driver for CudaBackend {
    type Arena = CudaArena;

    fn name_parts(&self) -> (String, String) {
        ("cuda-f32".into(), format!(" {}", self.info.name))
    }

    fn launch_state(&self) -> &LaunchState {
        &self.launch
    }

    unsafe fn launch_nonempty(
        &self,
        kernel: &'static str,
        grid: Grid,
        args: KernelArgs,
    ) -> BResult<()> {
        // SAFETY: forwarded from the caller.
        unsafe { self.launch_impl(kernel, grid, args.ptrs) }
    }

    fn alloc(&self, len: usize) -> BResult<CudaArena> {
        let buf = self
            .stream
            .alloc_zeros::<f32>(len.max(1))
            .map_err(|e| dev_err(&format!("allocating the {}-byte arena", len * 4), e))?;
        let base = buf.device_ptr(&self.stream).0;
        Ok(CudaArena { buf, base, len })
    }

    fn write(&self, arena: &mut CudaArena, offset: usize, data: &[f32]) -> BResult<()> {
        if data.is_empty() {
            return Ok(());
        }
        let mut view = arena.buf.slice_mut(offset..offset + data.len());
        self.stream
            .memcpy_htod(data, &mut view)
            .map_err(|e| dev_err("host → device copy", e))?;
        // Pageable source: make sure the copy has consumed `data` before returning.
        self.stream
            .synchronize()
            .map_err(|e| dev_err("host → device copy", e))
    }

    fn read(&self, arena: &CudaArena, offset: usize, len: usize) -> BResult<Vec<f32>> {
        if len == 0 {
            return Ok(vec![]);
        }
        let view = arena.buf.slice(offset..offset + len);
        let mut host = vec![0.0f32; len];
        self.stream
            .memcpy_dtoh(&view, &mut host)
            .map_err(|e| dev_err("device → host copy", e))?;
        self.stream
            .synchronize()
            .map_err(|e| dev_err("device → host copy (or an earlier kernel)", e))?;
        Ok(host)
    }

    fn set_current_op(&self, kind: &'static str) {
        *self.current_op.lock().unwrap() = kind;
    }

    fn synchronize(&self) -> BResult<()> {
        self.stream
            .synchronize()
            .map_err(|e| dev_err("stream synchronize (a kernel failed?)", e))
    }

    fn capture(&self) -> Option<&dyn driver::GraphCapture> {
        Some(self)
    }
}

impl driver::GraphCapture for CudaBackend {
    fn begin(&self) -> BResult<()> {
        if self.profiler.lock().unwrap().is_some() {
            return Err(BackendError::Unsupported(
                "graph capture while profiling (events per launch) is not supported".into(),
            ));
        }
        driver::Driver::synchronize(self)?;
        self.stream
            .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .map_err(|e| dev_err("begin graph capture", e))?;
        Ok(())
    }

    fn end(&self) -> BResult<usize> {
        let mut cap = self.capture.lock().unwrap();
        let g = self
            .stream
            .end_capture(sys::CUgraphInstantiate_flags(0))
            .map_err(|e| dev_err("end graph capture", e))?
            .ok_or_else(|| BackendError::Device("graph capture recorded nothing".into()))?;
        g.upload().map_err(|e| dev_err("graph upload", e))?;
        let id = match cap.graphs.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                cap.graphs.push(None);
                cap.graphs.len() - 1
            }
        };
        cap.graphs[id] = Some(g);
        Ok(id)
    }

    fn replay(&self, graph: usize) -> BResult<()> {
        let cap = self.capture.lock().unwrap();
        let g = cap
            .graphs
            .get(graph)
            .and_then(Option::as_ref)
            .ok_or_else(|| BackendError::Device(format!("no captured graph {graph} to replay")))?;
        g.launch().map_err(|e| dev_err("graph launch", e))
    }

    fn release(&self, graph: usize) {
        // Let a launched replay finish before its executable graph is destroyed.
        let _ = driver::Driver::synchronize(self);
        if let Some(slot) = self.capture.lock().unwrap().graphs.get_mut(graph) {
            *slot = None;
        }
    }
}

/// bf16 `mma.sync` exists from compute capability 8.0 (Ampere) on.
fn has_bf16_mma(info: &DeviceInfo) -> bool {
    info.compute_capability.0 >= 8
}

fn check_precision(info: &DeviceInfo, precision: Precision) -> Result<(), String> {
    if precision == Precision::Bf16 && !has_bf16_mma(info) {
        return Err(format!(
            "--precision bf16 needs bf16 tensor cores (compute capability 8.0 or newer); {} is {}.{}",
            info.name, info.compute_capability.0, info.compute_capability.1
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sys::cudaError_enum as E;

    #[test]
    fn cuda_errors_are_classed_for_recovery() {
        assert_eq!(
            error_class(E::CUDA_ERROR_OUT_OF_MEMORY),
            ErrorClass::OutOfMemory
        );
        for sticky in [
            E::CUDA_ERROR_ILLEGAL_ADDRESS,
            E::CUDA_ERROR_LAUNCH_FAILED,
            E::CUDA_ERROR_ECC_UNCORRECTABLE,
            E::CUDA_ERROR_DEVICE_UNAVAILABLE,
        ] {
            assert_eq!(error_class(sticky), ErrorClass::Lost, "{sticky:?}");
        }
        for ok in [E::CUDA_ERROR_INVALID_VALUE, E::CUDA_ERROR_NOT_FOUND] {
            assert_eq!(error_class(ok), ErrorClass::Recoverable, "{ok:?}");
        }
        // The mapping reaches the error the pipeline inspects. (Only OOM here: the other
        // messages ask libcuda for the error's name, which a machine without a GPU lacks.)
        let oom = dev_err("alloc", DriverError(E::CUDA_ERROR_OUT_OF_MEMORY));
        assert!(matches!(oom, BackendError::OutOfMemory(_)), "{oom}");
    }
}
