//! DISTS's weights for `train dgsa`: VGG16's convolutions from a checkpoint the user gives
//! (torchvision's `vgg16-397923af.pth`, read by our `.pth` reader, or a safetensors file with
//! the same `features.N.*` keys) and the learned α/β from DISTS-pytorch 0.1: its wheel, the
//! `weights.pt` inside (file SHA-256 pinned, checked before parsing), or a safetensors file
//! with `alpha` and `beta` (what `dynface weights convert weights.pt` writes). Whatever the
//! container, the values themselves are pinned too ([`ALPHA_BETA_VALUES_SHA256`]).
//!
//! VGG16's ImageNet weights come from torchvision's download URL; torchvision names the file
//! by the first 8 hex digits of its SHA-256, the only pin available for it here, so another
//! VGG16 (random weights in a test, a fine-tuned one) is accepted with a warning and the run
//! reports which one it used.

use crate::models::{dists, WeightMap};
use crate::weights::pth::{read_pth, PthOptions};
use crate::weights::{load_pth, load_safetensors, WeightStore};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::io::{Cursor, Read};
use std::path::Path;

/// The wheel α/β ship in (`weights/manifest.json` entry [`MANIFEST_ENTRY`] pins its bytes).
pub const WHEEL_NAME: &str = "DISTS_pytorch-0.1-py3-none-any.whl";
pub const MANIFEST_ENTRY: &str = "dists_pytorch";
/// The path of α/β inside the wheel.
pub const WHEEL_MEMBER: &str = "DISTS_pytorch/weights.pt";
/// SHA-256 of DISTS-pytorch 0.1's `weights.pt`.
pub const ALPHA_BETA_SHA256: &str =
    "f5e65c96230b7f6ca995691647d482237e4cab8a50c5c4a5784f219ef0748218";
/// SHA-256 of α then β as little-endian f32 (`[1, 1475, 1, 1]` each, 11,800 bytes).
pub const ALPHA_BETA_VALUES_SHA256: &str =
    "7c2e5100877a8207f0d6754d6cb5611d54dc781cff01124d96f9c8bbbbebb610";
/// torchvision's ImageNet VGG16 and the SHA-256 prefix its name carries.
pub const VGG16_FILE: &str = "vgg16-397923af.pth";
pub const VGG16_URL: &str = "https://download.pytorch.org/models/vgg16-397923af.pth";
pub const VGG16_SHA256_PREFIX: &str = "397923af";

/// How to get both files, for error messages.
pub fn how_to_get() -> String {
    format!(
        "DISTS needs VGG16's ImageNet weights ({VGG16_URL}, 528 MB, `dists_weights`) and DISTS-pytorch's α/β \
         (`dynface weights download {MANIFEST_ENTRY}` or `pip download --no-deps DISTS-pytorch==0.1 -d DIR`: \
         the 20 KB wheel {WHEEL_NAME}, `dists_alpha_beta`)"
    )
}

/// Which VGG16 the run used, for its report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VggSource {
    pub path: String,
    pub sha256: String,
    /// The SHA-256 starts with torchvision's [`VGG16_SHA256_PREFIX`].
    pub torchvision_imagenet: bool,
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn sha256_file(path: &Path) -> Result<String> {
    crate::weights::download::sha256_file(path)
        .with_context(|| format!("{}: cannot hash", path.display()))
}

fn to_map(store: &WeightStore) -> Result<WeightMap> {
    store
        .iter()
        .map(|(k, _)| Ok((k.to_string(), store.tensor_f32(k)?)))
        .collect()
}

/// α and β from the wheel, from `weights.pt` itself or from a safetensors file, checked
/// against the pins and the shapes.
pub fn load_alpha_beta(path: &Path) -> Result<WeightMap> {
    let origin = path.display().to_string();
    let store = if path.extension().is_some_and(|e| e == "safetensors") {
        load_safetensors(path).with_context(|| format!("{origin}: reading α/β"))?
    } else {
        read_weights_pt(path)?
    };
    store
        .validate(&dists::alpha_beta_spec(), &[])
        .with_context(|| format!("{origin}: not DISTS's α/β"))?;
    let m = to_map(&store)?;
    let bytes: Vec<u8> = [dists::ALPHA, dists::BETA]
        .iter()
        .flat_map(|k| m[*k].data.iter().flat_map(|v| v.to_le_bytes()))
        .collect();
    let got = sha256_hex(&bytes);
    if got != ALPHA_BETA_VALUES_SHA256 {
        bail!(
            "{origin}: α/β values hash to {got}, expected {ALPHA_BETA_VALUES_SHA256} (DISTS-pytorch 0.1's)"
        );
    }
    Ok(m)
}

