//! Which networks a restoration uses and where their weights are: `models.json` in a weights
//! folder. The official set (DifFace's public UNet and restorer, the shipped DSST table) is
//! built in; `dynface weights random --preset tiny` writes a complete small set for tests and
//! demos.

use crate::dblm::GuidanceConfig;
use crate::dsst::DsstTable;
use crate::models::dgsa::{self, DgsaConfig};
use crate::models::sde::{self, SdeConfig};
use crate::models::swinir::{self, SwinIRConfig};
use crate::models::unet::{unet_spec, UNetConfig};
use crate::models::WeightMap;
use crate::sampler::SamplerConfig;
use crate::weights::{load_safetensors, Manifest};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const MODELS_FILE: &str = "models.json";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetEntry<C> {
    pub config: C,
    /// File name inside the weights folder.
    pub weights: String,
}

/// The standard estimator SE = SDE ∘ TM (Eq. 10); one weights file with keys `tm.*`, `sde.*`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstimatorEntry {
    pub tm: SwinIRConfig,
    pub sde: SdeConfig,
    pub weights: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSet {
    /// Side of the square the networks work at; other inputs are resized in and back out.
    pub image_size: usize,
    /// UNet config in guided-diffusion's argument names.
    pub unet: NetEntry<serde_json::Value>,
    pub restorer: NetEntry<SwinIRConfig>,
    #[serde(default)]
    pub estimator: Option<EstimatorEntry>,
    #[serde(default)]
    pub dgsa: Option<NetEntry<DgsaConfig>>,
    /// DSST table file inside the weights folder.
    pub dsst: String,
    /// The DBLM's guidance settings (N, the σ range); absent fields take METHOD.md's
    /// defaults. Sets written before this section existed kept them under `sampler`.
    #[serde(default)]
    pub guidance: GuidanceConfig,
    /// Sampler settings; absent fields take METHOD.md's defaults.
    #[serde(default)]
    pub sampler: SamplerConfig,
}

impl ModelSet {
    /// DifFace's public checkpoints (converted by `dynface weights download`) and the shipped
    /// DSST table, with no trained SE or DGSA (the paper's setting C with our σ̂ estimate).
    pub fn official() -> Self {
        let unet = serde_json::from_str(&UNetConfig::ffhq512().to_json())
            .expect("the FFHQ 512 config serialises");
        ModelSet {
            image_size: 512,
            unet: NetEntry {
                config: unet,
                weights: "iddpm_ffhq512_ema500000.safetensors".into(),
            },
            restorer: NetEntry {
                config: SwinIRConfig::difface_restorer(),
                weights: "General_Face_ffhq512.safetensors".into(),
            },
            estimator: None,
            dgsa: None,
            dsst: "dsst.json".into(),
            guidance: GuidanceConfig::default(),
            sampler: SamplerConfig::default(),
        }
    }

    /// The sampler's settings with the DBLM's N and σ range copied in (the sampler needs them
    /// to build its step graph and clamp the refined σ_i, but they are the DBLM's).
    pub fn sampler_config(&self) -> SamplerConfig {
        SamplerConfig {
            num_guidance: self.guidance.num_guidance,
            sigma_min: self.guidance.sigma_min,
            sigma_max: self.guidance.sigma_max,
            ..self.sampler.clone()
        }
    }

    /// `DIR/models.json`, or the official set when the folder has none.
    pub fn load(dir: &Path) -> Result<Self> {
        let p = dir.join(MODELS_FILE);
        if !p.exists() {
            return Ok(Self::official());
        }
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
        Self::from_json_str(&text)
            .with_context(|| format!("{}: not a valid model set", p.display()))
    }

    /// Parses a `models.json` text (its UNet and sampler settings are checked by
    /// [`ModelSet::unet_config`] and `SamplerConfig::validate` when used). The guidance keys
    /// of older sets, `sampler.num_guidance` / `sigma_min` / `sigma_max`, move to `guidance`;
    /// a key given in both places is an error.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let mut v: serde_json::Value = serde_json::from_str(text)?;
        if let Some(top) = v.as_object_mut() {
            let old: Vec<(String, serde_json::Value)> = match top.get_mut("sampler") {
                Some(serde_json::Value::Object(s)) => GuidanceConfig::KEYS
                    .iter()
                    .filter_map(|k| s.remove(*k).map(|x| (k.to_string(), x)))
                    .collect(),
                _ => vec![],
            };
            if !old.is_empty() {
                let g = top
                    .entry("guidance")
                    .or_insert_with(|| serde_json::Value::Object(Default::default()));
                let Some(g) = g.as_object_mut() else {
                    bail!("`guidance` must be an object");
                };
                for (k, x) in old {
                    if g.contains_key(&k) {
                        bail!("`{k}` is given in both `sampler` (the old place) and `guidance`");
                    }
                    g.insert(k, x);
                }
            }
        }
        let set: ModelSet = serde_json::from_value(v)?;
        set.guidance
            .validate()
            .map_err(|e| anyhow!("guidance: {e}"))?;
        Ok(set)
    }

    pub fn unet_config(&self) -> Result<UNetConfig> {
        UNetConfig::from_value(&self.unet.config).map_err(|e| anyhow!("UNet config: {e}"))
    }

    /// The files this set needs, for a clear message before anything loads.
    pub fn files(&self) -> Vec<String> {
        let mut v = vec![
            self.unet.weights.clone(),
            self.restorer.weights.clone(),
            self.dsst.clone(),
        ];
        if let Some(e) = &self.estimator {
            v.push(e.weights.clone());
        }
        if let Some(d) = &self.dgsa {
            v.push(d.weights.clone());
        }
        v
    }
}

