//! A CPU emulator of the CUDA kernels: compiles `kernels/*.cu` with the host C++ compiler
//! against `shim.hpp` (CUDA built-ins as host code, one fiber per CUDA thread) and runs the
//! backend's own launch code (`ops.rs`) on it. It exists so that the launch configurations,
//! argument marshalling and kernel index arithmetic are tested on machines without a GPU;
//! it says nothing about speed, and races that need true concurrency can still hide.

use super::kernels::{FILES, PRELUDE};
use super::ops::{self, Launcher};
use super::{Arg, KernelBackend, LaunchLog, Precision, Variant};
use crate::backend::{BResult, Backend, BackendError, Operand};
use crate::graph::Node;
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
    workspace: Mutex<Vec<f32>>,
    /// Multiprocessor count the launch code plans for (132: an H100 SXM), so the emulator
    /// exercises the tile and split-K choices the GPU will make.
    pub sms: usize,
    /// Operand precision of the convolutions and products, as on the CUDA backend (default
    /// fp32).
    pub precision: Precision,
    variant: Mutex<Variant>,
    launch_log: LaunchLog,
}

pub struct EmuArena {
    data: Vec<f32>,
}

impl EmuArena {
    fn base(&self) -> u64 {
        self.data.as_ptr() as u64
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
            workspace: Mutex::new(vec![]),
            sms: 132,
            precision: Precision::Fp32,
            variant: Mutex::new(Variant::default()),
            launch_log: LaunchLog::default(),
        })
    }

    /// The same emulator with the convolutions and products at `precision`.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }
}

impl Launcher for EmuBackend {
    fn launch(
        &self,
        name: &'static str,
        grid: (u32, u32, u32),
        block: u32,
        mut args: Vec<Arg>,
    ) -> BResult<()> {
        if grid.0 == 0 || grid.1 == 0 || grid.2 == 0 {
            return Ok(());
        }
        self.launch_log.record(name);
        if grid.1 > 65535 || grid.2 > 65535 || block > 1024 {
            return Err(BackendError::Device(format!(
                "{name}: invalid launch grid {grid:?} block {block}"
            )));
        }
        let mut params: Vec<*mut c_void> = args.iter_mut().map(Arg::as_param).collect();
        let cname = CString::new(name).expect("kernel names have no NUL");
        let mut err = vec![0 as c_char; 256];
        // The emulator's scheduler state is process-global: one launch at a time.
        static LAUNCH: Mutex<()> = Mutex::new(());
        let _one = LAUNCH.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: parameters are laid out exactly as for cuLaunchKernel; pointers inside them
        // address host memory owned by the arena or the workspace.
        let rc = unsafe {
            (self.launch_fn)(
                cname.as_ptr(),
                grid.0,
                grid.1,
                grid.2,
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

    fn workspace(&self, bytes: usize) -> BResult<u64> {
        let mut ws = self.workspace.lock().unwrap();
        let n = bytes.div_ceil(4);
        if ws.len() < n {
            *ws = vec![f32::NAN; n];
        }
        Ok(ws.as_ptr() as u64)
    }

    fn sms(&self) -> usize {
        self.sms
    }

    fn precision(&self) -> Precision {
        self.precision
    }

    fn variant(&self) -> Variant {
        *self.variant.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Backend for EmuBackend {
    type Elem = f32;
    type Arena = EmuArena;

    fn name(&self) -> String {
        match self.precision {
            Precision::Fp32 => "cuda-emulated-on-cpu".into(),
            Precision::Bf16 => "cuda-emulated-on-cpu (bf16 tensor-core convs, products)".into(),
        }
    }

    fn alloc(&self, len: usize) -> BResult<EmuArena> {
        crate::backend::fault::check_alloc(len as u64 * 4)?;
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

    fn fill(&self, arena: &mut EmuArena, offset: usize, len: usize, value: f32) -> BResult<()> {
        ops::fill(self, arena.base() + 4 * offset as u64, len, value)
    }

    fn copy(&self, arena: &mut EmuArena, src: usize, dst: usize, len: usize) -> BResult<()> {
        crate::backend::check_copy(arena.data.len(), src, dst, len)?;
        let base = arena.base();
        ops::copy(self, base + 4 * src as u64, base + 4 * dst as u64, len)
    }

    /// The CUDA backend's choice, so tests on the emulator plan what a GPU plans.
    fn supports(&self, op: &crate::graph::Op, inputs: &[&[usize]]) -> bool {
        super::attention::supports(op, inputs)
    }

    fn exec(
        &self,
        arena: &mut EmuArena,
        node: &Node,
        inputs: &[Operand],
        out: Operand,
    ) -> BResult<()> {
        ops::exec(self, arena.base(), &node.op, inputs, out)
    }
}

impl KernelBackend for EmuBackend {
    fn bf16_round(&self, arena: &EmuArena, x: usize, y: usize, n: usize) -> BResult<()> {
        ops::bf16_round(self, arena.base(), x, y, n)
    }

    fn mma_probe(&self, arena: &EmuArena, a: usize, b: usize, c: usize, d: usize) -> BResult<()> {
        ops::mma_probe(self, arena.base(), a, b, c, d)
    }

    fn fused_attention(
        &self,
        arena: &EmuArena,
        q: usize,
        k: usize,
        v: usize,
        out: usize,
        (b, l, s): (usize, usize, usize),
        scale: f32,
    ) -> BResult<()> {
        ops::fused_attention(self, arena.base(), q, k, v, out, b, l, s, scale)
    }

    fn force_variant(&self, v: Variant) {
        *self.variant.lock().unwrap_or_else(|e| e.into_inner()) = v;
    }

    fn launched(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.launch_log.snapshot()
    }
}
