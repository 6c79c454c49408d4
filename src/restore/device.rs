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

/// Why `--device cuda:all` / `cuda:0,1` is refused, and what to run instead.
fn several_devices(spec: &str) -> String {
    format!(
        "--device {spec}: several devices in one process are not built yet; run one process \
         per GPU, each on its own part of the inputs: \
         CUDA_VISIBLE_DEVICES=I dynface restore ... --device cuda --shard I/N for I in 0..N, \
         then dynface report merge OUTPUT (README, Cluster runs)"
    )
}

/// `auto` picks a usable GPU, else the CPU, and says which; `cuda` without a usable GPU is an
/// error that says why.
pub fn resolve(spec: &str) -> Result<Device> {
    if spec.contains(',') || spec.eq_ignore_ascii_case("cuda:all") {
        bail!("{}", several_devices(spec));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_devices_are_refused_with_the_per_gpu_shard_recipe() {
        for spec in ["cuda:all", "cuda:0,1", "cpu,cpu"] {
            let e = resolve(spec).err().expect(spec).to_string();
            assert!(e.contains("--shard I/N") && e.contains(spec), "{e}");
        }
    }
}
