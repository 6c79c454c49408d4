//! A training checkpoint in one safetensors file: the model's weights (`model.*`, running
//! statistics included), the AdamW moments (`adamw.m.*`, `adamw.v.*`), the weight EMA
//! (`ema.*`), and in the header the step and the config it was trained with. Written
//! atomically, so a run killed at any moment leaves the previous checkpoint or the new one.

use super::optim::{AdamW, AdamWConfig, Params};
use crate::weights::{load_safetensors, save_safetensors, WeightData, WeightStore, WeightTensor};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::Path;

const FORMAT: &str = "dynface-train-1";

#[derive(Clone, Debug, PartialEq)]
pub struct TrainState {
    /// Updates taken (the next step to run).
    pub step: u64,
    pub model: Params,
    pub opt: AdamW,
    pub ema: Params,
}

fn put(store: &mut WeightStore, prefix: &str, p: &Params) -> Result<()> {
    for (k, t) in p {
        let w = WeightTensor::new(t.shape.clone(), WeightData::F32(t.data.clone()))?;
        store.insert(format!("{prefix}{k}"), w);
    }
    Ok(())
}

/// Writes `state` to `path`; `config` (JSON) is stored so a resume can refuse a different one.
pub fn save(path: &Path, state: &TrainState, config: &str) -> Result<()> {
    let mut store = WeightStore::new();
    put(&mut store, "model.", &state.model)?;
    put(&mut store, "adamw.m.", &state.opt.m)?;
    put(&mut store, "adamw.v.", &state.opt.v)?;
    put(&mut store, "ema.", &state.ema)?;
    let meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("step".to_string(), state.step.to_string()),
        ("adamw_step".to_string(), state.opt.step.to_string()),
        ("config".to_string(), config.to_string()),
    ]);
    Ok(save_safetensors(&store, path, Some(meta))?)
}

/// Reads a checkpoint; returns the state and the config text it was written with.
pub fn load(path: &Path, adamw: AdamWConfig) -> Result<(TrainState, String)> {
    let store = load_safetensors(path)?;
    let meta = read_metadata(path)?;
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        bail!("{}: not a dynface training checkpoint", path.display());
    }
    let num = |k: &str| -> Result<u64> {
        meta.get(k)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{}: header has no valid {k}", path.display()))
    };
    let (step, opt_step) = (num("step")?, num("adamw_step")?);
    let mut state = TrainState {
        step,
        model: Params::new(),
        opt: AdamW::new(adamw),
        ema: Params::new(),
    };
    state.opt.step = opt_step;
    for name in store.names() {
        let t = store.tensor_f32(name)?;
        let (map, key) = if let Some(k) = name.strip_prefix("model.") {
            (&mut state.model, k)
        } else if let Some(k) = name.strip_prefix("adamw.m.") {
            (&mut state.opt.m, k)
        } else if let Some(k) = name.strip_prefix("adamw.v.") {
            (&mut state.opt.v, k)
        } else if let Some(k) = name.strip_prefix("ema.") {
            (&mut state.ema, k)
        } else {
            bail!("{}: unexpected tensor {name}", path.display());
        };
        map.insert(key.to_string(), t);
    }
    let config = meta.get("config").cloned().unwrap_or_default();
    Ok((state, config))
}

/// The `__metadata__` of a safetensors header.
fn read_metadata(path: &Path) -> Result<HashMap<String, String>> {
    use std::io::Read;
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .with_context(|| format!("{}: truncated header", path.display()))?;
    let n = u64::from_le_bytes(len);
    if n > 100 << 20 {
        bail!("{}: header of {n} bytes is implausible", path.display());
    }
    let mut head = vec![0u8; n as usize];
    f.read_exact(&mut head)
        .with_context(|| format!("{}: truncated header", path.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&head)
        .with_context(|| format!("{}: header is not JSON", path.display()))?;
    let mut out = HashMap::new();
    if let Some(m) = v.get("__metadata__").and_then(|m| m.as_object()) {
        for (k, v) in m {
            if let Some(s) = v.as_str() {
                out.insert(k.clone(), s.to_string());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{random, Tensor};

    #[test]
    fn checkpoint_round_trips_every_tensor_and_the_step() {
        let mut rng = random::rng(5);
        let mut p = Params::new();
        p.insert("a.weight".into(), random::normal(&mut rng, &[3, 2], 1.0));
        p.insert("a.bias".into(), random::normal(&mut rng, &[3], 1.0));
        let mut opt = AdamW::new(AdamWConfig::default());
        let g: Params = p
            .iter()
            .map(|(k, t)| (k.clone(), Tensor::full(&t.shape, 0.3)))
            .collect();
        let mut q = p.clone();
        opt.update(&mut q, &g, 0.01).unwrap();
        let state = TrainState {
            step: 7,
            model: q.clone(),
            opt,
            ema: p,
        };
        let dir = std::env::temp_dir().join(format!("dynface_ckpt_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.safetensors");
        save(&path, &state, "{\"x\":1}").unwrap();
        let (back, cfg) = load(&path, AdamWConfig::default()).unwrap();
        assert_eq!(back, state);
        assert_eq!(cfg, "{\"x\":1}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
