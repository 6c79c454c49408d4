//! `dynface report merge|html`: the flags of the report commands.

use crate::report::{HtmlOptions, MergeOptions};
use std::path::PathBuf;

#[derive(clap::Args, Clone, Debug)]
pub struct MergeArgs {
    /// Folders holding shard reports (`report.shard-*.json`), or report files.
    #[arg(required = true)]
    pub reports: Vec<PathBuf>,
    /// The merged report (default: report.json in the first folder given).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// The run's inputs (files, folders, globs, as given to restore): images no report
    /// mentions are then named, with their shard.
    #[arg(long, num_args = 1..)]
    pub inputs: Vec<String>,
}

impl MergeArgs {
    pub fn options(&self) -> MergeOptions {
        MergeOptions {
            reports: self.reports.clone(),
            output: self.output.clone(),
            inputs: self.inputs.clone(),
        }
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct HtmlArgs {
    /// A report written by `dynface restore` (or `report merge`).
    pub report: PathBuf,
    /// The run's `--dump` folder (guidance images, σ and loss per step); default: `stages`
    /// beside the report, when it exists.
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// The page (default: report.html beside the report).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

impl HtmlArgs {
    pub fn options(&self) -> HtmlOptions {
        HtmlOptions {
            report: self.report.clone(),
            dump: self.dump.clone(),
            output: self.output.clone(),
        }
    }
}
