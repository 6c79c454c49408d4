//! A sharded run is the unsharded run cut in parts: three shard processes (one told its part
//! by `--shard`, one by Slurm's array variables, one by a Kubernetes Indexed Job's index),
//! running at once into one folder, write exactly the files and bytes of one unsharded run;
//! `dynface report merge` gives the unsharded report up to timings and names a missing
//! shard; `--dry-run` lists a shard's images; a shard resumes on its own.

#[path = "support/restore_cli.rs"]
mod restore_cli;

use restore_cli::{bin, pngs, report, synthetic_png, tmp, weights};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

const SCHEDULER_VARS: [&str; 9] = [
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_STEP",
    "SLURM_ARRAY_TASK_COUNT",
    "JOB_COMPLETION_INDEX",
    "DYNFACE_SHARD_COUNT",
    "CLOUD_RUN_TASK_INDEX",
    "CLOUD_RUN_TASK_COUNT",
    "AWS_BATCH_JOB_ARRAY_INDEX",
];

/// `dynface ARGS...` with no scheduler variable inherited, plus `env`.
fn dynface(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(bin());
    c.args(args);
    for v in SCHEDULER_VARS {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn restore_args<'a>(inp: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "restore",
        inp,
        "-o",
        out,
        "--weights",
        weights().to_str().unwrap(),
        "--device",
        "cpu",
        "--quiet",
        // Few steps keep the test fast; the sharding does not depend on them.
        "--sampler",
        "ddim8",
    ];
    a.extend_from_slice(extra);
    a
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    err
}

