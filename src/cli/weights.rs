//! `dynface weights convert|download|random|mtcnn|retinaface`: checkpoint conversion and
//! download.

use crate::face::detect::mtcnn_weights::MtcnnWeightsOptions;
use crate::face::detect::retinaface_weights::RetinaFaceWeightsOptions;
use crate::tensor::DType;
use crate::weights::convert::{convert_pth_to_safetensors, default_output, ConvertReport};
use crate::weights::download::{download_entry, select, DownloadOptions, DownloadOutcome, Fetched};
use crate::weights::Manifest;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutDType {
    F32,
    F16,
    Bf16,
}

impl From<OutDType> for DType {
    fn from(d: OutDType) -> Self {
        match d {
            OutDType::F32 => DType::F32,
            OutDType::F16 => DType::F16,
            OutDType::Bf16 => DType::BF16,
        }
    }
}

/// Convert a PyTorch checkpoint to safetensors (nothing in the file is executed).
#[derive(clap::Args, Clone, Debug)]
pub struct ConvertArgs {
    /// The `.pth` / `.pt` checkpoint to read.
    pub input: PathBuf,
    /// Output file; defaults to the input with a `.safetensors` extension.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Top-level key holding the state dict (default: the file itself, or one of
    /// state_dict / params_ema / model / params).
    #[arg(long)]
    pub key: Option<String>,
    /// Store float tensors in this type (default: as in the file; f64 becomes f32).
    /// Integer buffers always stay i64.
    #[arg(long, value_enum)]
    pub dtype: Option<OutDType>,
}

/// Converts and prints what was written.
pub fn run_convert(args: &ConvertArgs) -> anyhow::Result<ConvertReport> {
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| default_output(&args.input));
    let report = convert_pth_to_safetensors(
        &args.input,
        &output,
        args.key.as_deref(),
        args.dtype.map(DType::from),
    )?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    eprintln!(
        "wrote {} ({} tensors, {} bytes{})",
        report.output.display(),
        report.tensors,
        report.bytes,
        report
            .wrapper
            .as_ref()
            .map(|w| format!(", from key `{w}`"))
            .unwrap_or_default()
    );
    Ok(report)
}

/// Download the public checkpoints (see weights/manifest.json) and convert them.
#[derive(clap::Args, Clone, Debug)]
pub struct DownloadArgs {
    /// Entries to fetch (default: all). Names or file names from the manifest.
    pub names: Vec<String>,
    /// Directory to store the files in.
    #[arg(long, default_value = "weights")]
    pub dir: PathBuf,
    /// Use this manifest instead of the built-in one.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Keep the `.pth` only; skip the safetensors conversion.
    #[arg(long)]
    pub no_convert: bool,
}

/// Fetches, verifies and converts, printing each file's outcome.
pub fn run_download(args: &DownloadArgs) -> anyhow::Result<Vec<DownloadOutcome>> {
    let manifest = match &args.manifest {
        Some(p) => Manifest::load(p)?,
        None => Manifest::builtin()?,
    };
    let opts = DownloadOptions {
        convert: !args.no_convert,
        ..DownloadOptions::default()
    };
    let mut out = Vec::new();
    for e in select(&manifest, &args.names)? {
        let o = download_entry(e, &args.dir, &opts)?;
        let how = match o.fetched {
            Fetched::AlreadyPresent => "already present, checksum ok".to_string(),
            Fetched::Downloaded => "downloaded, checksum ok".to_string(),
            Fetched::Resumed { resumed_from } => {
                format!("resumed at byte {resumed_from}, checksum ok")
            }
        };
        eprintln!("{}: {how}", o.path.display());
        if let Some(c) = &o.converted {
            eprintln!("  safetensors: {}", c.display());
        }
        out.push(o);
    }
    Ok(out)
}

#[derive(clap::Args, Clone, Debug)]
pub struct RandomArgs {
    /// Which set: `tiny` (64² images, small networks; seconds per image on a CPU) or `ffhq512`
    /// (the official architectures at full size, random weights: for timing).
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Output folder (created).
    #[arg(short, long)]
    pub output: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Writes the set and says where.
pub fn run_random(args: &RandomArgs) -> anyhow::Result<crate::restore::ModelSet> {
    let set = crate::restore::random::write_random_set(&args.preset, &args.output, args.seed)?;
    eprintln!(
        "wrote the {} random model set to {} ({} files)",
        args.preset,
        args.output.display(),
        set.files().len() + 1
    );
    Ok(set)
}

#[derive(clap::Args, Clone, Debug)]
pub struct MtcnnWeightsArgs {
    /// facenet-pytorch 2.6.0's wheel, or a folder holding its pnet.pt, rnet.pt and onet.pt.
    pub source: PathBuf,
    /// Output safetensors file.
    #[arg(short, long, default_value = "weights/mtcnn.safetensors")]
    pub output: PathBuf,
}

impl MtcnnWeightsArgs {
    pub fn options(&self) -> MtcnnWeightsOptions {
        MtcnnWeightsOptions {
            source: self.source.clone(),
            output: self.output.clone(),
        }
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct RetinaFaceWeightsArgs {
    /// facexlib's detection_Resnet50_Final.pth or detection_mobilenet0.25_Final.pth.
    pub source: PathBuf,
    /// Output safetensors file (default: the source's name with .safetensors, in weights/).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

impl RetinaFaceWeightsArgs {
    pub fn options(&self) -> RetinaFaceWeightsOptions {
        RetinaFaceWeightsOptions {
            source: self.source.clone(),
            output: self.output.clone(),
        }
    }
}