/// Says which files are missing, where each comes from and where to put it.
pub fn check_files(set: &ModelSet, dir: &Path) -> Result<()> {
    let manifest = Manifest::builtin().ok();
    let mut msgs = vec![];
    for f in set.files() {
        let p = dir.join(&f);
        if p.exists() {
            continue;
        }
        let source = manifest.as_ref().and_then(|m| {
            m.entries
                .iter()
                .find(|e| e.convert_to.as_deref() == Some(f.as_str()) || e.file == f)
                .map(|e| (e.url.clone(), dir.join(&e.file)))
        });
        msgs.push(match source {
            Some((url, pth)) => format!(
                "missing {}: it is converted from {url}; run `dynface weights download --dir {}`, or download it by hand to {} and run `dynface weights convert {} -o {}`",
                p.display(),
                dir.display(),
                pth.display(),
                pth.display(),
                p.display()
            ),
            None => format!("missing {}: this model set ({}) names it but it is not there", p.display(), dir.join(MODELS_FILE).display()),
        });
    }
    if msgs.is_empty() {
        Ok(())
    } else {
        bail!("{}", msgs.join("\n"))
    }
}

/// Loads a safetensors file as f32 weights, validated against `spec` (one error lists every
/// missing, unexpected and wrong-shaped key); `ignorable` are buffers we recompute.
pub fn load_weights(
    path: &Path,
    spec: &[(String, Vec<usize>)],
    ignorable: &[&str],
) -> Result<WeightMap> {
    let mut store =
        load_safetensors(path).with_context(|| format!("loading {}", path.display()))?;
    store.strip_module_prefix()?;
    store
        .validate(spec, ignorable)
        .with_context(|| format!("{} does not fit this model", path.display()))?;
    for w in store.non_finite_warnings() {
        eprintln!("warning: {}: {w}", path.display());
    }
    let mut m = WeightMap::new();
    for (k, t) in store.iter() {
        if let Ok(v) = t.to_f32(k) {
            m.insert(k.to_string(), v);
        } else {
            // int64 buffers (SwinIR's relative_position_index) as f32 for the index check.
            let ints = t.to_i64(k)?;
            m.insert(
                k.to_string(),
                crate::tensor::Tensor::new(
                    t.shape.clone(),
                    ints.iter().map(|&i| i as f32).collect(),
                ),
            );
        }
    }
    Ok(m)
}

/// Every network's weights of a set, keyed as the graphs name them.
pub struct LoadedModels {
    pub set: ModelSet,
    pub unet_config: UNetConfig,
    pub unet: WeightMap,
    pub restorer: WeightMap,
    pub estimator: Option<WeightMap>,
    pub dgsa: Option<WeightMap>,
    pub dsst: DsstTable,
    pub dir: PathBuf,
}

pub fn load_models(dir: &Path) -> Result<LoadedModels> {
    let set = ModelSet::load(dir)?;
    check_files(&set, dir)?;
    let unet_config = set.unet_config()?;
    let unet = load_weights(&dir.join(&set.unet.weights), &unet_spec(&unet_config)?, &[])?;
    let s = set.image_size;
    let rcfg = &set.restorer.config;
    rcfg.validate()
        .map_err(|e| anyhow!("restorer config: {e}"))?;
    let mut restorer = load_weights(
        &dir.join(&set.restorer.weights),
        &swinir::checkpoint_spec(rcfg, s, s),
        &["*attn_mask", "*relative_position_index"],
    )?;
    swinir::derive_weights(rcfg, &mut restorer, s, s).map_err(|e| anyhow!("restorer: {e}"))?;
    restorer.extend(swinir::builtin_constants());
    let estimator = match &set.estimator {
        None => None,
        Some(e) => {
            let mut spec: Vec<(String, Vec<usize>)> = swinir::checkpoint_spec(&e.tm, s, s)
                .into_iter()
                .map(|(k, v)| (format!("tm.{k}"), v))
                .collect();
            spec.extend(
                sde::checkpoint_spec(&e.sde, 3)
                    .into_iter()
                    .map(|(k, v)| (format!("sde.{k}"), v)),
            );
            let raw = load_weights(
                &dir.join(&e.weights),
                &spec,
                &["*attn_mask", "*relative_position_index"],
            )?;
            // TM and SDE live in one graph: TM's constants keep their SwinIR names (the
            // restorer is a separate graph, so they cannot clash), SDE's keep the prefix.
            let mut m: WeightMap = raw
                .iter()
                .filter_map(|(k, v)| k.strip_prefix("tm.").map(|k| (k.to_string(), v.clone())))
                .collect();
            swinir::derive_weights(&e.tm, &mut m, s, s)
                .map_err(|err| anyhow!("estimator TM: {err}"))?;
            m.extend(raw.into_iter().filter(|(k, _)| k.starts_with("sde.")));
            m.extend(swinir::builtin_constants());
            Some(m)
        }
    };
    let dgsa = match &set.dgsa {
        None => None,
        Some(d) => Some(load_weights(
            &dir.join(&d.weights),
            &dgsa::checkpoint_spec(&d.config),
            &[],
        )?),
    };
    let dsst = DsstTable::load(&dir.join(&set.dsst))
        .with_context(|| format!("DSST table {}", dir.join(&set.dsst).display()))?;
    Ok(LoadedModels {
        set,
        unet_config,
        unet,
        restorer,
        estimator,
        dgsa,
        dsst,
        dir: dir.to_path_buf(),
    })
}