/// `v` without any `seconds` field, at any depth (timings differ between runs), and with
/// output paths reduced to file names (the two runs write to different folders).
fn untimed(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| k.as_str() != "seconds")
                .map(|(k, v)| match (k.as_str(), v.as_str()) {
                    ("output", Some(p)) => {
                        let name = Path::new(p).file_name().unwrap().to_string_lossy();
                        (k.clone(), Value::String(name.into_owned()))
                    }
                    _ => (k.clone(), untimed(v)),
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(untimed).collect()),
        _ => v.clone(),
    }
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn names_in(r: &Value) -> BTreeSet<String> {
    r["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|im| {
            Path::new(im["input"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[test]
fn three_shards_make_the_unsharded_run_and_merge_into_its_report() {
    let inp = tmp("shard-in");
    // Six names of which each of the 3 parts holds at least one (asserted below).
    for i in 0..6u32 {
        synthetic_png(&inp.join(format!("face{i:02}.png")), 36 + 4 * i, 40, 5 + i);
    }
    let inp_s = inp.to_str().unwrap();
    let all = tmp("shard-all");
    ok(
        &dynface(&restore_args(inp_s, all.to_str().unwrap(), &[]), &[])
            .output()
            .unwrap(),
    );
    let unsharded = report(&all);
    assert_eq!(unsharded["restored"], 6);

    let sh = tmp("shard-parts");
    let sh_s = sh.to_str().unwrap();
    // The three tasks run at once into the same folder, as on a cluster.
    let children: Vec<_> = [
        dynface(&restore_args(inp_s, sh_s, &["--shard", "0/3"]), &[]),
        dynface(
            &restore_args(inp_s, sh_s, &[]),
            &[
                ("SLURM_ARRAY_TASK_ID", "11"),
                ("SLURM_ARRAY_TASK_MIN", "10"),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
            ],
        ),
        dynface(
            &restore_args(inp_s, sh_s, &[]),
            &[("JOB_COMPLETION_INDEX", "2"), ("DYNFACE_SHARD_COUNT", "3")],
        ),
    ]
    .into_iter()
    .map(|mut c| c.stderr(std::process::Stdio::piped()).spawn().unwrap())
    .collect();
    let errs: Vec<String> = children
        .into_iter()
        .map(|c| ok(&c.wait_with_output().unwrap()))
        .collect();
    assert!(
        errs[0].contains("shard 0/3 (from --shard 0/3)"),
        "{}",
        errs[0]
    );
    assert!(
        errs[1].contains("shard 1/3 (from Slurm array: SLURM_ARRAY_TASK_ID=11"),
        "{}",
        errs[1]
    );
    assert!(
        errs[2].contains("shard 2/3 (from Kubernetes Indexed Job: JOB_COMPLETION_INDEX=2"),
        "{}",
        errs[2]
    );

    // Exactly the files and bytes of the unsharded run.
    assert_eq!(pngs(&sh), pngs(&all));
    let parts: Vec<Value> = (0..3)
        .map(|i| read_json(&sh.join(format!("report.shard-{i:04}-of-0003.json"))))
        .collect();
    for (i, p) in parts.iter().enumerate() {
        assert!(p["restored"].as_u64().unwrap() >= 1, "shard {i} is empty");
        assert_eq!(p["shard"]["index"], i as u64);
    }

    // The merge is the unsharded report up to timings (and the fields a merge adds).
    let m = dynface(&["report", "merge", sh_s], &[]).output().unwrap();
    let merr = ok(&m);
    assert!(
        merr.contains("merged 3 of 3 shard reports (6 of 6 images)"),
        "{merr}"
    );
    let merged = read_json(&sh.join("report.json"));
    for (k, v) in unsharded.as_object().unwrap() {
        if k == "seconds" {
            continue;
        }
        assert_eq!(untimed(&merged[k]), untimed(v), "field {k}");
    }
    assert_eq!(merged["missing_shards"], serde_json::json!([]));

    // --dry-run lists shard 1's images, the ones its report holds, and runs nothing.
    let dry = tmp("shard-dry");
    let d = dynface(
        &restore_args(
            inp_s,
            dry.to_str().unwrap(),
            &["--shard", "1/3", "--dry-run"],
        ),
        &[],
    )
    .output()
    .unwrap();
    ok(&d);
    let listed: BTreeSet<String> = String::from_utf8_lossy(&d.stdout)
        .lines()
        .map(|l| {
            let input = l.split('\t').nth(1).unwrap();
            assert!(l.starts_with("restore\t"), "{l}");
            Path::new(input)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(listed, names_in(&parts[1]));
    assert!(pngs(&dry).is_empty());

    // A missing shard is named, with its images when the inputs are given; exit code 1.
    let two = tmp("shard-two");
    for i in [0, 2] {
        let n = format!("report.shard-{i:04}-of-0003.json");
        std::fs::copy(sh.join(&n), two.join(&n)).unwrap();
    }
    let m = dynface(
        &["report", "merge", two.to_str().unwrap(), "--inputs", inp_s],
        &[],
    )
    .output()
    .unwrap();
    assert_eq!(m.status.code(), Some(1));
    let merr = String::from_utf8_lossy(&m.stderr);
    assert!(merr.contains("missing: shard 1/3"), "{merr}");
    for name in names_in(&parts[1]) {
        assert!(
            merr.contains(&format!("{name} (shard 1/3)")),
            "{name} not named: {merr}"
        );
    }
    let partial = read_json(&two.join("report.json"));
    assert_eq!(partial["missing_shards"], serde_json::json!([1]));

    // Resume per shard: rerunning shard 1 skips its images and rewrites only its report.
    let before = std::fs::read(sh.join("report.shard-0000-of-0003.json")).unwrap();
    ok(
        &dynface(&restore_args(inp_s, sh_s, &["--shard", "1/3"]), &[])
            .output()
            .unwrap(),
    );
    let again = read_json(&sh.join("report.shard-0001-of-0003.json"));
    assert_eq!(again["skipped"], parts[1]["restored"]);
    assert_eq!(again["restored"], 0);
    assert_eq!(
        std::fs::read(sh.join("report.shard-0000-of-0003.json")).unwrap(),
        before
    );
}

#[test]
fn a_kubernetes_index_without_a_count_is_refused_with_what_to_pass() {
    let inp = tmp("shard-k8s-in");
    synthetic_png(&inp.join("a.png"), 32, 32, 1);
    let out = tmp("shard-k8s-out");
    let o = dynface(
        &restore_args(inp.to_str().unwrap(), out.to_str().unwrap(), &[]),
        &[("JOB_COMPLETION_INDEX", "1")],
    )
    .output()
    .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("--shard-count"), "{e}");
}
