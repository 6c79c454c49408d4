//! Loading a folder of face PNGs as a `[N,3,H,W]` batch in [−1, 1].

use crate::tensor::Tensor;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// PNG/JPEG files of `dir`, sorted by name.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).with_context(|| format!("reading folder {}", dir.display()))?;
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension()
                    .and_then(|e| e.to_str())
                    .map(|e| e.to_ascii_lowercase())
                    .as_deref(),
                Some("png" | "jpg" | "jpeg")
            )
        })
        .collect();
    v.sort();
    if v.is_empty() {
        bail!("no .png/.jpg images in {}", dir.display());
    }
    Ok(v)
}

/// Loads every image of `dir` (all the same size), box-averaged by `factor` (1 = as is).
pub fn load_faces(dir: &Path, factor: usize) -> Result<Tensor<f32>> {
    if factor == 0 {
        bail!("downsample factor must be ≥ 1");
    }
    let paths = list_images(dir)?;
    let mut data = vec![];
    let mut size = None;
    for p in &paths {
        let img = image::open(p)
            .with_context(|| format!("decoding {}", p.display()))?
            .to_rgb8();
        let (w, h) = (img.width() as usize, img.height() as usize);
        match size {
            None => size = Some((h, w)),
            Some(s) if s != (h, w) => bail!(
                "{} is {w}×{h}, the first image was {}×{}",
                p.display(),
                s.1,
                s.0
            ),
            _ => {}
        }
        if h % factor != 0 || w % factor != 0 {
            bail!(
                "{}: {w}×{h} is not divisible by the factor {factor}",
                p.display()
            );
        }
        let (ho, wo) = (h / factor, w / factor);
        let raw = img.as_raw();
        let norm = 1.0 / (factor * factor) as f32;
        for c in 0..3 {
            for y in 0..ho {
                for x in 0..wo {
                    let mut acc = 0.0f32;
                    for dy in 0..factor {
                        for dx in 0..factor {
                            let i = ((y * factor + dy) * w + x * factor + dx) * 3 + c;
                            acc += raw[i] as f32;
                        }
                    }
                    data.push(acc * norm / 255.0 * 2.0 - 1.0);
                }
            }
        }
    }
    let (h, w) = size.expect("at least one image");
    Ok(Tensor::new(
        vec![paths.len(), 3, h / factor, w / factor],
        data,
    ))
}
