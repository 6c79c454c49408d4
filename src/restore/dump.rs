//! `restore --dump DIR`: every stage's intermediates of one image, for inspection: the
//! restorer's output, each guidance image, σ̂ / σ_i / t_i and the per-step trace.

use super::images::{png_bytes, to_rgb8};
use super::models::LoadedModels;
use super::pipeline::BatchResult;
use crate::tensor::Tensor;
use anyhow::Result;
use std::path::Path;

pub fn dump_image(
    dir: &Path,
    stem: &str,
    i: usize,
    res: &BatchResult,
    m: &LoadedModels,
) -> Result<()> {
    let d = dir.join(stem);
    std::fs::create_dir_all(&d)?;
    let s = m.set.image_size;
    let per = 3 * s * s;
    let plane =
        |t: &Tensor<f32>| Tensor::new(vec![3, s, s], t.data[i * per..(i + 1) * per].to_vec());
    crate::atomic_file::write_atomic(&d.join("rm.png"), &png_bytes(&to_rgb8(&plane(&res.rm)))?)?;
    for (k, g) in res.guidance.iter().enumerate() {
        crate::atomic_file::write_atomic(
            &d.join(format!("guidance_{}.png", k + 1)),
            &png_bytes(&to_rgb8(&plane(g)))?,
        )?;
    }
    let steps: Vec<serde_json::Value> = res
        .sample
        .trace
        .iter()
        .map(|st| {
            serde_json::json!({
                "t": st.t,
                "loss": st.loss,
                "sigma": st.sigma.iter().map(|v| v.get(i).copied()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let info = serde_json::json!({
        "trace": res.traces[i],
        "seconds": res.times,
        "steps": steps,
    });
    crate::atomic_file::write_atomic(
        &d.join("stages.json"),
        serde_json::to_string_pretty(&info)?.as_bytes(),
    )
}
