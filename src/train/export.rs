//! A trained stage's result as a model set: `OUT/models.json` is the model set the stage
//! trained against, with the trained network's entry pointing at the file written next to
//! it and every other file referenced by its absolute path, so `dynface restore --weights
//! OUT` uses the trained network without copying the (large) prior.

use crate::restore::models::{ModelSet, MODELS_FILE};
use anyhow::{Context, Result};
use std::path::Path;

pub fn write_model_set(
    src_dir: &Path,
    out: &Path,
    edit: impl FnOnce(&mut ModelSet),
) -> Result<ModelSet> {
    let mut set = ModelSet::load(src_dir)?;
    let abs = src_dir
        .canonicalize()
        .with_context(|| format!("model set folder {}", src_dir.display()))?;
    let at = |f: &mut String| *f = abs.join(&*f).to_string_lossy().into_owned();
    at(&mut set.unet.weights);
    at(&mut set.restorer.weights);
    at(&mut set.dsst);
    if let Some(e) = &mut set.estimator {
        at(&mut e.weights);
    }
    if let Some(d) = &mut set.dgsa {
        at(&mut d.weights);
    }
    edit(&mut set);
    crate::atomic_file::write_atomic(
        &out.join(MODELS_FILE),
        serde_json::to_string_pretty(&set)?.as_bytes(),
    )?;
    Ok(set)
}
