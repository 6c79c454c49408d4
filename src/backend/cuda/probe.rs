//! Finds out whether a usable CUDA device exists without ever panicking: cudarc loads
//! libcuda/libnvrtc lazily and panics on a missing library or symbol, so the libraries are
//! probed first and the context creation is guarded.

use cudarc::driver::{sys, CudaContext};
use std::sync::Arc;

/// What the backend needs to know about device 0.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
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

/// Checks the libraries, then opens device 0. The error says what is missing and what to do.
pub fn open() -> Result<(Arc<CudaContext>, DeviceInfo), String> {
    // SAFETY: only dlopens; never panics.
    if !unsafe { sys::is_culib_present() } {
        return Err("libcuda.so not found: install the NVIDIA driver / set LD_LIBRARY_PATH".into());
    }
    if let Some(why) = super::nvrtc::unavailable() {
        return Err(why);
    }
    let opened = std::panic::catch_unwind(|| -> Result<_, String> {
        let count =
            CudaContext::device_count().map_err(|e| format!("cuDeviceGetCount failed: {e:?}"))?;
        if count < 1 {
            return Err("no CUDA device visible (CUDA_VISIBLE_DEVICES?)".to_string());
        }
        let ctx = CudaContext::new(0).map_err(|e| format!("cannot open CUDA device 0: {e:?}"))?;
        let info = DeviceInfo {
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
        Err(_) => Err(
            "the CUDA driver library is present but unusable (missing symbol: driver older \
             than CUDA 13?)"
                .into(),
        ),
    }
}

/// Device 0's description, or why there is no usable GPU.
pub fn probe() -> Result<DeviceInfo, String> {
    open().map(|(_, info)| info)
}
