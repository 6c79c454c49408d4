//! `dynface train …` arguments.

use super::values::GuideArg;
use crate::train::dgsa::{self, DgsaTrainConfig};
use crate::train::sde::{self, RunOptions, SdeTrainConfig};
use crate::train::se::{self, SeTrainConfig};
use crate::train::stage::TrainSummary;
use anyhow::Result;
use clap::{Args, Subcommand};
use serde::Serialize;
use std::path::{Path, PathBuf};

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

/// Arguments of every stage.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// JSON config (fields and defaults: README "Training", or --print-config); absent
    /// fields take defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output folder: checkpoint, metrics.jsonl, loss.svg, validation.json and the trained
    /// weights; `train se` and `train dgsa` also write a models.json that uses them
    /// (`dynface restore --weights OUT`).
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
    /// Print the effective config as JSON and exit.
    #[arg(long)]
    pub print_config: bool,
}

#[derive(Args, Debug)]
pub struct TrainSdeArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Also score the training-free σ̂ (with the HQ face as an oracle restorer) on the
    /// validation blurs at the end.
    #[arg(long)]
    pub compare_training_free: bool,
}

/// Arguments of the stages that train against a model set.
#[derive(Args, Debug)]
pub struct TrainStageArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Override the config's model set folder.
    #[arg(long)]
    pub models: Option<PathBuf>,
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

/// The fields of a stage's config that `--faces` and `--steps` override.
type Overridden<C> = for<'a> fn(&'a mut C) -> (&'a mut PathBuf, &'a mut u64);

impl RunArgs {
    /// The stage's config (the file, or the defaults) with this command line's overrides.
    fn config<C: Default>(
        &self,
        from_file: fn(&Path) -> Result<C>,
        fields: Overridden<C>,
    ) -> Result<C> {
        let mut cfg = match &self.config {
            Some(p) => from_file(p)?,
            None => C::default(),
        };
        let (dir, steps) = fields(&mut cfg);
        if let Some(f) = &self.faces {
            *dir = f.clone();
        }
        if let Some(s) = self.steps {
            *steps = s;
        }
        Ok(cfg)
    }

    /// With `--print-config`, prints `cfg` and says so: the command ends there.
    fn printed(&self, cfg: &impl Serialize) -> Result<bool> {
        if self.print_config {
            println!("{}", serde_json::to_string_pretty(cfg)?);
        }
        Ok(self.print_config)
    }

    fn options(&self, compare_training_free: bool) -> RunOptions {
        RunOptions {
            resume: self.resume,
            stop_after: self.stop_after,
            compare_training_free,
            quiet: false,
        }
    }
}

impl TrainStageArgs {
    /// Answers `--print-config` and `--print-cost`: `true` when the command ends there.
    fn answered(
        &self,
        cfg: &impl Serialize,
        batch: usize,
        step_macs: impl FnOnce() -> Result<u64>,
    ) -> Result<bool> {
        if self.run.printed(cfg)? {
            return Ok(true);
        }
        if self.print_cost {
            let macs = step_macs()? as f64;
            println!(
                "one training step (batch {batch}): {:.1} GMAC = {:.1} GFLOP (convolutions and matrix products, forward and backward)",
                macs / 1e9,
                2.0 * macs / 1e9
            );
        }
        Ok(self.print_cost)
    }
}

fn report<V>(s: &TrainSummary<V>, batch: usize) {
    println!(
        "trained {} step(s) to step {} in {:.1} s ({:.2} s/step, batch {batch})",
        s.steps_run, s.final_step, s.seconds, s.seconds_per_step
    );
}

pub fn run(cmd: &TrainCmd) -> Result<()> {
    match cmd {
        TrainCmd::Se(a) => {
            let mut cfg = a.run.config(SeTrainConfig::from_file, |c| {
                (&mut c.train_dir, &mut c.steps)
            })?;
            if let Some(m) = &a.models {
                cfg.models = m.clone();
            }
            if a.answered(&cfg, cfg.batch, || se::step_macs(&cfg))? {
                return Ok(());
            }
            let s = se::run(&cfg, &a.run.out, &a.run.options(false))?;
            report(&s, cfg.batch);
            if let Some(v) = s.last_val {
                println!("validation: {}", serde_json::Value::Object(v));
            }
        }
        TrainCmd::Dgsa(d) => {
            let a = &d.common;
            let mut cfg = a.run.config(DgsaTrainConfig::from_file, |c| {
                (&mut c.train_dir, &mut c.steps)
            })?;
            if let Some(g) = d.guide {
                cfg.guide = g.into();
            }
            if let Some(m) = &a.models {
                cfg.models = m.clone();
            }
            if a.answered(&cfg, cfg.batch, || dgsa::step_macs(&cfg))? {
                return Ok(());
            }
            let s = dgsa::run(&cfg, &a.run.out, &a.run.options(false))?;
            report(&s, cfg.batch);
            if let Some(v) = s.last_val {
                println!(
                    "validation (loss of S ≡ 1 as loss_s1): {}",
                    serde_json::Value::Object(v)
                );
            }
        }
        TrainCmd::Sde(a) => {
            let cfg = a.run.config(SdeTrainConfig::from_file, |c| {
                (&mut c.train_dir, &mut c.steps)
            })?;
            if a.run.printed(&cfg)? {
                return Ok(());
            }
            let s = sde::run(&cfg, &a.run.out, &a.run.options(a.compare_training_free))?;
            report(&s, cfg.batch);
            let macs = sde::forward_macs(&cfg.model, cfg.crop) as f64;
            println!(
                "cost: {:.2} GMAC per {}² forward, ≈{:.1} GFLOP per training image (3 forwards' worth)",
                macs / 1e9,
                cfg.crop,
                6.0 * macs / 1e9
            );
            if let Some(v) = s.last_val {
                println!(
                    "validation ({} blurs of held-out faces, {}² crops): MAE {:.3} px, Spearman ρ {:.3}",
                    v.n, cfg.crop, v.mae, v.spearman
                );
            }
        }
    }
    println!("outputs in {}", out_of(cmd).display());
    Ok(())
}

fn out_of(cmd: &TrainCmd) -> &Path {
    match cmd {
        TrainCmd::Sde(a) => &a.run.out,
        TrainCmd::Se(a) => &a.run.out,
        TrainCmd::Dgsa(d) => &d.common.run.out,
    }
}
