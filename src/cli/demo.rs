//! `dynface demo`: the main job end to end on a picture any reader can make. It draws an
//! aligned face (no photo, so no licence question), degrades it with Eq. 16 at a fixed seed
//! and restores it, writing the three stages and an HTML report into one folder.

use super::degrade::{run_degrade, DegradeArgs};
use super::restore::{run_restore, RestoreArgs};
use crate::atomic_file::write_atomic;
use crate::demo::synthetic_face;
use crate::restore::RunReport;
use anyhow::{bail, Context, Result};
use clap::Parser;
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Output folder: `face.png` (drawn), `lq/face.png` (degraded), `restored/` (restored
    /// face, report.json, report.html).
    #[arg(short, long, default_value = "demo")]
    pub output: PathBuf,
    /// Seed of the degradation (restore's own `--seed` goes after `--`).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Only draw the face to OUTPUT/face.png; no degradation, no restoration.
    #[arg(long)]
    pub draw_only: bool,
    /// Further `dynface restore` options, after `--` (e.g. `-- --device cpu --weights DIR`).
    #[arg(last = true)]
    pub restore_args: Vec<String>,
}

/// What the demo wrote; `restore` is `None` with `--draw-only`.
pub struct DemoSummary {
    pub face: PathBuf,
    pub degraded: Option<PathBuf>,
    pub restore: Option<RunReport>,
}

pub fn run_demo(args: &DemoArgs) -> Result<DemoSummary> {
    let lq = args.output.join("lq");
    // Parsed first, so a mistyped option fails before any work is done.
    let restore = parse_restore_args(&lq, &args.output.join("restored"), &args.restore_args)?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let face = args.output.join("face.png");
    let mut png = Vec::new();
    synthetic_face::draw_face()
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .context("encoding the drawn face")?;
    write_atomic(&face, &png)?;
    eprintln!(
        "drew {} (512×512, landmarks on the FFHQ-512 template)",
        face.display()
    );
    if args.draw_only {
        return Ok(DemoSummary {
            face,
            degraded: None,
            restore: None,
        });
    }
    let degraded = run_degrade(&DegradeArgs::new(vec![face.clone()], lq.clone(), args.seed))?;
    if degraded.exit_code() != 0 {
        bail!("degrading {} failed", face.display());
    }
    let report = run_restore(&restore)?;
    Ok(DemoSummary {
        face,
        degraded: Some(lq.join("face.png")),
        restore: Some(report),
    })
}

/// `restore LQ -o OUT --html EXTRA...`, parsed by restore's own parser so the demo takes
/// exactly the options `dynface restore` takes, with the same defaults.
fn parse_restore_args(
    lq: &std::path::Path,
    out: &std::path::Path,
    extra: &[String],
) -> Result<RestoreArgs> {
    #[derive(Parser)]
    #[command(name = "dynface demo --")]
    struct Cmd {
        #[command(flatten)]
        a: RestoreArgs,
    }
    let mut argv: Vec<std::ffi::OsString> = vec![
        "restore".into(),
        lq.as_os_str().into(),
        "-o".into(),
        out.as_os_str().into(),
        "--html".into(),
    ];
    argv.extend(extra.iter().map(Into::into));
    Ok(Cmd::try_parse_from(argv)
        .map_err(|e| anyhow::anyhow!("restore options after `--`: {e}"))?
        .a)
}
