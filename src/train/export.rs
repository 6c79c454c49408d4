//! What a finished stage leaves in its output folder: the trained weights (tagged with the
//! command and step count), `validation.json`, and for the later stages a model set.
//! `OUT/models.json` is the model set the stage trained against, with the trained network's
//! entry pointing at the file written next to it and every other file referenced by its
//! absolute path, so `dynface restore --weights OUT` uses the trained network without
//! copying the (large) prior.

use super::optim::Params;
use crate::restore::models::{ModelSet, MODELS_FILE};
use crate::weights::{save_safetensors, WeightData, WeightStore, WeightTensor};
use anyhow::{Context, Result};
use serde_json::Value;
use std::path::Path;

/// The end-of-run report every stage writes next to its weights.
pub const VALIDATION: &str = "validation.json";

pub fn to_store(p: &Params) -> Result<WeightStore> {
    let mut s = WeightStore::new();
    for (k, t) in p {
        s.insert(
            k.clone(),
            WeightTensor::new(t.shape.clone(), WeightData::F32(t.data.clone()))?,
        );
    }
    Ok(s)
}

/// `weights` as `out/file`, its metadata naming the command that trained it (e.g. `dynface
/// train se`) and after how many steps, so a shipped file says where it came from.
pub fn write_weights(
    weights: &Params,
    out: &Path,
    file: &str,
    command: &str,
    steps: u64,
) -> Result<()> {
    let meta = [
        ("trained_by".to_string(), command.to_string()),
        ("steps".to_string(), steps.to_string()),
    ];
    save_safetensors(&to_store(weights)?, &out.join(file), Some(meta.into()))?;
    Ok(())
}

/// `report` as `out/validation.json`, written atomically.
pub fn write_report(out: &Path, report: &Value) -> Result<()> {
    crate::atomic_file::write_atomic(
        &out.join(VALIDATION),
        serde_json::to_string_pretty(report)?.as_bytes(),
    )
}

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
