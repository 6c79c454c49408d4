//! The command line's spelling of domain enums. clap's `ValueEnum` derive lives here, on
//! mirrors with the same variant names and help, so the domain types carry no clap; each
//! mirror converts into its domain type.

use crate::bench::cpu_net::Net;
use crate::face::align::Fit;
use crate::face::photo_run::DetectorKind;
use crate::graph::Precision;
use crate::restore::preset::Preset;
use crate::sampler::UpdateOn;
use crate::train::dgsa::Guide;

/// `--precision` (of `restore` and `bench`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PrecisionArg {
    /// fp32 operands and accumulation everywhere.
    #[default]
    Fp32,
    /// Convolutions (forward, input gradient) and matrix products with bf16 operands on
    /// tensor cores, fp32 accumulation; everything else fp32.
    Bf16,
}

impl From<PrecisionArg> for Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::Fp32 => Precision::Fp32,
            PrecisionArg::Bf16 => Precision::Bf16,
        }
    }
}

/// `bench --net`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetArg {
    /// DifFace's FFHQ 512 prior (guided-diffusion ADM UNet, 159.8 M parameters).
    Unet,
    /// DifFace's SwinIR restorer (pixel-unshuffle ×8 front, 8 stages × 6 blocks, embed 180).
    Swinir,
}

impl From<NetArg> for Net {
    fn from(n: NetArg) -> Self {
        match n {
            NetArg::Unet => Net::Unet,
            NetArg::Swinir => Net::Swinir,
        }
    }
}

/// `restore --detector`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetectorArg {
    /// MTCNN with facenet-pytorch 2.6.0's weights (`dynface weights mtcnn`).
    Mtcnn,
    /// RetinaFace with facexlib's ResNet-50 or MobileNet-0.25 checkpoint (`dynface weights
    /// download retinaface_resnet50`; the variant is told from the weights).
    Retinaface,
}

impl From<DetectorArg> for DetectorKind {
    fn from(d: DetectorArg) -> Self {
        match d {
            DetectorArg::Mtcnn => DetectorKind::Mtcnn,
            DetectorArg::Retinaface => DetectorKind::Retinaface,
        }
    }
}

/// `restore --align-fit`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FitArg {
    /// Least squares over the five points.
    #[default]
    Lstsq,
    /// Least median of squares, as facexlib (OpenCV's LMEDS): robust to one bad landmark.
    Lmeds,
}

impl From<FitArg> for Fit {
    fn from(f: FitArg) -> Self {
        match f {
            FitArg::Lstsq => Fit::Lstsq,
            FitArg::Lmeds => Fit::Lmeds,
        }
    }
}

/// `train dgsa --guide`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuideArg {
    /// Stage 1: ŷ = k_σ ⊛ x, σ ~ U[sigma_min, sigma_max].
    TrueBlur,
    /// Stage 2: ŷ = k_σ̂ ⊛ RM(y) of an Eq. 16 degradation y (the DBLM frozen).
    Dblm,
}

impl From<GuideArg> for Guide {
    fn from(g: GuideArg) -> Self {
        match g {
            GuideArg::TrueBlur => Guide::TrueBlur,
            GuideArg::Dblm => Guide::Dblm,
        }
    }
}

/// `--step-on`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateOnArg {
    /// On the host in f64, reading x̂₀, ∇ and ∂σ back every step: the reference path, and the
    /// one that supports host-side scale maps.
    Host,
    /// In the step graph on the backend: x_t and σ_i stay there for the whole run; per step
    /// only the noise and a few [B] scalars go up and the loss and σ_i come back.
    Device,
}

impl From<UpdateOnArg> for UpdateOn {
    fn from(u: UpdateOnArg) -> Self {
        match u {
            UpdateOnArg::Host => UpdateOn::Host,
            UpdateOnArg::Device => UpdateOn::Device,
        }
    }
}

/// `--preset`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PresetArg {
    /// The paper's full method: N = 3 guidance images, DGSA when its weights exist.
    Full,
    /// The paper's setting C: S ≡ 1 even when DGSA weights exist.
    NoDgsa,
    /// One guidance image (N = 1).
    Single,
    /// Our fast guidance: gradient with respect to x̂₀ only (no backpropagation through
    /// the UNet, so each step skips the UNet's backward pass); some fidelity lost. Its speed
    /// on a GPU is not measured yet.
    Fast,
}

impl From<PresetArg> for Preset {
    fn from(p: PresetArg) -> Self {
        match p {
            PresetArg::Full => Preset::Full,
            PresetArg::NoDgsa => Preset::NoDgsa,
            PresetArg::Single => Preset::Single,
            PresetArg::Fast => Preset::Fast,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    /// The mirrors spell every domain variant the way the domain's serde names do, so the
    /// flag and the report/config agree.
    #[test]
    fn mirrors_spell_the_domain_names() {
        for u in UpdateOnArg::value_variants() {
            let name = u.to_possible_value().unwrap().get_name().to_string();
            let serde = serde_json::to_value(UpdateOn::from(*u)).unwrap();
            assert_eq!(serde.as_str(), Some(name.as_str()));
        }
        for p in PresetArg::value_variants() {
            let name = p.to_possible_value().unwrap().get_name().to_string();
            let serde = serde_json::to_value(Preset::from(*p)).unwrap();
            assert_eq!(serde.as_str(), Some(name.as_str()));
        }
        for d in DetectorArg::value_variants() {
            let name = d.to_possible_value().unwrap().get_name().to_string();
            let serde = serde_json::to_value(DetectorKind::from(*d)).unwrap();
            assert_eq!(serde.as_str(), Some(name.as_str()));
        }
        // The flag is kebab-case (`true-blur`), the config file's key snake_case (`true_blur`).
        for g in GuideArg::value_variants() {
            let name = g.to_possible_value().unwrap().get_name().replace('-', "_");
            let serde = serde_json::to_value(Guide::from(*g)).unwrap();
            assert_eq!(serde.as_str(), Some(name.as_str()));
        }
        let fits: Vec<Fit> = FitArg::value_variants().iter().map(|&f| f.into()).collect();
        assert_eq!(fits, [Fit::Lstsq, Fit::Lmeds]);
        for n in NetArg::value_variants() {
            let name = n.to_possible_value().unwrap().get_name().to_string();
            let serde = serde_json::to_value(Net::from(*n)).unwrap();
            assert_eq!(serde.as_str(), Some(name.as_str()));
        }
        for p in PrecisionArg::value_variants() {
            let name = p.to_possible_value().unwrap().get_name().to_string();
            let serde = serde_json::to_value(Precision::from(*p)).unwrap();
            assert_eq!(serde.as_str(), Some(name.as_str()));
        }
    }
}
