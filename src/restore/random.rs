//! `dynface weights random --preset tiny -o DIR`: a complete, small, random-weight model set
//! (UNet, SwinIR restorer, SE, DGSA, DSST table) with which every command runs end to end, for
//! tests, pipeline demos and benchmarks. Deterministic for a seed.

use super::models::{EstimatorEntry, ModelSet, NetEntry, MODELS_FILE};
use crate::dsst::DsstTable;
use crate::models::dgsa::{self, DgsaConfig};
use crate::models::sde::{self, SdeConfig};
use crate::models::swinir::{self, SwinIRConfig};
use crate::models::unet::{unet_spec, UNetConfig};
use crate::sampler::SamplerConfig;
use crate::tensor::{numel, random};
use crate::weights::{save_safetensors, WeightData, WeightStore, WeightTensor};
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;

/// The shipped DSST table (built from the HQ faces; see weights/README.md).
pub const SHIPPED_DSST: &str = include_str!("../../weights/dsst.json");

fn tiny_swinir() -> SwinIRConfig {
    SwinIRConfig {
        in_chans: 3,
        embed_dim: 12,
        depths: vec![1],
        num_heads: vec![2],
        window_size: 8,
        mlp_ratio: 2.0,
        upscale: 8,
        unshuffle: true,
        img_range: 1.0,
        upsampler: "nearest+conv".into(),
        patch_norm: true,
    }
}

/// The tiny preset's UNet config (also the shape spec the safetensors fuzz target checks against).
pub fn tiny_unet() -> serde_json::Value {
    serde_json::json!({
        "image_size": 64, "in_channels": 3, "model_channels": 32, "out_channels": 6,
        "num_res_blocks": 1, "attention_resolutions": [16], "channel_mult": [1, 2, 2],
        "num_heads": 1, "num_head_channels": 32, "num_heads_upsample": -1,
        "use_scale_shift_norm": true, "resblock_updown": false,
        "use_new_attention_order": false, "dropout": 0.0
    })
}

/// Random weights for a key list: norms' scales 1 and shifts 0 (so activations stay O(1)),
/// running variances 1, everything else N(0, 1/fan_in).
fn random_store(spec: &[(String, Vec<usize>)], seed: u64, skip: &[&str]) -> Result<WeightStore> {
    let mut rng = random::rng(seed);
    let mut store = WeightStore::new();
    for (k, s) in spec {
        if skip.iter().any(|suf| k.ends_with(suf)) {
            continue;
        }
        let n = numel(s);
        let is_norm = k.contains("norm")
            || k.contains(".bn.")
            || k.contains("in_layers.0")
            || k.contains("out_layers.0")
            || k.starts_with("out.0");
        let data: Vec<f32> = if k.ends_with("running_var") || (is_norm && k.ends_with(".weight")) {
            vec![1.0; n]
        } else if k.ends_with("running_mean") || (is_norm && k.ends_with(".bias")) {
            vec![0.0; n]
        } else if k.ends_with(".bias") {
            random::normal::<f32>(&mut rng, s, 0.01).data
        } else {
            let fan_in: usize = s.iter().skip(1).product::<usize>().max(1);
            random::normal::<f32>(&mut rng, s, (1.0 / fan_in as f64).sqrt()).data
        };
        store.insert(
            k.clone(),
            WeightTensor::new(s.clone(), WeightData::F32(data))?,
        );
    }
    Ok(store)
}

fn with_prefix(spec: Vec<(String, Vec<usize>)>, p: &str) -> Vec<(String, Vec<usize>)> {
    spec.into_iter()
        .map(|(k, s)| (format!("{p}{k}"), s))
        .collect()
}

