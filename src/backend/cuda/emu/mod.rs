//! A CPU emulator of the CUDA kernels: compiles `kernels/*.cu` with the host C++ compiler
//! against `shim.hpp` (CUDA built-ins as host code, one fiber per CUDA thread) and runs the
//! backend's own launch code (`ops.rs`) on it. It exists so that the launch configurations,
//! argument marshalling and kernel index arithmetic are tested on machines without a GPU;
//! it says nothing about speed, and races that need true concurrency can still hide.

use super::abi::{Grid, KernelArgs, LaunchState};
use super::driver::{Driver, DriverArena, GraphCapture};
use super::kernels::{FILES, PRELUDE};
use super::Precision;
use crate::backend::{BResult, BackendError};
use std::ffi::{c_char, c_void, CString};
use std::path::PathBuf;
use std::sync::Mutex;

const SHIM: &str = include_str!("shim.hpp");
const RUNTIME: &str = include_str!("runtime.cpp");

type LaunchFn = unsafe extern "C" fn(
    *const c_char,
    u32,
    u32,
    u32,
    u32,
    *mut *mut c_void,
    *mut c_char,
    i32,
) -> i32;

pub struct EmuBackend {
    _lib: libloading::Library,
    launch_fn: LaunchFn,
    /// Multiprocessor count the launch code plans for (132: an H100 SXM, so the emulator
    /// exercises the tile and split-K choices the GPU will make) and the operand precision
    /// of the convolutions and products (default fp32), as on the CUDA backend.
    launch: LaunchState,
    /// Graph capture, when enabled ([`EmuBackend::with_capture`]).
    capture: Option<Mutex<Recorder>>,
}

/// One recorded launch: the kernel, its grid and a copy of its parameter values (8-byte
/// aligned, as the kernels read them), as a CUDA graph keeps them.
struct Recorded {
    kernel: &'static str,
    grid: Grid,
    params: Vec<Vec<u64>>,
}

#[derive(Default)]
struct Recorder {
    recording: Option<Vec<Recorded>>,
    graphs: Vec<Option<Vec<Recorded>>>,
}

pub struct EmuArena {
    data: Vec<f32>,
}

impl DriverArena for EmuArena {
    fn base(&self) -> u64 {
        self.data.as_ptr() as u64
    }
    fn len(&self) -> usize {
        self.data.len()
    }
}

/// The single translation unit: shim, kernel prelude, every kernel file, scheduler, and a
/// dispatcher from kernel name to launch.
fn translation_unit() -> String {
    let mut s = String::new();
    s.push_str(SHIM);
    s.push_str(PRELUDE);
    for f in FILES {
        s.push_str(&format!("\n// ---- {}.cu\n", f.name));
        s.push_str(f.source);
    }
    s.push_str(RUNTIME);
    s.push_str(
        "\nextern \"C\" int emu_launch(const char* name, unsigned gx, unsigned gy, unsigned gz,\n\
         unsigned block, void** p, char* err, int errlen) {\n    std::string n(name);\n",
    );
    for f in FILES {
        for k in f.kernels {
            s.push_str(&format!(
                "    if (n == \"{k}\") return emu_grid([&] {{ emu_call({k}, p); }}, gx, gy, gz, block, err, errlen);\n"
            ));
        }
    }
    s.push_str("    snprintf(err, errlen, \"unknown kernel %s\", name);\n    return 2;\n}\n");
    s
}

