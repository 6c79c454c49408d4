//! `dynface train …` arguments.

use crate::train::sde::{self, RunOptions, SdeTrainConfig};
use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum TrainCmd {
    /// Stage 1 of the standard estimator: the SDE on true Gaussian blurs of HQ face crops.
    Sde(TrainSdeArgs),
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
