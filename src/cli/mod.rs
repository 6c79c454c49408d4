//! The `dynface` command line: every clap derive and every printed result of a subcommand
//! lives under this module, one file per subcommand family; `src/main.rs` only calls [`main`].

pub mod bench;
pub mod debug_blur;
pub mod debug_decode;
pub mod degrade;
pub mod demo;
pub mod dsst;
pub mod kernels;
pub mod metrics;
pub mod parity;
pub mod report;
pub mod restore;
pub mod train;
pub mod unet;
pub mod values;
pub mod weights;

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
    /// Restore degraded face photos: files, folders or globs (the main job).
    Restore(restore::RestoreArgs),
    /// The main job on a face anyone can make: draw an aligned face, degrade it, restore it.
    Demo(demo::DemoArgs),
    /// Degrade HQ images with the synthetic model of Eq. 16 (blur, resize, noise, JPEG).
    Degrade(degrade::DegradeArgs),
    /// PSNR and SSIM of restored images against references, paired by file stem.
    Metrics(metrics::MetricsArgs),
    /// The dynamic starting-step table (DSST, Eq. 23): build it from HQ faces.
    Dsst(dsst::DsstArgs),
    /// Size, parameter count and cost of a network.
    #[command(subcommand)]
    Info(InfoCmd),
    /// Checkpoints: convert PyTorch .pth to safetensors, download the public ones.
    #[command(subcommand)]
    Weights(WeightsCmd),
    /// Inspect single operators and networks against your own implementation.
    #[command(subcommand)]
    Debug(DebugCmd),
    /// CUDA kernels: compile every one with NVRTC and report registers, shared memory, spills.
    #[command(subcommand)]
    Kernels(KernelsCmd),
    /// Restore reports: merge the reports of a sharded run, or show one as an HTML page.
    #[command(subcommand)]
    Report(ReportCmd),
    /// Throughput of the expensive ops against a reference rate measured in the same run.
    Bench(bench::BenchArgs),
    /// Train the learned parts (SDE, SE, DGSA) with AdamW, checkpoints, resume and validation.
    #[command(subcommand)]
    Train(train::TrainCmd),
    /// Print the engine's build facts: backends compiled in, threads, version.
    Version,
}

#[derive(Subcommand)]
enum KernelsCmd {
    /// Compile every kernel for sm_90 (no GPU needed, only libnvrtc); fails on an error or a spill.
    /// With --parity: check every op and kernel variant against the f64 CPU backend instead.
    Check(kernels::KernelsCheckArgs),
}

#[derive(Subcommand)]
enum ReportCmd {
    /// Join the shard reports of one run into one report; name missing shards and images.
    Merge(report::MergeArgs),
    /// One self-contained HTML page of a report: pictures, σ and loss per step, seconds.
    Html(report::HtmlArgs),
}

#[derive(Subcommand)]
enum InfoCmd {
    /// The diffusion UNet: tensors, parameters, MACs per forward, planned memory.
    Unet(unet::InfoArgs),
}

#[derive(Subcommand)]
enum WeightsCmd {
    /// Convert a PyTorch checkpoint (.pth, zip or legacy) to safetensors, in Rust, safely.
    Convert(weights::ConvertArgs),
    /// Download the public checkpoints of the manifest, verify their SHA-256, convert them.
    Download(weights::DownloadArgs),
    /// Write a complete random-weight model set (UNet, SwinIR, SE, DGSA, DSST) for tests and demos.
    Random(weights::RandomArgs),
    /// MTCNN's face-detector weights from facenet-pytorch 2.6.0's wheel (or its three .pt files) to one safetensors file.
    Mtcnn(weights::MtcnnWeightsArgs),
    /// RetinaFace's face-detector weights (facexlib's detection_Resnet50_Final.pth or detection_mobilenet0.25_Final.pth), checked, to safetensors.
    Retinaface(weights::RetinaFaceWeightsArgs),
}