impl EmuBackend {
    /// Builds (or reuses) the emulator library. Fails when no host C++ compiler is found.
    pub fn build() -> Result<Self, String> {
        // One build per process even when tests run in parallel.
        static BUILD: Mutex<()> = Mutex::new(());
        let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
        let tu = translation_unit();
        let key = super::cache::key(&[tu.as_bytes()]);
        let dir = std::env::temp_dir().join(format!("dynface-cuda-emu-{}", &key[..16]));
        let lib_path = dir.join("libkernels_emu.so");
        if !lib_path.exists() {
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let src = dir.join("kernels_emu.cpp");
            std::fs::write(&src, &tu).map_err(|e| format!("{}: {e}", src.display()))?;
            let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
            let tmp: PathBuf = dir.join(format!("lib.{}.so", std::process::id()));
            let out = std::process::Command::new(&cxx)
                // No strict aliasing: kernels stage bf16 halves through `unsigned short*` views of
                // `unsigned` shared arrays, as CUDA code does.
                .args([
                    "-std=c++17",
                    "-O2",
                    "-fno-strict-aliasing",
                    "-shared",
                    "-fPIC",
                    "-w",
                    "-o",
                ])
                .arg(&tmp)
                .arg(&src)
                .output()
                .map_err(|e| format!("no host C++ compiler ({cxx}): {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "{cxx} failed on the emulated kernels:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            std::fs::rename(&tmp, &lib_path).map_err(|e| e.to_string())?;
        }
        // SAFETY: a library this function just built from our own sources.
        let lib = unsafe { libloading::Library::new(&lib_path) }
            .map_err(|e| format!("{}: {e}", lib_path.display()))?;
        let launch_fn = unsafe { lib.get::<LaunchFn>(b"emu_launch\0") }
            .map_err(|e| format!("emu_launch: {e}"))?;
        let launch_fn = *launch_fn;
        Ok(EmuBackend {
            _lib: lib,
            launch_fn,
            launch: LaunchState::new(132, Precision::Fp32, true),
            capture: None,
        })
    }

    /// The same emulator with the convolutions and products at `precision` (of the nodes
    /// that carry no precision of their own).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.launch.precision = precision;
        self
    }

    /// The same emulator with graph capture: between `begin_capture` and `end_capture`
    /// launches are recorded (kernel, grid, argument values) and not run, and `replay` runs
    /// them again on whatever memory they address, as CUDA graphs do, so tests can check
    /// the executor's record/replay paths (and what a recording points into) without a GPU.
    pub fn with_capture(mut self) -> Self {
        self.capture = Some(Mutex::new(Recorder::default()));
        self
    }

    /// Plans the launches for a device of `sms` multiprocessors.
    pub fn set_sms(&mut self, sms: usize) {
        self.launch.sms = sms.max(1);
    }
}

impl EmuBackend {
    /// Runs one launch now.
    ///
    /// # Safety
    /// As [`super::abi::Launcher::launch_raw`].
    unsafe fn run(
        &self,
        name: &'static str,
        grid: Grid,
        params: &mut [*mut c_void],
    ) -> BResult<()> {
        let ((gx, gy, gz), block) = (grid.blocks, grid.threads);
        if gy > 65535 || gz > 65535 || block > 1024 {
            return Err(BackendError::Device(format!(
                "{name}: invalid launch grid {:?} block {block}",
                grid.blocks
            )));
        }
        let cname = CString::new(name).expect("kernel names have no NUL");
        let mut err = vec![0 as c_char; 256];
        // The emulator's scheduler state is process-global: one launch at a time.
        static LAUNCH: Mutex<()> = Mutex::new(());
        let _one = LAUNCH.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: parameters are laid out exactly as for cuLaunchKernel (the caller's
        // contract); pointers inside them address host memory of the arena.
        let rc = unsafe {
            (self.launch_fn)(
                cname.as_ptr(),
                gx,
                gy,
                gz,
                block,
                params.as_mut_ptr(),
                err.as_mut_ptr(),
                err.len() as i32,
            )
        };
        if rc != 0 {
            let msg: String = err
                .iter()
                .take_while(|&&c| c != 0)
                .map(|&c| c as u8 as char)
                .collect();
            return Err(BackendError::Device(format!("{name} (emulated): {msg}")));
        }
        Ok(())
    }
}

impl GraphCapture for EmuBackend {
    fn begin(&self) -> BResult<()> {
        let mut rec = self.recorder().lock().unwrap();
        rec.recording = Some(vec![]);
        Ok(())
    }

    fn end(&self) -> BResult<usize> {
        let mut rec = self.recorder().lock().unwrap();
        let steps = rec.recording.take().unwrap_or_default();
        rec.graphs.push(Some(steps));
        Ok(rec.graphs.len() - 1)
    }

    fn replay(&self, graph: usize) -> BResult<()> {
        let rec = self.recorder().lock().unwrap();
        let steps = rec
            .graphs
            .get(graph)
            .and_then(Option::as_ref)
            .ok_or_else(|| BackendError::Device(format!("no captured graph {graph} to replay")))?;
        for st in steps {
            let mut values = st.params.clone();
            let mut ptrs: Vec<*mut c_void> = values
                .iter_mut()
                .map(|v| v.as_mut_ptr() as *mut c_void)
                .collect();
            // SAFETY: the values the launch was recorded with, of its kernel's parameter
            // types; the memory they address belongs to the executor that recorded them,
            // which releases the graph before it frees that memory.
            unsafe { self.run(st.kernel, st.grid, &mut ptrs)? };
        }
        Ok(())
    }

    fn release(&self, graph: usize) {
        if let Some(slot) = self.recorder().lock().unwrap().graphs.get_mut(graph) {
            *slot = None;
        }
    }
}

impl EmuBackend {
    fn recorder(&self) -> &Mutex<Recorder> {
        self.capture
            .as_ref()
            .expect("graph capture is only reached when enabled")
    }
}

impl Driver for EmuBackend {
    type Arena = EmuArena;

    fn name_parts(&self) -> (String, String) {
        ("cuda-emulated-on-cpu".into(), String::new())
    }

    fn launch_state(&self) -> &LaunchState {
        &self.launch
    }

    unsafe fn launch_nonempty(
        &self,
        name: &'static str,
        grid: Grid,
        args: KernelArgs,
    ) -> BResult<()> {
        if let Some(rec) = &self.capture {
            if let Some(steps) = rec.lock().unwrap().recording.as_mut() {
                let params = args
                    .ptrs
                    .iter()
                    .zip(args.sizes)
                    .map(|(&p, &size)| {
                        let mut words = vec![0u64; size.div_ceil(8)];
                        // SAFETY: `p` points at a value of `size` bytes (the caller's contract).
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                p as *const u8,
                                words.as_mut_ptr() as *mut u8,
                                size,
                            )
                        };
                        words
                    })
                    .collect();
                steps.push(Recorded {
                    kernel: name,
                    grid,
                    params,
                });
                return Ok(());
            }
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.run(name, grid, args.ptrs) }
    }

    fn capture(&self) -> Option<&dyn GraphCapture> {
        self.capture.as_ref().map(|_| self as &dyn GraphCapture)
    }

    fn alloc(&self, len: usize) -> BResult<EmuArena> {
        Ok(EmuArena {
            data: vec![0.0; len.max(1)],
        })
    }

    fn write(&self, arena: &mut EmuArena, offset: usize, data: &[f32]) -> BResult<()> {
        arena.data[offset..offset + data.len()].copy_from_slice(data);
        Ok(())
    }

    fn read(&self, arena: &EmuArena, offset: usize, len: usize) -> BResult<Vec<f32>> {
        Ok(arena.data[offset..offset + len].to_vec())
    }
}
