//! `dynface train …` arguments.

use super::values::GuideArg;
use crate::train::dgsa::{self, DgsaTrainConfig};
use crate::train::sde::{self, RunOptions, SdeTrainConfig};
use crate::train::se::{self, SeTrainConfig};
use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum TrainCmd {
    /// Stage 1 of the standard estimator: the SDE on true Gaussian blurs of HQ face crops.
    Sde(TrainSdeArgs),
    /// Stage 2 of the standard estimator: TM + SDE end to end on Eq. 16 pairs (Eq. 22), σ*
    /// labels from the model set's restorer.
    Se(TrainStageArgs),
    /// DGSA (Eq. 24: SWT subband L1; the prior frozen, t sampled); `--guide true-blur` is
    /// stage 1, `--guide dblm` stage 2.
    Dgsa(TrainDgsaArgs),
}

/// Arguments every later stage shares.
#[derive(Args, Debug)]
pub struct TrainStageArgs {
    /// JSON config (fields and defaults: README "Training", or --print-config).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output folder: checkpoint, metrics.jsonl, loss.svg, the trained weights and a
    /// models.json that uses them (`dynface restore --weights OUT`).
    #[arg(short, long)]
    pub out: PathBuf,
    /// Continue from OUT/checkpoint.safetensors (same config required); bit-exact on the CPU.
    #[arg(long)]
    pub resume: bool,
    /// Override the config's model set folder.
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Override the config's train_dir.
    #[arg(long)]
    pub faces: Option<PathBuf>,
    /// Override the config's number of steps.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Stop after this many steps in total, as if killed there; for testing resume.
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// Print the effective config as JSON and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Print the multiply-accumulates of one training step (read off the training graph,
    /// from models.json alone: no weights are loaded) and exit.
    #[arg(long)]
    pub print_cost: bool,
}

#[derive(Args, Debug)]
pub struct TrainDgsaArgs {
    #[command(flatten)]
    pub common: TrainStageArgs,
    /// Override the config's guidance images (stage 1 true-blur, stage 2 dblm).
    #[arg(long, value_enum)]
    pub guide: Option<GuideArg>,
}

fn options(a: &TrainStageArgs) -> RunOptions {
    RunOptions {
        resume: a.resume,
        stop_after: a.stop_after,
        compare_training_free: false,
        quiet: false,
    }
}

fn print_cost(macs: u64, batch: usize) {
    println!(
        "one training step (batch {batch}): {:.1} GMAC = {:.1} GFLOP (convolutions and matrix products, forward and backward)",
        macs as f64 / 1e9,
        2.0 * macs as f64 / 1e9
    );
}

fn report(steps_run: u64, final_step: u64, seconds: f64, batch: usize, out: &std::path::Path) {
    println!(
        "trained {steps_run} step(s) to step {final_step} in {seconds:.1} s ({:.2} s/step, batch {batch})",
        seconds / steps_run.max(1) as f64
    );
    println!("outputs in {}", out.display());
}

#[derive(Args, Debug)]
pub struct TrainSdeArgs {
    /// JSON config (fields and defaults: README "Training"); absent fields take defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output folder: checkpoint, metrics.jsonl, loss.svg, the trained sde.safetensors.
    #[arg(short, long)]
    pub out: PathBuf,
    /// Continue from OUT/checkpoint.safetensors (same config required); bit-exact on the CPU.
    #[arg(long)]
    pub resume: bool,
    /// Override the config's train_dir.
    #[arg(long)]
    pub faces: Option<PathBuf>,
    /// Override the config's number of steps.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Stop after this many steps in total, writing nothing past the last checkpoint (as if
    /// killed there); for testing resume.
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// Also score the training-free σ̂ (with the HQ face as an oracle restorer) on the
    /// validation blurs at the end.
    #[arg(long)]
    pub compare_training_free: bool,
    /// Print the effective config as JSON and exit.
    #[arg(long)]
    pub print_config: bool,
}

pub fn run(cmd: &TrainCmd) -> Result<()> {
    match cmd {
        TrainCmd::Se(a) => {
            let mut cfg = match &a.config {
                Some(p) => SeTrainConfig::from_file(p)?,
                None => SeTrainConfig::default(),
            };
            if let Some(m) = &a.models {
                cfg.models = m.clone();
            }
            if let Some(f) = &a.faces {
                cfg.train_dir = f.clone();
            }
            if let Some(s) = a.steps {
                cfg.steps = s;
            }
            if a.print_config {
                println!("{}", serde_json::to_string_pretty(&cfg)?);
                return Ok(());
            }
            if a.print_cost {
                print_cost(se::step_macs(&cfg)?, cfg.batch);
                return Ok(());
            }
            let s = se::run(&cfg, &a.out, &options(a))?;
            report(s.steps_run, s.final_step, s.seconds, cfg.batch, &a.out);
            if let Some(v) = s.last_val {
                println!("validation: {}", serde_json::Value::Object(v));
            }
            Ok(())
        }
        TrainCmd::Dgsa(d) => {
            let a = &d.common;
            let mut cfg = match &a.config {
                Some(p) => DgsaTrainConfig::from_file(p)?,
                None => DgsaTrainConfig::default(),
            };
            if let Some(m) = &a.models {
                cfg.models = m.clone();
            }
            if let Some(f) = &a.faces {
                cfg.train_dir = f.clone();
            }
            if let Some(s) = a.steps {
                cfg.steps = s;
            }
            if let Some(g) = d.guide {
                cfg.guide = g.into();
            }
            if a.print_config {
                println!("{}", serde_json::to_string_pretty(&cfg)?);
                return Ok(());
            }
            if a.print_cost {
                print_cost(dgsa::step_macs(&cfg)?, cfg.batch);
                return Ok(());
            }
            let s = dgsa::run(&cfg, &a.out, &options(a))?;
            report(s.steps_run, s.final_step, s.seconds, cfg.batch, &a.out);
            if let Some(v) = s.last_val {
                println!(
                    "validation (loss of S ≡ 1 as loss_s1): {}",
                    serde_json::Value::Object(v)
                );
            }
            Ok(())
        }
        TrainCmd::Sde(a) => {
            let mut cfg = match &a.config {
                Some(p) => SdeTrainConfig::from_file(p)?,
                None => SdeTrainConfig::default(),
            };
            if let Some(f) = &a.faces {
                cfg.train_dir = f.clone();
            }
            if let Some(s) = a.steps {
                cfg.steps = s;
            }
            if a.print_config {
                println!("{}", serde_json::to_string_pretty(&cfg)?);
                return Ok(());
            }
            let opts = RunOptions {
                resume: a.resume,
                stop_after: a.stop_after,
                compare_training_free: a.compare_training_free,
                quiet: false,
            };
            let s = sde::run(&cfg, &a.out, &opts)?;
            println!(
                "trained {} step(s) to step {} in {:.1} s ({:.2} s/step, batch {} of {}²)",
                s.steps_run, s.final_step, s.seconds, s.seconds_per_step, cfg.batch, cfg.crop
            );
            let macs = sde::forward_macs(&cfg.model, cfg.crop) as f64;
            println!(
                "cost: {:.2} GMAC per {}² forward, ≈{:.1} GFLOP per training image (3 forwards' worth)",
                macs / 1e9,
                cfg.crop,
                6.0 * macs / 1e9
            );
            if let Some(v) = s.val {
                println!(
                    "validation ({} blurs of held-out faces): MAE {:.3} px, Spearman ρ {:.3}",
                    v.n, v.mae, v.spearman
                );
            }
            println!("outputs in {}", a.out.display());
            Ok(())
        }
    }
}
