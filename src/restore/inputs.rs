//! Which files a run restores, what their outputs are called, and each image's seed.

use crate::degrade::load::{collect_inputs, stem_of};
use crate::degrade::seed::mix64;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Expands files, folders and glob patterns into image paths (sorted, deduplicated).
pub fn expand_inputs(inputs: &[String]) -> Result<Vec<PathBuf>> {
    let mut paths = vec![];
    for s in inputs {
        if s.contains(['*', '?', '[']) && !Path::new(s).exists() {
            let matches: Vec<PathBuf> = glob::glob(s)
                .with_context(|| format!("bad glob pattern {s}"))?
                .filter_map(|p| p.ok())
                .collect();
            if matches.is_empty() {
                bail!("{s}: no file matches this pattern");
            }
            paths.extend(matches);
        } else {
            paths.push(PathBuf::from(s));
        }
    }
    let mut v = collect_inputs(&paths)?;
    v.sort();
    v.dedup();
    Ok(v)
}

/// The output file name of input `f`: its stem as a PNG.
pub fn output_name(f: &Path) -> String {
    format!("{}.png", stem_of(f))
}

pub(crate) fn image_seed(base: u64, stem: &str) -> u64 {
    mix64(base ^ mix64(crate::degrade::seed::fnv1a64(stem.as_bytes())))
}
