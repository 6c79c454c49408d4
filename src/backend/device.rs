//! Device selection for the CLI: `cpu`, `cuda` (an error without a usable GPU) or `auto`
//! (CUDA when usable, otherwise the CPU, saying why).

use super::cuda::{probe, DeviceInfo};

#[derive(Clone, Debug)]
pub enum DeviceChoice {
    /// Run on the CPU; `note` says why when the user asked for `auto` and got the CPU.
    Cpu {
        note: Option<String>,
    },
    Cuda(DeviceInfo),
}

/// Resolves a `--device` value.
pub fn select_device(spec: &str) -> Result<DeviceChoice, String> {
    match spec.to_ascii_lowercase().as_str() {
        "cpu" => Ok(DeviceChoice::Cpu { note: None }),
        "cuda" | "gpu" => probe()
            .map(DeviceChoice::Cuda)
            .map_err(|why| format!("--device cuda: no usable GPU: {why}")),
        "auto" => Ok(match probe() {
            Ok(info) => DeviceChoice::Cuda(info),
            Err(why) => DeviceChoice::Cpu {
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
            Ok(DeviceChoice::Cpu { note: None })
        ));
        match select_device("auto").unwrap() {
            DeviceChoice::Cpu { note } => assert!(note.unwrap().contains("running on the CPU")),
            DeviceChoice::Cuda(info) => assert!(!info.name.is_empty()),
        }
    }

    #[test]
    fn cuda_without_gpu_says_why() {
        if let Err(e) = select_device("cuda") {
            assert!(e.starts_with("--device cuda: no usable GPU: "), "{e}");
        }
    }
}
