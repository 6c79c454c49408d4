//! `dynface report merge DIR...`: joins the reports of the shards of one sharded run into one
//! report shaped like an unsharded run's, and names what is missing (shards without a report,
//! images no report mentions) and what failed.
//!
//! Reports are handled as JSON values, so fields this module does not know (added to the
//! restore report later) pass through unchanged.

use crate::degrade::load::stem_of;
use crate::restore::shard::{part_of, ShardInfo};
use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct MergeOptions {
    /// Folders holding shard reports (`report.shard-*.json`), or report files.
    pub reports: Vec<PathBuf>,
    /// The merged report (default: report.json in the first folder given).
    pub output: Option<PathBuf>,
    /// The run's inputs (files, folders, globs, as given to restore): images no report
    /// mentions are then named, with their shard.
    pub inputs: Vec<String>,
}

/// What a merge found; the merged report itself is written to `path`.
#[derive(Clone, Debug)]
pub struct MergeSummary {
    pub path: PathBuf,
    pub report: Value,
    pub missing_shards: Vec<u32>,
    pub missing_images: Vec<String>,
    pub failed_images: Vec<String>,
}

impl MergeSummary {
    /// Non-zero when anything is missing or failed.
    pub fn exit_code(&self) -> i32 {
        i32::from(
            !self.missing_shards.is_empty()
                || !self.missing_images.is_empty()
                || !self.failed_images.is_empty(),
        )
    }
}

/// The report files named by `args` (folders expand to their shard reports, sorted).
fn report_files(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = vec![];
    for a in args {
        if a.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(a)
                .with_context(|| format!("reading folder {}", a.display()))?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name().is_some_and(|n| {
                        let n = n.to_string_lossy();
                        n.starts_with("report.shard-") && n.ends_with(".json")
                    })
                })
                .collect();
            found.sort();
            if found.is_empty() {
                bail!(
                    "{}: no shard report (report.shard-*.json) in this folder",
                    a.display()
                );
            }
            files.extend(found);
        } else if a.is_file() {
            files.push(a.clone());
        } else {
            bail!("{}: no such report file or folder", a.display());
        }
    }
    Ok(files)
}

fn status_of(im: &Value) -> &str {
    im["status"].as_str().unwrap_or("")
}

fn input_of(im: &Value) -> &str {
    im["input"].as_str().unwrap_or("")
}

