//! The `dynface` command line. Each subcommand's logic lives in the library; this file only
//! parses arguments and maps results to exit codes.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "dynface",
    version,
    about = "DynFaceRestore face restoration: diffusion posterior sampling with dynamic blur-level guidance",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Degrade HQ images with the synthetic model of Eq. 16 (blur, resize, noise, JPEG).
    Degrade(dynface::degrade::DegradeArgs),
    /// PSNR and SSIM of restored images against references, paired by file stem.
    Metrics(dynface::metrics::MetricsArgs),
    /// Checkpoints: convert PyTorch .pth to safetensors, download the public ones.
    #[command(subcommand)]
    Weights(WeightsCmd),
    /// Inspect single operators and networks against your own implementation.
    #[command(subcommand)]
    Debug(DebugCmd),
    /// Print the engine's build facts: backends compiled in, threads, version.
    Version,
}

#[derive(Subcommand)]
enum WeightsCmd {
    /// Convert a PyTorch checkpoint (.pth, zip or legacy) to safetensors, in Rust, safely.
    Convert(dynface::weights::ConvertArgs),
    /// Download the public checkpoints of the manifest, verify their SHA-256, convert them.
    Download(dynface::weights::DownloadArgs),
}

#[derive(Subcommand)]
enum DebugCmd {
    /// Gaussian blur, its adjoint and ∂/∂σ on tensors from a safetensors file.
    Blur(dynface::blur::DebugBlurArgs),
}

fn code(c: i32) -> ExitCode {
    if c == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(c.clamp(1, 255) as u8)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r: anyhow::Result<ExitCode> = match cli.cmd {
        Cmd::Degrade(a) => dynface::degrade::run_degrade(&a).map(|s| code(s.exit_code())),
        Cmd::Metrics(a) => {
            dynface::metrics::run_metrics(&a).map(|r| code(i32::from(!r.failed.is_empty())))
        }
        Cmd::Weights(WeightsCmd::Convert(a)) => {
            dynface::weights::run_convert(&a).map(|_| ExitCode::SUCCESS)
        }
        Cmd::Weights(WeightsCmd::Download(a)) => {
            dynface::weights::run_download(&a).map(|_| ExitCode::SUCCESS)
        }
        Cmd::Debug(DebugCmd::Blur(a)) => dynface::blur::run_debug_blur(&a).map(|lines| {
            for l in lines {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }),
        Cmd::Version => {
            println!("dynface {}", env!("CARGO_PKG_VERSION"));
            println!("cpu threads: {}", rayon::current_num_threads());
            Ok(ExitCode::SUCCESS)
        }
    };
    match r {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
