//! The one device type: what `--device cpu|cuda[:N]|auto` resolves to, on top of the CUDA
//! probe, and device lists (`cuda:all`, `cuda:0,1`, `cpu,cpu`) for one worker per device. `auto` picks a usable GPU, else the CPU (and says why); `cuda` without a usable GPU
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

/// What a full `--device` value names: one device, or several that one process drives with
/// one worker each (`restore::workers`). A list holds one kind only, so an image's bytes do
/// not depend on which worker restored it.
#[derive(Clone, Debug)]
pub enum Devices {
    /// `count` CPU "devices" (`cpu,cpu`: workers sharing the same cores; for tests of the
    /// multi-device logic, no faster than one); `note` as in [`Device::Cpu`].
    Cpu { count: usize, note: Option<String> },
    /// CUDA devices, by ordinal, none twice.
    Cuda(Vec<DeviceInfo>),
}

impl Devices {
    pub fn len(&self) -> usize {
        match self {
            Devices::Cpu { count, .. } => *count,
            Devices::Cuda(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name of worker `i` in the report: the device's own name for one device (`cpu`,
    /// `cuda:N`), `cpu:i` for a CPU list.
    pub fn label(&self, i: usize) -> String {
        match self {
            Devices::Cpu { count: 1, .. } => "cpu".into(),
            Devices::Cpu { .. } => format!("cpu:{i}"),
            Devices::Cuda(v) => format!("cuda:{}", v[i].ordinal),
        }
    }

    pub fn labels(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.label(i)).collect()
    }

    pub fn describe(&self) -> String {
        match self {
            Devices::Cpu { count: 1, .. } => Device::Cpu { note: None }.describe(),
            Devices::Cpu { count, .. } => format!(
                "{count} CPU workers ({}), sharing {} threads",
                self.labels().join(", "),
                rayon::current_num_threads()
            ),
            Devices::Cuda(v) => v
                .iter()
                .map(|d| format!("cuda:{} ({d})", d.ordinal))
                .collect::<Vec<_>>()
                .join("; "),
        }
    }
}

/// One item of a device list: `cpu`, `cuda`/`gpu` (device 0), `cuda:N`, or a bare `N`
/// after a CUDA item (`cuda:0,1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Item {
    Cpu,
    Cuda(usize),
}

fn parse_list(spec: &str) -> Result<Vec<Item>, String> {
    let mut items = vec![];
    for raw in spec.split(',') {
        let it = raw.trim().to_ascii_lowercase();
        let bad = || {
            format!(
                "--device {spec}: {raw:?} is not a device (cpu, cuda, cuda:N, or N after cuda:M)"
            )
        };
        let ordinal = |n: &str| n.parse::<usize>().map_err(|_| bad());
        let item = match it.as_str() {
            "cpu" => Item::Cpu,
            "cuda" | "gpu" => Item::Cuda(0),
            _ => match it.split_once(':') {
                Some(("cuda" | "gpu", n)) => Item::Cuda(ordinal(n)?),
                Some(_) => return Err(bad()),
                None if matches!(items.last(), Some(Item::Cuda(_))) => Item::Cuda(ordinal(&it)?),
                None => return Err(bad()),
            },
        };
        if let Item::Cuda(n) = item {
            if items.contains(&item) {
                return Err(format!("--device {spec}: cuda:{n} is named twice"));
            }
        }
        items.push(item);
    }
    let cpus = items.iter().filter(|i| **i == Item::Cpu).count();
    if cpus > 0 && cpus < items.len() {
        return Err(format!(
            "--device {spec}: a device list holds one kind (cpu,cpu or cuda:0,1,...): \
             the CPU and the GPU do not compute the same bits, and an image's output must not \
             depend on which device restored it"
        ));
    }
    Ok(items)
}

/// Resolves a full `--device` value: `auto`, `cpu`, `cuda[:N]`, or a device list
/// (`cuda:all`, `cuda:0,1,...`, `cpu,cpu,...`).
pub fn resolve(spec: &str) -> Result<Devices, String> {
    let lower = spec.trim().to_ascii_lowercase();
    if lower == "auto" {
        return Ok(match select_device("auto")? {
            Device::Cpu { note } => Devices::Cpu { count: 1, note },
            Device::Cuda(info) => Devices::Cuda(vec![info]),
        });
    }
    if lower == "cuda:all" || lower == "gpu:all" {
        let count = super::cuda::probe::device_count()
            .map_err(|why| format!("--device {spec}: no usable GPU: {why}"))?;
        let infos = (0..count)
            .map(|n| {
                super::cuda::probe::probe_on(n)
                    .map_err(|why| format!("--device {spec}: cuda:{n}: {why}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Devices::Cuda(infos));
    }
    let items = parse_list(spec)?;
    if items[0] == Item::Cpu {
        return Ok(Devices::Cpu {
            count: items.len(),
            note: None,
        });
    }
    let infos = items
        .iter()
        .map(|it| {
            let Item::Cuda(n) = *it else {
                unreachable!("parse_list returns one kind")
            };
            super::cuda::probe::probe_on(n).map_err(|why| {
                if n == 0 && items.len() == 1 {
                    format!("--device {spec}: no usable GPU: {why}")
                } else {
                    format!("--device {spec}: cuda:{n}: {why}")
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Devices::Cuda(infos))
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
    fn device_lists_parse_to_one_kind() {
        assert_eq!(
            parse_list("cuda:0,1, cuda:3").unwrap(),
            vec![Item::Cuda(0), Item::Cuda(1), Item::Cuda(3)]
        );
        assert_eq!(parse_list("cpu,CPU").unwrap(), vec![Item::Cpu, Item::Cpu]);
        assert_eq!(parse_list("gpu").unwrap(), vec![Item::Cuda(0)]);
        let e = parse_list("cpu,cuda:0").unwrap_err();
        assert!(e.contains("one kind"), "{e}");
        let e = parse_list("cuda:1,1").unwrap_err();
        assert!(e.contains("cuda:1 is named twice"), "{e}");
        for bad in ["cpu,1", "tpu", "cuda:x", "cuda:0,"] {
            let e = parse_list(bad).unwrap_err();
            assert!(e.contains("is not a device"), "{bad}: {e}");
        }
    }

    #[test]
    fn cpu_lists_name_one_worker_per_item() {
        let d = resolve("cpu,cpu").unwrap();
        assert_eq!(d.labels(), vec!["cpu:0", "cpu:1"]);
        assert_eq!(resolve("cpu").unwrap().labels(), vec!["cpu"]);
    }

    #[test]
    fn cuda_lists_resolve_or_say_why() {
        let gpus = crate::backend::cuda::probe::device_count();
        for spec in ["cuda:all", "cuda:0,1", "cuda:1"] {
            match resolve(spec) {
                Ok(Devices::Cuda(v)) => assert!(gpus.is_ok() && !v.is_empty(), "{spec}"),
                Ok(other) => panic!("{spec} resolved to {other:?}"),
                Err(e) => assert!(e.starts_with(&format!("--device {spec}: ")), "{e}"),
            }
        }
    }
}
