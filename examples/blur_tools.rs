//! Temporary command line for the blur / degrade / metrics modules until the
//! `dynface` binary wires them as subcommands:
//!
//!   cargo run --release --example blur_tools -- degrade ../shared/data/faces/hq -o /tmp/deg --seed 0
//!   cargo run --release --example blur_tools -- metrics --ref ../shared/data/faces/hq --in /tmp/deg
//!   cargo run --release --example blur_tools -- debug-blur --input I.safetensors --out O.safetensors
//!   cargo run --release --example blur_tools -- time-blur

use clap::{Parser, Subcommand};
use dynface::blur::{blur_adjoint, blur_dsigma, blur_forward, run_debug_blur, DebugBlurArgs};
use dynface::degrade::{run_degrade, DegradeArgs};
use dynface::metrics::{run_metrics, MetricsArgs};
use std::time::Instant;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Degrade(DegradeArgs),
    Metrics(MetricsArgs),
    DebugBlur(DebugBlurArgs),
    /// Times blur_forward / adjoint / dσ on a [1,3,512,512] f32 image.
    TimeBlur {
        #[arg(long, default_value_t = 15.0)]
        sigma: f32,
        #[arg(long, default_value_t = 20)]
        reps: usize,
    },
}

fn time<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    f();
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best * 1e3
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Degrade(a) => {
            let s = run_degrade(&a)?;
            std::process::exit(s.exit_code());
        }
        Cmd::Metrics(a) => {
            run_metrics(&a)?;
        }
        Cmd::DebugBlur(a) => {
            println!("wrote {:?} to {}", run_debug_blur(&a)?, a.out.display());
        }
        Cmd::TimeBlur { sigma, reps } => {
            let shape = [1, 3, 512, 512];
            let mut r = dynface::tensor::random::rng(0);
            let x = dynface::tensor::random::uniform::<f32>(&mut r, &shape, 0.0, 1.0).data;
            let g = dynface::tensor::random::uniform::<f32>(&mut r, &shape, -1.0, 1.0).data;
            let mut out = vec![0.0f32; x.len()];
            let mut ds = [0.0f32];
            let threads = rayon::current_num_threads();
            let f = time(reps, || blur_forward(&x, &[sigma], shape, &mut out));
            let a = time(reps, || blur_adjoint(&g, &[sigma], shape, &mut out));
            let d = time(reps, || blur_dsigma(&x, &[sigma], &g, shape, &mut ds));
            println!("[1,3,512,512] f32 σ={sigma} ({threads} threads, best of {reps}): forward {f:.2} ms, adjoint {a:.2} ms, dsigma {d:.2} ms");
        }
    }
    Ok(())
}
