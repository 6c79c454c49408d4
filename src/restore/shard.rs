//! Sharding one input list over the tasks of a cluster job (Slurm arrays, Kubernetes Indexed
//! Jobs, Cloud Run, AWS Batch): each task restores the part of the sorted input list that is
//! its own, writes its own report, and `dynface report merge` joins the reports.
//!
//! An image's part depends only on its output name (the file stem, the same key its seed comes
//! from), through a jump consistent hash (Lamping & Veach, 2014): adding files never moves the
//! others to another part, going from N to N+1 parts moves only about 1/(N+1) of them, and the
//! assignment does not depend on the folder the job mounts the inputs at.

use crate::degrade::load::stem_of;
use crate::degrade::seed::{fnv1a64, mix64};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which part of the inputs a run should restore, as the user asked (`--shard I/N`,
/// `--shard-count N`); `None` leaves it to the scheduler's variables.
#[derive(Clone, Debug, Default)]
pub struct ShardOptions {
    pub shard: Option<String>,
    pub shard_count: Option<u32>,
}

/// Which part of the input list a run restores, and where that came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// 0-based part index.
    pub index: u32,
    /// Number of parts.
    pub count: u32,
    /// What set it: `--shard`, or the scheduler's variables with their values.
    pub source: String,
    /// Images in the whole (unsharded) input list.
    pub total_inputs: usize,
    /// A digest of the whole list's names: shards that saw different lists cannot be merged
    /// into one run without saying so.
    pub list_digest: String,
}

impl ShardInfo {
    /// `shard 1/3`, as messages name it.
    pub fn label(&self) -> String {
        format!("shard {}/{}", self.index, self.count)
    }

    /// The report file name a shard writes by default, so shards sharing one output folder
    /// never overwrite each other's report.
    pub fn report_name(&self) -> String {
        format!("report.shard-{:04}-of-{:04}.json", self.index, self.count)
    }
}

/// Jump consistent hash: the bucket in `0..n` of `key`.
pub fn jump_hash(mut key: u64, n: u32) -> u32 {
    let (mut b, mut j) = (-1i64, 0i64);
    while j < i64::from(n) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b.max(0) as u32
}

/// The part (of `count`) that the image named `stem` belongs to.
pub fn part_of(stem: &str, count: u32) -> u32 {
    jump_hash(mix64(fnv1a64(stem.as_bytes())), count)
}

/// A digest of the stems of the whole list (order-independent: the list is sorted first).
pub fn list_digest(files: &[PathBuf]) -> String {
    let mut stems: Vec<String> = files.iter().map(|f| stem_of(f)).collect();
    stems.sort();
    let mut h = 0u64;
    for s in &stems {
        h = mix64(h ^ fnv1a64(s.as_bytes()));
    }
    format!("{:016x}-{}", h, stems.len())
}

fn parse_pair(s: &str) -> Result<(u32, u32)> {
    let (i, n) = s
        .split_once('/')
        .with_context(|| format!("--shard {s}: expected I/N, e.g. 0/4"))?;
    let i: u32 = i
        .trim()
        .parse()
        .with_context(|| format!("--shard {s}: I is not a number"))?;
    let n: u32 = n
        .trim()
        .parse()
        .with_context(|| format!("--shard {s}: N is not a number"))?;
    Ok((i, n))
}

fn checked(index: i64, count: i64, source: String) -> Result<(u32, u32, String)> {
    if count < 1 {
        bail!("{source}: the number of shards must be at least 1");
    }
    if index < 0 || index >= count {
        bail!(
            "{source}: shard index {index} is outside 0..{count} (indices are 0-based: 0 to {})",
            count - 1
        );
    }
    Ok((index as u32, count as u32, source))
}

