//! RetinaFace's public checkpoints as facexlib downloads them (`init_detection_model`):
//! `detection_Resnet50_Final.pth` and `detection_mobilenet0.25_Final.pth`, state dicts saved
//! from `nn.DataParallel` (keys under `module.`). They are in `weights/manifest.json`
//! (`dynface weights download retinaface_resnet50`), size- and SHA-256-checked there; these
//! machines cannot reach them, so only random-weight checkpoints are loaded in tests.
//! Read with our own `.pth` reader (no pickle code runs) or from safetensors; the variant
//! is told from the keys.

use super::retinaface_nets::{weight_spec, Variant};
use crate::models::WeightMap;
use crate::weights::pth::{load_pth, PthOptions};
use crate::weights::{load_safetensors, save_safetensors, WeightStore};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Buffers checkpoints hold that inference never reads.
pub const IGNORED: [&str; 1] = ["*num_batches_tracked"];

/// Where a published checkpoint comes from: facexlib 0.3.0's URL, its size and SHA-256.
pub struct Published {
    pub manifest_name: &'static str,
    pub file: &'static str,
    pub url: &'static str,
    pub size: u64,
    pub sha256: &'static str,
}

impl Variant {
    /// The published checkpoint of this network (the same pins as weights/manifest.json).
    pub fn published(self) -> Published {
        match self {
            Variant::Resnet50 => Published {
                manifest_name: "retinaface_resnet50",
                file: "detection_Resnet50_Final.pth",
                url: "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth",
                size: 109_497_761,
                sha256: "6d1de9c2944f2ccddca5f5e010ea5ae64a39845a86311af6fdf30841b0a5a16d",
            },
            Variant::Mobilenet025 => Published {
                manifest_name: "retinaface_mobilenet0.25",
                file: "detection_mobilenet0.25_Final.pth",
                url: "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_mobilenet0.25_Final.pth",
                size: 1_789_735,
                sha256: "2979b33ffafda5d74b6948cd7a5b9a7a62f62b949cef24e95fd15d2883a65220",
            },
        }
    }

    /// The safetensors file `dynface weights download` converts the checkpoint to, which
    /// `dynface restore --detector retinaface` looks for in its weights folder.
    pub fn safetensors_file(self) -> &'static str {
        match self {
            Variant::Resnet50 => "detection_Resnet50_Final.safetensors",
            Variant::Mobilenet025 => "detection_mobilenet0.25_Final.safetensors",
        }
    }
}

/// How to get the weights, for error messages.
pub fn how_to_get(variant: Variant) -> String {
    let p = variant.published();
    format!(
        "get them with `dynface weights download {}` ({}, {} bytes)",
        p.manifest_name, p.url, p.size
    )
}

/// Which network a state dict belongs to, from its backbone's keys.
pub fn variant_of(store: &WeightStore) -> Option<Variant> {
    if store.contains("body.conv1.weight") {
        Some(Variant::Resnet50)
    } else if store.contains("body.stage1.0.0.weight") {
        Some(Variant::Mobilenet025)
    } else {
        None
    }
}

/// The checked state dict from a `.pth` (facexlib's format) or safetensors file.
pub fn load_retinaface_store(path: &Path) -> Result<(Variant, WeightStore)> {
    if !path.is_file() {
        bail!(
            "{}: no RetinaFace weights there; {}",
            path.display(),
            how_to_get(Variant::Resnet50)
        );
    }
    let mut store = if path.extension().is_some_and(|e| e == "safetensors") {
        load_safetensors(path)?
    } else {
        load_pth(path, &PthOptions::default())
            .with_context(|| format!("{}: reading RetinaFace's state dict", path.display()))?
            .store
    };
    store.strip_module_prefix()?;
    let Some(variant) = variant_of(&store) else {
        bail!(
            "{}: not a RetinaFace checkpoint (neither body.conv1.weight of ResNet-50 nor \
             body.stage1.0.0.weight of MobileNet-0.25)",
            path.display()
        );
    };
    store
        .validate(&weight_spec(variant), &IGNORED)
        .with_context(|| format!("{}: not RetinaFace {variant:?}'s weights", path.display()))?;
    Ok((variant, store))
}

/// [`load_retinaface_store`] as f32 tensors by key.
pub fn load_retinaface(path: &Path) -> Result<(Variant, WeightMap)> {
    let (variant, store) = load_retinaface_store(path)?;
    let mut m = WeightMap::new();
    for (k, _) in weight_spec(variant) {
        m.insert(k.clone(), store.tensor_f32(&k)?);
    }
    Ok((variant, m))
}

/// What `dynface weights retinaface` converts (flags: `cli::weights::RetinaFaceWeightsArgs`).
#[derive(Clone, Debug)]
pub struct RetinaFaceWeightsOptions {
    /// facexlib's detection_Resnet50_Final.pth or detection_mobilenet0.25_Final.pth.
    pub source: PathBuf,
    /// Output safetensors file (default: the source's name with .safetensors, in weights/).
    pub output: Option<PathBuf>,
}

/// `dynface weights retinaface SOURCE.pth [-o FILE]`: the checked state dict (without
/// `module.` and the unread buffers) as one safetensors file.
pub fn run_retinaface_weights(args: &RetinaFaceWeightsOptions) -> Result<usize> {
    let (variant, store) = load_retinaface_store(&args.source)?;
    let mut kept = WeightStore::new();
    for (k, _) in weight_spec(variant) {
        kept.insert(k.clone(), store.require(&k)?.clone());
    }
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| Path::new("weights").join(variant.safetensors_file()));
    if let Some(d) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let meta = [
        ("source".to_string(), args.source.display().to_string()),
        ("variant".to_string(), format!("{variant:?}")),
    ]
    .into_iter()
    .collect();
    save_safetensors(&kept, &output, Some(meta))?;
    eprintln!(
        "wrote {} (RetinaFace {variant:?}: {} tensors, {} bytes of weights)",
        output.display(),
        kept.len(),
        kept.nbytes()
    );
    Ok(kept.len())
}