/// Writes the set and returns its folder.
pub fn write_random_set(preset: &str, dir: &Path, seed: u64) -> Result<ModelSet> {
    match preset {
        "tiny" => {}
        "ffhq512" => return write_full_size_set(dir, seed),
        _ => bail!("unknown preset {preset:?}: expected \"tiny\" or \"ffhq512\""),
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let size = 64;
    let unet_json = tiny_unet();
    let ucfg = UNetConfig::from_value(&unet_json).map_err(|e| anyhow!("tiny UNet config: {e}"))?;
    let mut unet = random_store(&unet_spec(&ucfg)?, seed, &[])?;
    // A random ε-predictor with O(1) outputs would swamp the guidance: scale its last conv
    // down so the untrained prior stays close to the identity on x̂₀.
    for k in ["out.2.weight", "out.2.bias"] {
        if let Some(t) = unet.get(k) {
            let v: Vec<f32> = t.to_f32(k)?.data.iter().map(|x| x * 0.05).collect();
            unet.insert(k, WeightTensor::new(t.shape.clone(), WeightData::F32(v))?);
        }
    }
    save_safetensors(&unet, &dir.join("unet.safetensors"), None)?;
    let rcfg = tiny_swinir();
    let buffers = ["attn_mask", "relative_position_index"];
    let restorer = random_store(
        &swinir::checkpoint_spec(&rcfg, size, size),
        seed + 1,
        &buffers,
    )?;
    save_safetensors(&restorer, &dir.join("restorer.safetensors"), None)?;
    let scfg = SdeConfig {
        layers: vec![(8, 1), (8, 2), (16, 2)],
        hidden: 16,
        ..SdeConfig::default()
    };
    let mut est_spec = with_prefix(swinir::checkpoint_spec(&rcfg, size, size), "tm.");
    est_spec.extend(with_prefix(sde::checkpoint_spec(&scfg, 3), "sde."));
    let mut est = random_store(&est_spec, seed + 2, &buffers)?;
    // Put the untrained σ̂ head near the middle of the σ range instead of near 0.
    if let Some(t) = est.get("sde.head.2.bias") {
        est.insert(
            "sde.head.2.bias",
            WeightTensor::new(t.shape.clone(), WeightData::F32(vec![4.0]))?,
        );
    }
    save_safetensors(&est, &dir.join("estimator.safetensors"), None)?;
    let dcfg = DgsaConfig {
        width: 8,
        emb_dim: 8,
        elu_alpha: 1.0,
    };
    let dg = random_store(&dgsa::checkpoint_spec(&dcfg), seed + 3, &[])?;
    save_safetensors(&dg, &dir.join("dgsa.safetensors"), None)?;
    let table: DsstTable = serde_json::from_str(SHIPPED_DSST).context("shipped DSST table")?;
    table.save(&dir.join("dsst.json"))?;
    let set = ModelSet {
        image_size: size,
        unet: NetEntry {
            config: unet_json,
            weights: "unet.safetensors".into(),
        },
        restorer: NetEntry {
            config: rcfg.clone(),
            weights: "restorer.safetensors".into(),
        },
        estimator: Some(EstimatorEntry {
            tm: rcfg,
            sde: scfg,
            weights: "estimator.safetensors".into(),
        }),
        dgsa: Some(NetEntry {
            config: dcfg,
            weights: "dgsa.safetensors".into(),
        }),
        dsst: "dsst.json".into(),
        guidance: Default::default(),
        sampler: SamplerConfig {
            sampler: "ddim25".into(),
            ..SamplerConfig::default()
        },
    };
    let text = serde_json::to_string_pretty(&set)?;
    crate::atomic_file::write_atomic(&dir.join(MODELS_FILE), text.as_bytes())?;
    Ok(set)
}

/// The official architectures and sizes (DifFace's FFHQ 512 UNet and restorer) with random
/// weights: for timing the real pipeline where the public checkpoints cannot be fetched.
fn write_full_size_set(dir: &Path, seed: u64) -> Result<ModelSet> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut set = ModelSet::official();
    set.unet.weights = "unet.safetensors".into();
    set.restorer.weights = "restorer.safetensors".into();
    let ucfg = set.unet_config()?;
    let mut unet = random_store(&unet_spec(&ucfg)?, seed, &[])?;
    for k in ["out.2.weight", "out.2.bias"] {
        if let Some(t) = unet.get(k) {
            let v: Vec<f32> = t.to_f32(k)?.data.iter().map(|x| x * 0.05).collect();
            unet.insert(k, WeightTensor::new(t.shape.clone(), WeightData::F32(v))?);
        }
    }
    save_safetensors(&unet, &dir.join("unet.safetensors"), None)?;
    let r = random_store(
        &swinir::checkpoint_spec(&set.restorer.config, 512, 512),
        seed + 1,
        &["attn_mask", "relative_position_index"],
    )?;
    save_safetensors(&r, &dir.join("restorer.safetensors"), None)?;
    let table: DsstTable = serde_json::from_str(SHIPPED_DSST).context("shipped DSST table")?;
    table.save(&dir.join("dsst.json"))?;
    crate::atomic_file::write_atomic(
        &dir.join(MODELS_FILE),
        serde_json::to_string_pretty(&set)?.as_bytes(),
    )?;
    Ok(set)
}