/// `weights.pt` from the wheel or as a file, its bytes checked against the pin first.
fn read_weights_pt(path: &Path) -> Result<WeightStore> {
    let origin = path.display().to_string();
    let bytes = if path.extension().is_some_and(|e| e == "whl") {
        let f = std::fs::File::open(path).with_context(|| format!("{origin}: cannot open"))?;
        let mut zip = zip::ZipArchive::new(std::io::BufReader::new(f))
            .with_context(|| format!("{origin}: not a wheel (zip archive)"))?;
        let mut entry = zip.by_name(WHEEL_MEMBER).with_context(|| {
            format!("{origin}: no {WHEEL_MEMBER} inside; is this {WHEEL_NAME}?")
        })?;
        // The real file is 12 KB.
        if entry.size() > 1 << 20 {
            bail!(
                "{origin}: {WHEEL_MEMBER} claims {} bytes; refused",
                entry.size()
            );
        }
        let mut b = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut b)
            .with_context(|| format!("{origin}: cannot unpack {WHEEL_MEMBER}"))?;
        b
    } else {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("{origin}: no DISTS α/β file there; {}", how_to_get()))?;
        if meta.len() > 1 << 20 {
            bail!(
                "{origin}: {} bytes is not DISTS-pytorch's 12 KB weights.pt",
                meta.len()
            );
        }
        std::fs::read(path).with_context(|| format!("{origin}: cannot read"))?
    };
    let got = sha256_hex(&bytes);
    if got != ALPHA_BETA_SHA256 {
        bail!(
            "{origin}: SHA-256 {got}, expected {ALPHA_BETA_SHA256} (DISTS-pytorch 0.1's weights.pt)"
        );
    }
    let len = bytes.len() as u64;
    Ok(
        read_pth(Cursor::new(bytes), len, &origin, &PthOptions::default())
            .with_context(|| format!("{origin}: reading α/β"))?
            .store,
    )
}

/// VGG16's `features` convolutions from a torchvision state dict (`.pth`) or a safetensors
/// file; `classifier.*` (torchvision's full model) is dropped, every other key must fit.
pub fn load_vgg16(path: &Path) -> Result<(WeightMap, VggSource)> {
    let origin = path.display().to_string();
    if !path.is_file() {
        bail!("{origin}: no VGG16 weights there; {}", how_to_get());
    }
    let mut store = if path.extension().is_some_and(|e| e == "safetensors") {
        load_safetensors(path)?
    } else {
        load_pth(path, &PthOptions::default())
            .with_context(|| format!("{origin}: reading the VGG16 checkpoint"))?
            .store
    };
    store.strip_module_prefix()?;
    let classifier: Vec<String> = store
        .names()
        .filter(|k| k.starts_with("classifier."))
        .map(String::from)
        .collect();
    for k in &classifier {
        store.remove(k);
    }
    store.validate(&dists::vgg_spec(), &[]).with_context(|| {
        format!("{origin}: not torchvision's VGG16 (`features.N.weight/bias` keys as {VGG16_FILE})")
    })?;
    let sha256 = sha256_file(path)?;
    let source = VggSource {
        path: origin,
        torchvision_imagenet: sha256.starts_with(VGG16_SHA256_PREFIX),
        sha256,
    };
    Ok((to_map(&store)?, source))
}

/// Every constant DISTS's graph reads, named with `prefix` as [`dists::build`] names them.
pub fn dists_constants(vgg: WeightMap, alpha_beta: WeightMap, prefix: &str) -> WeightMap {
    vgg.into_iter()
        .chain(alpha_beta)
        .chain(dists::builtin_constants())
        .map(|(k, v)| (format!("{prefix}{k}"), v))
        .collect()
}
