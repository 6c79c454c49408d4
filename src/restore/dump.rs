//! `restore --dump DIR`: every stage's intermediates of one image, for inspection: the
//! restorer's output, each guidance image, σ̂ / σ_i / t_i, the per-step trace and DGSA's
//! scale map S_t at the image's first, middle and last step (`scale_tTTTT_MIN-MAX.png`,
//! colour-mapped over its range, the channel mean; none when S ≡ 1).

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
    let mut scale_maps = vec![];
    for snap in res.sample.scale_maps.iter().filter(|m| m.image == i) {
        let (img, lo, hi) = super::colormap::colour_map(&snap.scale, 3, s, s);
        let file = format!("scale_t{:04}_{lo:.3}-{hi:.3}.png", snap.t);
        crate::atomic_file::write_atomic(&d.join(&file), &png_bytes(&img)?)?;
        scale_maps.push(serde_json::json!({ "t": snap.t, "file": file, "min": lo, "max": hi }));
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
        "scale_maps": scale_maps,
    });
    crate::atomic_file::write_atomic(
        &d.join("stages.json"),
        serde_json::to_string_pretty(&info)?.as_bytes(),
    )
}
