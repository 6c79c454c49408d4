//! Batch runs survive faults: a kill mid-run leaves only complete outputs and a rerun
//! finishes the same set; an out-of-memory device makes the batch size drop; a failed batch
//! is reported and the next one runs; a lost device or a full disk stops the run cleanly,
//! keeping what is done. Faults are injected through `backend::fault`'s hooks.

#[path = "support/restore_cli.rs"]
mod restore_cli;

use dynface::backend::cpu::CpuBackend;
use dynface::restore::{load_models, Pipeline};
use restore_cli::{bin, report, restore_cpu, synthetic_png, tmp, weights};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn inputs(name: &str, n: u32) -> std::path::PathBuf {
    let d = tmp(name);
    for i in 0..n {
        synthetic_png(&d.join(format!("face{i:02}.png")), 40 + 4 * i, 48, 11 + i);
    }
    d
}

/// Every `.png` of `dir` (not the hidden temporaries) with its bytes.
fn outputs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".png"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// `dynface restore INP -o OUT --weights W --device cpu --quiet EXTRA...`, not yet started.
fn restore_command(inp: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("restore")
        .arg(inp)
        .arg("-o")
        .arg(out)
        .args([
            "--weights",
            weights().to_str().unwrap(),
            "--device",
            "cpu",
            "--quiet",
        ])
        .args(extra);
    c
}