/// Finds the shard from the flags, else from the scheduler's variables (read with `env`, so
/// tests pass their own). `None`: no sharding.
pub fn resolve(
    args: &ShardOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<(u32, u32, String)>> {
    let num = |name: &str| -> Result<Option<i64>> {
        match env(name) {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .with_context(|| format!("{name}={v} is not a number")),
        }
    };
    let count_flag = match args.shard_count {
        Some(n) => Some((i64::from(n), "--shard-count".to_string())),
        None => num("DYNFACE_SHARD_COUNT")?.map(|n| (n, format!("DYNFACE_SHARD_COUNT={n}"))),
    };
    if let Some(s) = &args.shard {
        let (i, n) = parse_pair(s)?;
        if let Some((c, from)) = &count_flag {
            if *c != i64::from(n) {
                bail!("--shard {s} disagrees with {from}");
            }
        }
        return checked(i.into(), n.into(), format!("--shard {s}")).map(Some);
    }
    if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
        let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let step = num("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
        let count = num("SLURM_ARRAY_TASK_COUNT")?.context(
            "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; pass --shard I/N",
        )?;
        let source = format!(
            "Slurm array: SLURM_ARRAY_TASK_ID={id} (- SLURM_ARRAY_TASK_MIN={min}{}), SLURM_ARRAY_TASK_COUNT={count}",
            if step > 1 { format!(", / SLURM_ARRAY_TASK_STEP={step}") } else { String::new() }
        );
        return checked((id - min) / step, count, source).map(Some);
    }
    if let Some(i) = num("CLOUD_RUN_TASK_INDEX")? {
        let count = num("CLOUD_RUN_TASK_COUNT")?
            .context("CLOUD_RUN_TASK_INDEX is set but CLOUD_RUN_TASK_COUNT is not")?;
        let source =
            format!("Cloud Run job: CLOUD_RUN_TASK_INDEX={i}, CLOUD_RUN_TASK_COUNT={count}");
        return checked(i, count, source).map(Some);
    }
    for (var, what, count_hint) in [
        (
            "JOB_COMPLETION_INDEX",
            "Kubernetes Indexed Job",
            "the Job's completions",
        ),
        (
            "AWS_BATCH_JOB_ARRAY_INDEX",
            "AWS Batch array job",
            "the array size",
        ),
    ] {
        if let Some(i) = num(var)? {
            let Some((count, from)) = count_flag else {
                bail!(
                    "{var}={i} is set ({what}) but the number of shards is not: pass \
                     --shard-count N or set DYNFACE_SHARD_COUNT to {count_hint} \
                     (or --shard 0/1 to restore everything here)"
                );
            };
            return checked(i, count, format!("{what}: {var}={i}, {from}")).map(Some);
        }
    }
    Ok(None)
}

/// The files of part `index` of `count`, in the list's order.
pub fn select(files: &[PathBuf], index: u32, count: u32) -> Vec<PathBuf> {
    files
        .iter()
        .filter(|f| part_of(&stem_of(f), count) == index)
        .cloned()
        .collect()
}

/// Resolves the shard for `files` (the whole sorted list) from the flags or the process
/// environment, says on stderr which it is and where it came from, and returns this
/// shard's files with its description (`None` when not sharded).
pub fn apply(
    args: &ShardOptions,
    files: Vec<PathBuf>,
) -> Result<(Vec<PathBuf>, Option<ShardInfo>)> {
    let Some((index, count, source)) = resolve(args, &|k| std::env::var(k).ok())? else {
        return Ok((files, None));
    };
    let info = ShardInfo {
        index,
        count,
        source,
        total_inputs: files.len(),
        list_digest: list_digest(&files),
    };
    let mine = select(&files, index, count);
    eprintln!(
        "{} (from {}): {} of {} images",
        info.label(),
        info.source,
        mine.len(),
        files.len()
    );
    Ok((mine, Some(info)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn args(shard: Option<&str>, count: Option<u32>) -> ShardOptions {
        ShardOptions {
            shard: shard.map(str::to_string),
            shard_count: count,
        }
    }

    #[test]
    fn flag_beats_the_scheduler_and_is_checked() {
        let slurm = env_of(&[
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_COUNT", "9"),
        ]);
        let (i, n, src) = resolve(&args(Some("1/3"), None), &slurm).unwrap().unwrap();
        assert_eq!((i, n, src.as_str()), (1, 3, "--shard 1/3"));
        for bad in ["3/3", "1", "a/3", "0/0", "-1/3"] {
            let e = resolve(&args(Some(bad), None), &slurm).unwrap_err();
            assert!(format!("{e:#}").contains("--shard"), "{bad}: {e:#}");
        }
        assert!(resolve(&args(Some("1/3"), Some(4)), &slurm).is_err());
    }

    #[test]
    fn slurm_ids_are_taken_relative_to_the_array_minimum() {
        let env = env_of(&[
            ("SLURM_ARRAY_TASK_ID", "12"),
            ("SLURM_ARRAY_TASK_MIN", "10"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        let (i, n, src) = resolve(&args(None, None), &env).unwrap().unwrap();
        assert_eq!((i, n), (2, 4));
        assert!(src.contains("SLURM_ARRAY_TASK_ID=12"), "{src}");
        // --array=0-30:10 → IDs 0, 10, 20, 30 are tasks 0..4.
        let stepped = env_of(&[
            ("SLURM_ARRAY_TASK_ID", "20"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_STEP", "10"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(resolve(&args(None, None), &stepped).unwrap().unwrap().0, 2);
    }

    #[test]
    fn kubernetes_needs_a_count_from_a_flag_or_the_environment() {
        let k8s = env_of(&[("JOB_COMPLETION_INDEX", "2")]);
        let e = resolve(&args(None, None), &k8s).unwrap_err();
        assert!(format!("{e}").contains("--shard-count"), "{e}");
        let (i, n, src) = resolve(&args(None, Some(5)), &k8s).unwrap().unwrap();
        assert_eq!((i, n), (2, 5));
        assert!(src.contains("Kubernetes Indexed Job"), "{src}");
        let k8s_env = env_of(&[("JOB_COMPLETION_INDEX", "4"), ("DYNFACE_SHARD_COUNT", "5")]);
        assert_eq!(resolve(&args(None, None), &k8s_env).unwrap().unwrap().0, 4);
        let out_of_range = env_of(&[("JOB_COMPLETION_INDEX", "5"), ("DYNFACE_SHARD_COUNT", "5")]);
        assert!(resolve(&args(None, None), &out_of_range).is_err());
        assert!(resolve(&args(None, None), &env_of(&[])).unwrap().is_none());
    }

    #[test]
    fn parts_cover_the_list_once_and_added_files_move_nothing() {
        let names: Vec<PathBuf> = (0..400)
            .map(|i| PathBuf::from(format!("/in/face{i:04}.png")))
            .collect();
        let n = 5;
        let parts: Vec<Vec<PathBuf>> = (0..n).map(|i| select(&names, i, n)).collect();
        let mut all: Vec<PathBuf> = parts.concat();
        all.sort();
        assert_eq!(all, names, "every file in exactly one part");
        // Balanced to binomial noise: 80 expected per part, sd ≈ 8.
        for p in &parts {
            assert!((50..=110).contains(&p.len()), "{}", p.len());
        }
        // The folder does not matter, only the name.
        assert_eq!(
            part_of(&stem_of(&PathBuf::from("/a/face0001.png")), n),
            part_of(&stem_of(&PathBuf::from("/mnt/b/face0001.png")), n)
        );
        // One more part: the files that move all go to the new part.
        for f in &names {
            let (a, b) = (part_of(&stem_of(f), n), part_of(&stem_of(f), n + 1));
            assert!(a == b || b == n, "{} moved {a} -> {b}", f.display());
        }
        // A different list gives a different digest; the order does not.
        let mut rev = names.clone();
        rev.reverse();
        assert_eq!(list_digest(&names), list_digest(&rev));
        assert_ne!(list_digest(&names), list_digest(&names[1..]));
    }
}
