//! `dynface dsst build`: measure the face set's blur residuals, calibrate or take τ, write
//! the table.

use crate::backend::cpu::CpuBackend;
use crate::diffusion::{BetaSchedule, Schedule};
use crate::dsst::build::{mean_blur_residual, table_from_residuals};
use crate::dsst::calibrate::{calibrate_tau, Calibration};
use crate::dsst::faces::load_faces;
use crate::dsst::sigma_grid;
use crate::dsst::table::DsstTable;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct DsstArgs {
    #[command(subcommand)]
    pub command: DsstCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum DsstCommand {
    /// Build the σ → start-step table from a folder of HQ faces.
    Build(DsstBuildArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct DsstBuildArgs {
    /// Folder of HQ face images (PNG/JPEG, all the same size).
    #[arg(long)]
    pub faces: PathBuf,
    /// Output JSON table.
    #[arg(short = 'o', long)]
    pub output: PathBuf,
    /// Tolerance τ; without it τ is calibrated (see --calib-*).
    #[arg(long)]
    pub tau: Option<f64>,
    /// Calibration: the low / high blur level of a degraded set (default: 5th / 95th
    /// percentiles of the Eq. 16 draw σ ~ U[0.1, 15]) ...
    #[arg(long, default_value_t = 0.845)]
    pub calib_sigma_lo: f64,
    #[arg(long, default_value_t = 14.255)]
    pub calib_sigma_hi: f64,
    /// ... and the start steps they should map to (the paper's range).
    #[arg(long, default_value_t = 690)]
    pub calib_t_lo: usize,
    #[arg(long, default_value_t = 925)]
    pub calib_t_hi: usize,
    /// Box-downsample the faces by this integer factor (σ is scaled with it) for speed.
    #[arg(long, default_value_t = 1)]
    pub downsample: usize,
}

pub fn run_dsst(args: &DsstArgs) -> Result<DsstTable> {
    match &args.command {
        DsstCommand::Build(b) => run_dsst_build(b),
    }
}

pub fn run_dsst_build(args: &DsstBuildArgs) -> Result<DsstTable> {
    if args.calib_sigma_lo >= args.calib_sigma_hi || args.calib_t_lo >= args.calib_t_hi {
        bail!(
            "calibration needs σ_lo < σ_hi and t_lo < t_hi, got σ {}..{}, t {}..{}",
            args.calib_sigma_lo,
            args.calib_sigma_hi,
            args.calib_t_lo,
            args.calib_t_hi
        );
    }
    let faces = load_faces(&args.faces, args.downsample)
        .with_context(|| format!("loading faces from {}", args.faces.display()))?;
    let sigmas = sigma_grid();
    // At a reduced resolution a blur of σ full-resolution pixels is σ/f pixels wide.
    let f = args.downsample as f64;
    let scaled: Vec<f64> = sigmas.iter().map(|s| s / f).collect();
    let residual = mean_blur_residual(CpuBackend::<f32>::new(), &faces, &scaled)?;
    let kind = BetaSchedule::linear1000();
    let schedule = Schedule::new(&kind)?;
    let table = match args.tau {
        Some(tau) => table_from_residuals(&residual, &sigmas, &schedule, &kind.name(), tau)?,
        None => calibrate_tau(
            &residual,
            &sigmas,
            &schedule,
            &kind.name(),
            &Calibration {
                sigma_lo: args.calib_sigma_lo,
                sigma_hi: args.calib_sigma_hi,
                t_lo: args.calib_t_lo,
                t_hi: args.calib_t_hi,
            },
        )?,
    };
    table.save(&args.output)?;
    println!(
        "{} faces {:?}; E[rms(x − k_σ⊛x)] at σ = 0.1, 1, 3, 8, 15: {:.5} {:.5} {:.5} {:.5} {:.5}",
        faces.shape[0],
        &faces.shape[1..],
        residual[0],
        residual[9],
        residual[29],
        residual[79],
        residual[149]
    );
    println!(
        "τ = {:.6}; t(σ) from {} (σ = 0.1) to {} (σ = 15); t({}) = {}, t({}) = {}; wrote {}",
        table.tau,
        table.t[0],
        table.t[table.t.len() - 1],
        args.calib_sigma_lo,
        table.lookup(args.calib_sigma_lo),
        args.calib_sigma_hi,
        table.lookup(args.calib_sigma_hi),
        args.output.display()
    );
    Ok(table)
}