#[derive(Subcommand)]
enum DebugCmd {
    /// Gaussian blur, its adjoint and ∂/∂σ on tensors from a safetensors file.
    Blur(debug_blur::DebugBlurArgs),
    /// Images decoded as `restore` decodes them, written as .npy (uint8 [H, W, 3]) for reference scripts.
    Decode(debug_decode::DebugDecodeArgs),
    /// The UNet's output (and input gradient for a cotangent) on tensors from a safetensors file.
    Unet(unet::DebugArgs),
}

fn code(c: i32) -> ExitCode {
    if c == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(c.clamp(1, 255) as u8)
    }
}

/// Parses the command line, runs the subcommand, maps its result to the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let r: anyhow::Result<ExitCode> = match cli.cmd {
        Cmd::Restore(a) => restore::run_restore(&a).map(|r| code(r.exit_code())),
        Cmd::Demo(a) => demo::run_demo(&a).map(|d| code(d.restore.map_or(0, |r| r.exit_code()))),
        Cmd::Weights(WeightsCmd::Random(a)) => weights::run_random(&a).map(|_| ExitCode::SUCCESS),
        Cmd::Kernels(KernelsCmd::Check(a)) if a.parity => {
            parity::run_parity(a.filter.as_deref()).map(|_| ExitCode::SUCCESS)
        }
        Cmd::Kernels(KernelsCmd::Check(a)) => {
            kernels::run_kernels_check(&a).map(|_| ExitCode::SUCCESS)
        }
        Cmd::Report(ReportCmd::Merge(a)) => {
            crate::report::run_merge(&a.options()).map(|s| code(s.exit_code()))
        }
        Cmd::Report(ReportCmd::Html(a)) => {
            crate::report::run_html(&a.options()).map(|_| ExitCode::SUCCESS)
        }
        Cmd::Bench(a) => crate::bench::run_bench(&a.options()).map(|_| ExitCode::SUCCESS),
        Cmd::Degrade(a) => degrade::run_degrade(&a).map(|s| code(s.exit_code())),
        Cmd::Metrics(a) => metrics::run_metrics(&a).map(|r| code(i32::from(!r.failed.is_empty()))),
        Cmd::Weights(WeightsCmd::Convert(a)) => weights::run_convert(&a).map(|_| ExitCode::SUCCESS),
        Cmd::Weights(WeightsCmd::Mtcnn(a)) => {
            crate::face::detect::mtcnn_weights::run_mtcnn_weights(&a.options())
                .map(|_| ExitCode::SUCCESS)
        }
        Cmd::Weights(WeightsCmd::Retinaface(a)) => {
            crate::face::detect::retinaface_weights::run_retinaface_weights(&a.options())
                .map(|_| ExitCode::SUCCESS)
        }
        Cmd::Weights(WeightsCmd::Download(a)) => {
            weights::run_download(&a).map(|_| ExitCode::SUCCESS)
        }
        Cmd::Dsst(a) => dsst::run_dsst(&a).map(|_| ExitCode::SUCCESS),
        Cmd::Info(InfoCmd::Unet(a)) => unet::run_info_unet(&a).map(|i| {
            print!("{i}");
            ExitCode::SUCCESS
        }),
        Cmd::Debug(DebugCmd::Unet(a)) => unet::run_debug_unet(&a).map(|r| {
            println!(
                "out {:?}{}; planned arena {:.2} GB; {:.2} s",
                r.out_shape,
                if r.with_grad { " and grad_x" } else { "" },
                r.peak_bytes as f64 / 1e9,
                r.seconds
            );
            ExitCode::SUCCESS
        }),
        Cmd::Debug(DebugCmd::Blur(a)) => debug_blur::run_debug_blur(&a).map(|lines| {
            for l in lines {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }),
        Cmd::Debug(DebugCmd::Decode(a)) => debug_decode::run_debug_decode(&a).map(|files| {
            for f in files {
                println!("{f}");
            }
            ExitCode::SUCCESS
        }),
        Cmd::Train(t) => train::run(&t).map(|_| ExitCode::SUCCESS),
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