fn run_with_env(
    inp: &Path,
    out: &Path,
    env: &[(&str, &str)],
    extra: &[&str],
) -> std::process::Output {
    let mut c = restore_command(inp, out, extra);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn statuses(dir: &Path) -> Vec<(String, String)> {
    let r = report(dir);
    r["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|im| {
            let name = Path::new(im["input"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, im["status"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn a_killed_run_leaves_complete_outputs_and_the_rerun_finishes_the_same_set() {
    let inp = inputs("kill-in", 6);
    let reference = tmp("kill-ref");
    let r = restore_cpu(
        inp.to_str().unwrap(),
        reference.to_str().unwrap(),
        weights().to_str().unwrap(),
        &[],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let want = outputs(&reference);
    assert_eq!(want.len(), 6);

    let out = tmp("kill-out");
    let mut child = restore_command(&inp, &out, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill (SIGKILL: no chance to clean up) as soon as the first output is there, i.e. in
    // the middle of the run.
    let t0 = Instant::now();
    while outputs(&out).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "no output after 300 s"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = outputs(&out);
    assert!(
        !partial.is_empty() && partial.len() < 6,
        "killed mid-run: {} outputs",
        partial.len()
    );
    for (name, bytes) in &partial {
        assert_eq!(
            Some(bytes),
            want.get(name),
            "{name}: a visible output must be complete"
        );
    }
    assert!(
        !out.join("report.json").exists(),
        "no report from a killed run"
    );

    let r = restore_cpu(
        inp.to_str().unwrap(),
        out.to_str().unwrap(),
        weights().to_str().unwrap(),
        &[],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(outputs(&out), want, "resumed run = uninterrupted run");
    let rep = report(&out);
    assert_eq!(rep["skipped"].as_u64(), Some(partial.len() as u64));
    assert_eq!(rep["restored"].as_u64(), Some(6 - partial.len() as u64));
    // Nothing else is left in the folder: outputs and the report only.
    let extra: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".png") && n != "report.json")
        .collect();
    assert!(extra.is_empty(), "left behind: {extra:?}");
}

#[test]
fn stale_temporaries_of_a_killed_run_are_removed_on_resume() {
    let inp = inputs("stale-in", 1);
    let out = tmp("stale-out");
    // What a run killed during its write leaves (another process id than ours).
    let stale = out.join(".face00.png.tmp999999");
    std::fs::write(&stale, b"half a png").unwrap();
    let r = restore_cpu(
        inp.to_str().unwrap(),
        out.to_str().unwrap(),
        weights().to_str().unwrap(),
        &[],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(!stale.exists());
    assert!(String::from_utf8_lossy(&r.stderr).contains("removed 1 partial output"));
    assert!(image::open(out.join("face00.png")).is_ok());
}

#[test]
fn out_of_memory_lowers_the_batch_size_and_the_run_finishes() {
    // The device's limit: everything batch 2 needs fits, batch 4's largest arena does not.
    let models = load_models(weights()).unwrap();
    let arena = |b: usize| {
        Pipeline::new(
            CpuBackend::<f32>::new(),
            &models,
            models.set.sampler_config(),
            true,
            b,
        )
        .unwrap()
        .largest_arena_bytes()
    };
    let (a2, a4) = (arena(2), arena(4));
    assert!(a4 > a2, "batch 4 needs a larger arena ({a4} vs {a2} bytes)");
    let limit = a2.to_string();

    let inp = inputs("oom-in", 5);
    let out = tmp("oom-out");
    let r = run_with_env(
        &inp,
        &out,
        &[("DYNFACE_FAULT_ALLOC_LIMIT", &limit)],
        &["--batch", "4"],
    );
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{err}");
    assert!(
        err.contains("out of memory at batch 4") && err.contains("retrying with batch 2"),
        "{err}"
    );
    let rep = report(&out);
    assert_eq!(rep["restored"], 5);
    assert_eq!(rep["failed"], 0);
    // The retried run is the run a user would have got asking for batch 2 directly.
    let direct = tmp("oom-direct");
    let r = run_with_env(&inp, &direct, &[], &["--batch", "2"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(outputs(&out), outputs(&direct));

    // At batch 1 there is nothing left to lower: each image fails with the OOM error.
    let tiny = tmp("oom-tiny");
    let r = run_with_env(
        &inp,
        &tiny,
        &[("DYNFACE_FAULT_ALLOC_LIMIT", "1024")],
        &["--batch", "2"],
    );
    assert_eq!(r.status.code(), Some(1));
    let rep = report(&tiny);
    assert_eq!(rep["failed"], 5);
    assert!(rep["images"][0]["error"]
        .as_str()
        .unwrap()
        .contains("out of memory"));
}

#[test]
fn a_failed_batch_is_reported_and_the_next_batch_runs() {
    let inp = inputs("fail-in", 3);
    let out = tmp("fail-out");
    let r = run_with_env(&inp, &out, &[("DYNFACE_FAULT_BATCH", "2:error")], &[]);
    assert_eq!(
        r.status.code(),
        Some(1),
        "a failed image makes the exit code 1"
    );
    // Inputs that are not at the network size are resized, with a warning per file.
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("warning: ") && err.contains("face00.png: resized from 40×48"),
        "{err}"
    );
    let st = statuses(&out);
    assert_eq!(
        st,
        vec![
            ("face00.png".into(), "restored".into()),
            ("face01.png".into(), "failed".into()),
            ("face02.png".into(), "restored".into()),
        ]
    );
    let rep = report(&out);
    assert!(rep["images"][1]["error"]
        .as_str()
        .unwrap()
        .contains("injected device error"));
    assert!(rep.get("stopped").is_none());
}

#[test]
fn a_lost_device_stops_the_run_cleanly_and_a_rerun_resumes() {
    let inp = inputs("lost-in", 3);
    let out = tmp("lost-out");
    let r = run_with_env(&inp, &out, &[("DYNFACE_FAULT_BATCH", "2:lost")], &[]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("stopped: the device was lost"), "{err}");
    assert_eq!(
        statuses(&out),
        vec![
            ("face00.png".into(), "restored".into()),
            ("face01.png".into(), "failed".into()),
            ("face02.png".into(), "not run".into()),
        ]
    );
    let rep = report(&out);
    assert_eq!(rep["not_run"], 1);
    assert!(rep["stopped"].as_str().unwrap().contains("device was lost"));
    assert_eq!(outputs(&out).len(), 1);

    let r = run_with_env(&inp, &out, &[], &[]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let rep = report(&out);
    assert_eq!(
        (rep["skipped"].as_u64(), rep["restored"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(outputs(&out).len(), 3);
}

#[test]
fn a_full_disk_stops_before_writing_and_says_how_much_is_needed() {
    let inp = inputs("disk-in", 2);
    let out = tmp("disk-out");
    let r = run_with_env(&inp, &out, &[("DYNFACE_FAULT_FREE_BYTES", "4096")], &[]);
    assert_eq!(r.status.code(), Some(1));
    let rep = report(&out);
    assert_eq!(rep["not_run"], 2);
    let why = rep["stopped"].as_str().unwrap();
    assert!(
        why.contains("not enough free disk space") && why.contains("MB free"),
        "{why}"
    );
    assert!(outputs(&out).is_empty());
}

#[test]
fn a_full_disk_refuses_a_checkpoint_conversion_before_writing() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pth/zip_state_dict.pth");
    let out = tmp("disk-convert").join("w.safetensors");
    let r = Command::new(bin())
        .args(["weights", "convert"])
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .env("DYNFACE_FAULT_FREE_BYTES", "4096")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success());
    assert!(
        err.contains("not enough free disk space") && err.contains("w.safetensors"),
        "{err}"
    );
    assert!(!out.exists());
    // With room, the same conversion succeeds (the check is not what failed above by chance).
    let r = Command::new(bin())
        .args(["weights", "convert"])
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(out.exists());
}
