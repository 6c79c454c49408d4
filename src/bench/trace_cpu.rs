//! `dynface bench --device cpu --trace FILE`: a trace of one forward of the tiny random UNet
//! (`weights random --preset tiny`'s config) on the CPU backend, every node a slice; a size
//! that runs in about a second, since the CPU is the reference, not the fast path.

use super::unet::{random_unet_weights, time_unet};
use crate::backend::cpu::CpuBackend;
use crate::models::unet::UNetConfig;
use anyhow::{anyhow, Result};
use std::path::Path;

/// The UNet a CPU trace runs.
pub fn traced_unet_config() -> Result<UNetConfig> {
    UNetConfig::from_value(&crate::restore::random::tiny_unet())
        .map_err(|e| anyhow!("tiny UNet config: {e}"))
}

/// Traces one forward at batch 1 and writes it to `path`; returns the number of slices.
pub fn trace_cpu_unet(path: &Path) -> Result<usize> {
    let cfg = traced_unet_config()?;
    let weights = random_unet_weights(&cfg, 0)?;
    crate::trace::start(crate::trace::DEFAULT_LIMIT);
    let timed = time_unet(
        CpuBackend::<f32>::new(),
        &cfg,
        &weights,
        1,
        cfg.image_size,
        false,
        0,
        1,
        true,
    );
    let meta = serde_json::json!({
        "what": format!("one forward of the tiny random UNet at batch 1, {0}x{0}", cfg.image_size),
        "device": "cpu",
    });
    let summary = crate::trace::finish(path, meta)?;
    let (t, _) = timed?;
    println!(
        "trace: {} ({} slices; one tiny-UNet forward, {:.1} ms traced)",
        path.display(),
        summary.slices,
        t.ms
    );
    Ok(summary.slices)
}
