//! `dynface kernels check [--parity]`: the flags; compiling is `backend::cuda::check`, the
//! parity tables `cli/parity.rs`.

use crate::backend::cuda::check::{KernelsCheckOptions, KernelsCheckReport};

#[derive(clap::Args, Debug, Clone)]
pub struct KernelsCheckArgs {
    /// Target architectures (repeatable).
    #[arg(long = "arch", default_values_t = vec!["sm_90".to_string()])]
    pub arch: Vec<String>,
    /// Also compile for sm_90a (Hopper-specific instructions).
    #[arg(long)]
    pub sm90a: bool,
    /// Compile with --use_fast_math as well.
    #[arg(long)]
    pub fast_math: bool,
    /// Instead of compiling: run the op case table (forward and VJPs of every op) and every
    /// conv / gemm kernel variant against the f64 CPU backend, element by element, on CPU f32
    /// and on the kernels (the GPU if usable, else the CPU emulator of the kernel sources
    /// when a C++ compiler is found), fp32 and bf16. Exits non-zero on any failure.
    #[arg(long)]
    pub parity: bool,
    /// With --parity: only the cases whose "family/name" contains this (e.g. conv2d, matmul).
    #[arg(long, requires = "parity")]
    pub filter: Option<String>,
}

impl KernelsCheckArgs {
    pub fn options(&self) -> KernelsCheckOptions {
        KernelsCheckOptions {
            arch: self.arch.clone(),
            sm90a: self.sm90a,
            fast_math: self.fast_math,
        }
    }
}

impl Default for KernelsCheckArgs {
    fn default() -> Self {
        KernelsCheckArgs {
            arch: vec!["sm_90".into()],
            sm90a: false,
            fast_math: false,
            parity: false,
            filter: None,
        }
    }
}

/// Compiles every kernel file; prints the table; errors on failure or spills.
pub fn run_kernels_check(args: &KernelsCheckArgs) -> anyhow::Result<KernelsCheckReport> {
    crate::backend::cuda::check::run_kernels_check(&args.options())
}
