//! `--device auto|cpu|cuda[:N]` for the pipeline, on top of the backend's device probe.

use crate::backend::device::{select_device, DeviceChoice};
use anyhow::{anyhow, bail, Result};

/// Why `--precision bf16` cannot run on the CPU backend.
pub const BF16_ON_CPU: &str =
    "--precision bf16 needs a GPU (bf16 tensor-core convolutions and products); \
     the CPU backend computes in fp32 only: use --precision fp32 or --device cuda";

pub enum Device {
    Cpu,
    Cuda(String),
}

impl Device {
    pub fn describe(&self) -> String {
        match self {
            Device::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
            Device::Cuda(d) => format!("cuda ({d})"),
        }
    }
}

/// `auto` picks a usable GPU, else the CPU, and says which; `cuda` without a usable GPU is an
/// error that says why.
pub fn resolve(spec: &str) -> Result<Device> {
    let base = match spec.split_once(':') {
        Some(("cuda", n)) => {
            if n != "0" {
                bail!("--device {spec}: only device 0 is supported in this build");
            }
            "cuda"
        }
        _ => spec,
    };
    match select_device(base).map_err(|e| anyhow!(e))? {
        DeviceChoice::Cpu { note } => {
            if let Some(n) = note {
                eprintln!("{n}");
            }
            Ok(Device::Cpu)
        }
        DeviceChoice::Cuda(info) => Ok(Device::Cuda(info.to_string())),
    }
}
