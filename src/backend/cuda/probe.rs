//! Finds out whether a usable CUDA device exists without ever panicking: cudarc loads
//! libcuda/libnvrtc lazily and panics on a missing library or symbol, so the libraries are
//! probed first and the context creation is guarded.

use cudarc::driver::{sys, CudaContext};
use std::sync::Arc;

/// What the backend needs to know about one device.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    /// The CUDA ordinal (`cuda:N`; after `CUDA_VISIBLE_DEVICES`'s renumbering).
    pub ordinal: usize,
    pub name: String,
    pub compute_capability: (i32, i32),
    pub total_mem: usize,
    pub multiprocessors: i32,
}

impl DeviceInfo {
    /// NVRTC architecture name, e.g. `sm_90`.
    pub fn arch(&self) -> String {
        format!(
            "sm_{}{}",
            self.compute_capability.0, self.compute_capability.1
        )
    }
}

impl std::fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (compute capability {}.{}, {:.1} GiB, {} SMs)",
            self.name,
            self.compute_capability.0,
            self.compute_capability.1,
            self.total_mem as f64 / (1u64 << 30) as f64,
            self.multiprocessors
        )
    }
}

/// The libraries first (cudarc panics on a missing one), then NVRTC.
fn libraries_present() -> Result<(), String> {
    // SAFETY: only dlopens; never panics.
    if !unsafe { sys::is_culib_present() } {
        return Err("libcuda.so not found: install the NVIDIA driver / set LD_LIBRARY_PATH".into());
    }
    match super::nvrtc::unavailable() {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

const UNUSABLE_DRIVER: &str = "the CUDA driver library is present but unusable (missing symbol: \
                               driver older than CUDA 13?)";

/// How many CUDA devices this process sees (`--device cuda:all`), or why none.
pub fn device_count() -> Result<usize, String> {
    libraries_present()?;
    let counted = std::panic::catch_unwind(|| {
        CudaContext::device_count().map_err(|e| format!("cuDeviceGetCount failed: {e:?}"))
    });
    match counted {
        Ok(Ok(n)) if n >= 1 => Ok(n as usize),
        Ok(Ok(_)) => Err("no CUDA device visible (CUDA_VISIBLE_DEVICES?)".to_string()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(UNUSABLE_DRIVER.into()),
    }
}

/// Checks the libraries, then opens device 0. The error says what is missing and what to do.
pub fn open() -> Result<(Arc<CudaContext>, DeviceInfo), String> {
    open_on(0)
}

/// Checks the libraries, then opens device `ordinal` (its context becomes the calling
/// thread's current one).
pub fn open_on(ordinal: usize) -> Result<(Arc<CudaContext>, DeviceInfo), String> {
    let count = device_count()?;
    if ordinal >= count {
        return Err(format!(
            "there is no CUDA device {ordinal}: {count} visible (0..{})",
            count - 1
        ));
    }
    let opened = std::panic::catch_unwind(|| -> Result<_, String> {
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| format!("cannot open CUDA device {ordinal}: {e:?}"))?;
        let info = DeviceInfo {
            ordinal,
            name: ctx.name().map_err(|e| format!("cuDeviceGetName: {e:?}"))?,
            compute_capability: ctx
                .compute_capability()
                .map_err(|e| format!("compute capability: {e:?}"))?,
            total_mem: ctx
                .total_mem()
                .map_err(|e| format!("total memory: {e:?}"))?,
            multiprocessors: ctx
                .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
                .map_err(|e| format!("SM count: {e:?}"))?,
        };
        Ok((ctx, info))
    });
    match opened {
        Ok(r) => r,
        Err(_) => Err(UNUSABLE_DRIVER.into()),
    }
}

/// Device 0's description, or why there is no usable GPU.
pub fn probe() -> Result<DeviceInfo, String> {
    probe_on(0)
}

/// Device `ordinal`'s description, or why it cannot be used.
pub fn probe_on(ordinal: usize) -> Result<DeviceInfo, String> {
    open_on(ordinal).map(|(_, info)| info)
}
