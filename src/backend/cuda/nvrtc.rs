//! NVRTC at the result/sys level: the safe cudarc API returns only PTX and shows the log only
//! on failure, but the backend wants a CUBIN for the device's own architecture and the checker
//! wants the ptxas report of a successful compile.

use cudarc::nvrtc::{result, sys};
use std::ffi::CString;

/// How a kernel file is compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileOpts {
    /// `sm_90`, `sm_90a`, ...
    pub arch: String,
    /// `--use_fast_math` (approximate exp/div/sqrt); off for the fp32 reference kernels.
    pub fast_math: bool,
    /// Ask ptxas for its resource report (`--ptxas-options=-v`).
    pub ptxas_verbose: bool,
}

impl CompileOpts {
    pub fn new(arch: &str) -> Self {
        CompileOpts {
            arch: arch.to_string(),
            fast_math: false,
            ptxas_verbose: false,
        }
    }

    pub fn to_args(&self) -> Vec<String> {
        let mut v = vec![
            format!("--gpu-architecture={}", self.arch),
            "-std=c++17".to_string(),
        ];
        if self.fast_math {
            v.push("--use_fast_math".into());
        }
        if self.ptxas_verbose {
            v.push("--ptxas-options=-v".into());
        }
        v
    }
}

/// A compiled kernel file.
pub struct Compiled {
    pub cubin: Vec<u8>,
    pub log: String,
}

/// Why NVRTC cannot be used on this machine, if it cannot.
pub fn unavailable() -> Option<String> {
    // SAFETY: only tries to dlopen the library; never panics.
    if unsafe { sys::is_culib_present() } {
        None
    } else {
        Some(
            "libnvrtc.so not found: install CUDA 13 NVRTC (the CUDA toolkit, or \
             `pip install nvidia-cuda-nvrtc==13.0.88`, see .ci/install-nvrtc.sh) and add its \
             lib directory to LD_LIBRARY_PATH"
                .to_string(),
        )
    }
}

/// NVRTC's (major, minor) version.
pub fn version() -> Result<(i32, i32), String> {
    if let Some(why) = unavailable() {
        return Err(why);
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: plain out-parameters.
    let r = unsafe { sys::nvrtcVersion(&mut major, &mut minor) };
    if r != sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(format!("nvrtcVersion failed: {r:?}"));
    }
    Ok((major, minor))
}

fn log_string(raw: Vec<std::ffi::c_char>) -> String {
    let bytes: Vec<u8> = raw
        .into_iter()
        .map(|c| c as u8)
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Compiles one translation unit to a CUBIN. The error carries NVRTC's log.
pub fn compile(name: &str, src: &str, opts: &CompileOpts) -> Result<Compiled, String> {
    if let Some(why) = unavailable() {
        return Err(why);
    }
    let csrc = CString::new(src).map_err(|_| format!("{name}: source contains a NUL byte"))?;
    let cname = CString::new(format!("{name}.cu")).expect("kernel file names have no NUL");
    let prog = result::create_program(&csrc, Some(&cname))
        .map_err(|e| format!("{name}: nvrtcCreateProgram: {e:?}"))?;
    let args = opts.to_args();
    // SAFETY: `prog` was just created and is destroyed below, once.
    let compiled = unsafe { result::compile_program(prog, &args) };
    let log = unsafe { result::get_program_log(prog) }
        .map(log_string)
        .unwrap_or_default();
    let out = match compiled {
        Err(e) => Err(format!(
            "{name}.cu failed to compile for {} ({e:?}):\n{log}",
            opts.arch
        )),
        Ok(()) => {
            let mut size = 0usize;
            // SAFETY: size query then a buffer of that size.
            let r = unsafe { sys::nvrtcGetCUBINSize(prog, &mut size) };
            if r != sys::nvrtcResult::NVRTC_SUCCESS || size == 0 {
                Err(format!(
                    "{name}.cu: no CUBIN for {} ({r:?}); is the architecture a real sm_XY?",
                    opts.arch
                ))
            } else {
                let mut cubin = vec![0u8; size];
                let r = unsafe { sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr() as *mut _) };
                if r != sys::nvrtcResult::NVRTC_SUCCESS {
                    Err(format!("{name}.cu: nvrtcGetCUBIN failed: {r:?}"))
                } else {
                    Ok(Compiled { cubin, log })
                }
            }
        }
    };
    // SAFETY: created above, not destroyed before.
    let _ = unsafe { result::destroy_program(prog) };
    out
}
