//! The one device type: what `--device cpu|cuda[:N]|auto` resolves to, on top of the CUDA
//! probe. `auto` picks a usable GPU, else the CPU (and says why); `cuda` without a usable GPU
//! is an error that says why. Printing the note is the caller's (the CLI's) job.

use super::cuda::{probe, DeviceInfo};

/// Why `--precision bf16` cannot run on the CPU backend.
pub const BF16_ON_CPU: &str =
    "--precision bf16 needs a GPU (bf16 tensor-core convolutions and products); \
     the CPU backend computes in fp32 only: use --precision fp32 or --device cuda";

#[derive(Clone, Debug)]
pub enum Device {
    /// Run on the CPU; `note` says why when the user asked for `auto` and got the CPU.
    Cpu {
        note: Option<String>,
    },
    Cuda(DeviceInfo),
}

impl Device {
    pub fn describe(&self) -> String {
        match self {
            Device::Cpu { .. } => format!("cpu ({} threads)", rayon::current_num_threads()),
            Device::Cuda(d) => format!("cuda ({d})"),
        }
    }
}

/// Resolves a plain `--device` value: `cpu`, `cuda` (or `gpu`) or `auto`.
pub fn select_device(spec: &str) -> Result<Device, String> {
    match spec.to_ascii_lowercase().as_str() {
        "cpu" => Ok(Device::Cpu { note: None }),
        "cuda" | "gpu" => probe()
            .map(Device::Cuda)
            .map_err(|why| format!("--device cuda: no usable GPU: {why}")),
        "auto" => Ok(match probe() {
            Ok(info) => Device::Cuda(info),
            Err(why) => Device::Cpu {
                note: Some(format!(
                    "--device auto: no usable GPU ({why}); running on the CPU"
                )),
            },
        }),
        other => Err(format!(
            "unknown --device {other:?}: expected cpu, cuda or auto"
        )),
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

/// Resolves a full `--device` value, `cuda:N` and device lists included.
pub fn resolve(spec: &str) -> Result<Device, String> {
    if spec.contains(',') || spec.eq_ignore_ascii_case("cuda:all") {
        return Err(several_devices(spec));
    }
    let base = match spec.split_once(':') {
        Some(("cuda", n)) => {
            if n != "0" {
                return Err(format!(
                    "--device {spec}: only device 0 is supported in this build"
                ));
            }
            "cuda"
        }
        _ => spec,
    };
    select_device(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_device_is_an_error() {
        let e = select_device("tpu").unwrap_err();
        assert!(e.contains("cpu, cuda or auto"), "{e}");
    }

    #[test]
    fn cpu_and_auto_never_fail() {
        assert!(matches!(
            select_device("cpu"),
            Ok(Device::Cpu { note: None })
        ));
        match select_device("auto").unwrap() {
            Device::Cpu { note } => assert!(note.unwrap().contains("running on the CPU")),
            Device::Cuda(info) => assert!(!info.name.is_empty()),
        }
    }

    #[test]
    fn cuda_without_gpu_says_why() {
        if let Err(e) = select_device("cuda") {
            assert!(e.starts_with("--device cuda: no usable GPU: "), "{e}");
        }
    }

    #[test]
    fn several_devices_are_refused_with_the_per_gpu_shard_recipe() {
        for spec in ["cuda:all", "cuda:0,1", "cpu,cpu"] {
            let e = resolve(spec).expect_err(spec);
            assert!(e.contains("--shard I/N") && e.contains(spec), "{e}");
        }
    }

    #[test]
    fn only_cuda_device_zero_is_accepted() {
        let e = resolve("cuda:1").unwrap_err();
        assert!(e.contains("only device 0"), "{e}");
    }
}