/// Joins the shard reports of `args.reports`, writes the merged report and says on stderr
/// what is missing or failed.
pub fn run_merge(args: &MergeOptions) -> Result<MergeSummary> {
    let files = report_files(&args.reports)?;
    let mut shards: BTreeMap<u32, (PathBuf, Value, ShardInfo)> = BTreeMap::new();
    let mut count: Option<(u32, PathBuf)> = None;
    for f in &files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a JSON report", f.display()))?;
        if !v["images"].is_array() {
            bail!(
                "{}: not a dynface restore report (no images list)",
                f.display()
            );
        }
        let info: ShardInfo = serde_json::from_value(v["shard"].clone()).with_context(|| {
            format!(
                "{}: not a shard report (no shard field); rerun restore with --shard",
                f.display()
            )
        })?;
        match &count {
            None => count = Some((info.count, f.clone())),
            Some((n, first)) if *n != info.count => bail!(
                "{} is {} but {} is of {} shards: reports of different shardings cannot be merged",
                f.display(),
                info.label(),
                first.display(),
                n
            ),
            _ => {}
        }
        if let Some((other, _, _)) = shards.get(&info.index) {
            bail!(
                "{} appears twice: {} and {}",
                info.label(),
                other.display(),
                f.display()
            );
        }
        shards.insert(info.index, (f.clone(), v, info));
    }
    let (n, _) = count.context("no reports given")?;
    let mut warnings: Vec<String> = vec![];
    let digests: BTreeSet<&str> = shards.values().map(|s| s.2.list_digest.as_str()).collect();
    if digests.len() > 1 {
        warnings.push(format!(
            "the shards saw different input lists ({} digests): files were added or removed between them",
            digests.len()
        ));
    }
    let missing_shards: Vec<u32> = (0..n).filter(|i| !shards.contains_key(i)).collect();

    let first = &shards.values().next().expect("at least one report").1;
    let mut merged = Map::new();
    // Run-wide fields: the first shard's; a difference between shards is worth a warning.
    for key in ["device", "weights", "preset", "sampler", "step", "batch"] {
        let values: BTreeSet<String> = shards.values().map(|s| s.1[key].to_string()).collect();
        if values.len() > 1 {
            warnings.push(format!(
                "shards differ in {key}: {}",
                values.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        merged.insert(key.into(), first[key].clone());
    }
    let mut images: Vec<Value> = shards
        .values()
        .flat_map(|s| s.1["images"].as_array().cloned().unwrap_or_default())
        .collect();
    images.sort_by(|a, b| input_of(a).cmp(input_of(b)));
    let count_of = |st: &str| {
        images
            .iter()
            .filter(|im| status_of(im).starts_with(st))
            .count()
    };
    let (restored, skipped, failed, not_run) = (
        count_of("restored"),
        count_of("skipped"),
        count_of("failed"),
        count_of("not run"),
    );
    let failed_images: Vec<String> = images
        .iter()
        .filter(|im| matches!(status_of(im), "failed" | "not run"))
        .map(|im| input_of(im).to_string())
        .collect();
    let stopped: Vec<String> = shards
        .values()
        .filter_map(|s| {
            s.1["stopped"]
                .as_str()
                .map(|w| format!("{}: {w}", s.2.label()))
        })
        .collect();

    // Images no report mentions: named only when the inputs are given again.
    let seen: BTreeSet<String> = images
        .iter()
        .map(|im| stem_of(Path::new(input_of(im))))
        .collect();
    let mut missing_images = vec![];
    if !args.inputs.is_empty() {
        for f in crate::restore::inputs::expand_inputs(&args.inputs)? {
            if !seen.contains(&stem_of(&f)) {
                missing_images.push(format!(
                    "{} (shard {}/{n})",
                    f.display(),
                    part_of(&stem_of(&f), n)
                ));
            }
        }
    }
    let expected = shards.values().map(|s| s.2.total_inputs).max().unwrap_or(0);

    merged.insert("images".into(), Value::Array(images));
    merged.insert("restored".into(), json!(restored));
    merged.insert("skipped".into(), json!(skipped));
    merged.insert("failed".into(), json!(failed));
    merged.insert("not_run".into(), json!(not_run));
    if !stopped.is_empty() {
        merged.insert("stopped".into(), json!(stopped.join("; ")));
    }
    // The sum over shards: the compute time spent, not the wall time of a parallel run.
    let seconds: f64 = shards
        .values()
        .filter_map(|s| s.1["seconds"].as_f64())
        .sum();
    merged.insert("seconds".into(), json!(seconds));
    merged.insert(
        "shards".into(),
        Value::Array(
            shards
                .values()
                .map(|(path, v, info)| {
                    json!({
                        "index": info.index,
                        "count": info.count,
                        "source": info.source,
                        "report": path,
                        "images": v["images"].as_array().map_or(0, Vec::len),
                        "seconds": v["seconds"],
                    })
                })
                .collect(),
        ),
    );
    merged.insert("expected_images".into(), json!(expected));
    merged.insert("missing_shards".into(), json!(missing_shards));
    merged.insert("missing_images".into(), json!(missing_images));
    merged.insert("failed_images".into(), json!(failed_images));
    merged.insert("warnings".into(), json!(warnings));
    let report = Value::Object(merged);

    let path = match &args.output {
        Some(p) => p.clone(),
        None => {
            let a = &args.reports[0];
            let dir = if a.is_dir() {
                a.clone()
            } else {
                a.parent().map(Path::to_path_buf).unwrap_or_default()
            };
            dir.join("report.json")
        }
    };
    crate::atomic_file::write_atomic(&path, serde_json::to_string_pretty(&report)?.as_bytes())
        .with_context(|| format!("writing merged report {}", path.display()))?;

    for w in &warnings {
        eprintln!("warning: {w}");
    }
    for i in &missing_shards {
        eprintln!(
            "missing: shard {i}/{n}: not among the {} report(s) found{}",
            files.len(),
            if args.inputs.is_empty() {
                " (pass --inputs with the run's inputs to name its images)"
            } else {
                ""
            }
        );
    }
    for m in &missing_images {
        eprintln!("missing: {m}: in no report");
    }
    for f in &failed_images {
        eprintln!("failed: {f}");
    }
    let total = report["images"].as_array().map_or(0, Vec::len);
    eprintln!(
        "merged {} of {n} shard reports ({total} of {expected} images): restored {restored}, skipped {skipped}, \
         failed {failed}, not run {not_run}; report: {}",
        shards.len(),
        path.display()
    );
    Ok(MergeSummary {
        path,
        report,
        missing_shards,
        missing_images,
        failed_images,
    })
}
