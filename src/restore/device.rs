//! `--device auto|cpu|cuda[:N]` for the pipeline.

use anyhow::{bail, Result};

#[derive(Clone, Debug)]
pub enum Device {
    Cpu,
}

impl Device {
    pub fn describe(&self) -> String {
        match self {
            Device::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
        }
    }
}

/// `auto` picks a usable GPU, else the CPU, and says which; `cuda` without a usable GPU is an
/// error that says why.
pub fn resolve(spec: &str) -> Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        "auto" => {
            eprintln!("no CUDA backend in this build of the pipeline: using the CPU");
            Ok(Device::Cpu)
        }
        s if s == "cuda" || s.starts_with("cuda:") => {
            bail!("--device {s}: the restore pipeline has no CUDA backend in this build; use --device cpu")
        }
        s => bail!("--device {s}: expected auto, cpu, cuda or cuda:N"),
    }
}
