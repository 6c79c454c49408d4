//! End to end with the tiny random-weight model set: the pipeline runs on the CPU, is
//! deterministic for a seed, writes the report, and survives bad files in a batch.

#[path = "support/restore_cli.rs"]
mod restore_cli;

use restore_cli::{report, restore, restore_cpu, synthetic_png, tmp, weights};
use std::path::Path;

#[test]
fn restores_deterministically_and_reports_every_stage() {
    let inp = tmp("det-in");
    synthetic_png(&inp.join("a.png"), 64, 64, 1);
    synthetic_png(&inp.join("b.png"), 80, 72, 2);
    let w = weights().to_str().unwrap();
    let o1 = tmp("det-out1");
    let o2 = tmp("det-out2");
    let dump = tmp("det-dump");
    for (o, extra) in [(&o1, vec!["--dump", dump.to_str().unwrap()]), (&o2, vec![])] {
        let mut extra = extra;
        extra.extend(["--seed", "7"]);
        let out = restore_cpu(inp.to_str().unwrap(), o.to_str().unwrap(), w, &extra);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for name in ["a.png", "b.png"] {
        let x = std::fs::read(o1.join(name)).unwrap();
        assert_eq!(
            x,
            std::fs::read(o2.join(name)).unwrap(),
            "{name}: same seed, different output"
        );
        let img = image::open(o1.join(name)).unwrap();
        let (iw, ih) = image::open(inp.join(name)).unwrap().to_rgb8().dimensions();
        assert_eq!(
            (img.width(), img.height()),
            (iw, ih),
            "output keeps the input size"
        );
    }
    let r = report(&o1);
    assert_eq!(r["restored"], 2);
    for im in r["images"].as_array().unwrap() {
        let t = &im["trace"];
        let s0 = t["sigma_initial"].as_array().unwrap();
        assert_eq!(s0.len(), 3, "three guidance images by default");
        let sig: Vec<f64> = s0.iter().map(|v| v.as_f64().unwrap()).collect();
        assert!(
            sig[0] >= sig[1] && sig[1] >= sig[2] && sig[2] >= 0.1,
            "σ_i decreasing: {sig:?}"
        );
        let steps: Vec<u64> = t["start_steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert!(
            steps.windows(2).all(|p| p[0] >= p[1]) && steps[0] < 1000,
            "t_i: {steps:?}"
        );
        for v in t["sigma_final"].as_array().unwrap() {
            let v = v.as_f64().unwrap();
            assert!((0.1..=15.0).contains(&v));
        }
    }
    for f in ["rm.png", "guidance_1.png", "guidance_3.png", "stages.json"] {
        assert!(dump.join("a").join(f).exists(), "dump lacks {f}");
    }
    // Each image has its own random stream: restored together in one batch, both come out
    // as they do alone (up to f32 rounding of batched kernels: at most one 8-bit level).
    let o4 = tmp("det-out4");
    let out = restore_cpu(
        inp.to_str().unwrap(),
        o4.to_str().unwrap(),
        w,
        &["--seed", "7", "--batch", "2"],
    );
    assert!(out.status.success());
    for name in ["a.png", "b.png"] {
        let px = |d: &Path| image::open(d.join(name)).unwrap().to_rgb8().into_raw();
        let (alone, batched) = (px(&o2), px(&o4));
        let max = alone
            .iter()
            .zip(&batched)
            .map(|(a, b)| (*a as i32 - *b as i32).abs())
            .max()
            .unwrap();
        assert!(
            max <= 1,
            "{name}: batch of 2 vs alone differ by {max} levels"
        );
    }
    // A different seed changes the result.
    let o3 = tmp("det-out3");
    let out = restore_cpu(
        inp.to_str().unwrap(),
        o3.to_str().unwrap(),
        w,
        &["--seed", "8"],
    );
    assert!(out.status.success());
    assert_ne!(
        std::fs::read(o1.join("a.png")).unwrap(),
        std::fs::read(o3.join("a.png")).unwrap()
    );
}

/// The sampler's update on the host (f64 reference) and in the step graph (f32 on this
/// backend) restore the same image: same noise, same steps, only f32 rounding differs.
#[test]
fn device_step_and_host_step_restore_the_same_image() {
    let inp = tmp("step-in");
    synthetic_png(&inp.join("a.png"), 64, 64, 4);
    let w = weights().to_str().unwrap();
    let mut pixels = vec![];
    for on in ["host", "device"] {
        let o = tmp(&format!("step-out-{on}"));
        let out = restore_cpu(
            inp.to_str().unwrap(),
            o.to_str().unwrap(),
            w,
            &["--seed", "3", "--step-on", on],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let step = report(&o)["step"].as_str().unwrap().to_string();
        assert!(step.starts_with(on), "{on}: report says {step}");
        pixels.push(image::open(o.join("a.png")).unwrap().to_rgb8().into_raw());
    }
    let diffs: Vec<i32> = pixels[0]
        .iter()
        .zip(&pixels[1])
        .map(|(a, b)| (*a as i32 - *b as i32).abs())
        .collect();
    let max = diffs.iter().max().copied().unwrap_or(0);
    let differ = diffs.iter().filter(|d| **d > 0).count();
    println!(
        "host vs device step: {differ} of {} 8-bit values differ, by at most {max}",
        diffs.len()
    );
    assert!(max <= 1, "host and device step differ by {max} levels");
    assert!(differ * 100 <= diffs.len(), "{differ} values differ");
    let bad = restore_cpu(inp.to_str().unwrap(), "unused", w, &["--step-on", "gpu"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--step-on"));
}

#[test]
fn a_bad_file_is_reported_and_the_rest_still_run() {
    let inp = tmp("bad-in");
    synthetic_png(&inp.join("good.png"), 64, 64, 3);
    std::fs::write(
        inp.join("corrupt.png"),
        b"\x89PNG\r\n\x1a\n this is not really a png",
    )
    .unwrap();
    std::fs::write(inp.join("notes.png"), b"plain text, not an image").unwrap();
    let o = tmp("bad-out");
    let out = restore_cpu(
        inp.to_str().unwrap(),
        o.to_str().unwrap(),
        weights().to_str().unwrap(),
        &[],
    );
    assert!(
        !out.status.success(),
        "failures must give a non-zero exit code"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("corrupt.png") && err.contains("notes.png"),
        "{err}"
    );
    assert!(o.join("good.png").exists());
    let names: Vec<String> = std::fs::read_dir(&o)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("corrupt") || n.starts_with("notes") || n.contains(".tmp")),
        "partial outputs left: {names:?}"
    );
    let r = report(&o);
    assert_eq!(
        (r["restored"].as_u64(), r["failed"].as_u64()),
        (Some(1), Some(2))
    );
    // A rerun resumes: the finished image is skipped, not redone.
    let out = restore_cpu(
        inp.join("good.png").to_str().unwrap(),
        o.to_str().unwrap(),
        weights().to_str().unwrap(),
        &[],
    );
    assert!(out.status.success());
    assert_eq!(report(&o)["skipped"], 1);
}

#[test]
fn an_unwritable_output_folder_fails_that_image_cleanly() {
    let inp = tmp("ro-in");
    synthetic_png(&inp.join("x.png"), 64, 64, 4);
    // A file where the output folder should be: nothing can be created under it.
    let blocker = tmp("ro-parent").join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let out = restore_cpu(
        inp.to_str().unwrap(),
        blocker.join("out").to_str().unwrap(),
        weights().to_str().unwrap(),
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot create output folder"), "{err}");
}

#[test]
fn missing_weights_name_the_file_its_source_and_its_place() {
    let inp = tmp("nw-in");
    synthetic_png(&inp.join("x.png"), 64, 64, 5);
    let empty = tmp("nw-weights");
    let o = tmp("nw-out");
    let out = restore_cpu(
        inp.to_str().unwrap(),
        o.to_str().unwrap(),
        empty.to_str().unwrap(),
        &["--no-download"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("iddpm_ffhq512_ema500000"), "{err}");
    assert!(
        err.contains("https://github.com/zsyOAOA/DifFace/releases/download/V1.0/"),
        "{err}"
    );
    assert!(err.contains(empty.to_str().unwrap()), "{err}");
}

#[test]
fn bf16_precision_on_the_cpu_is_a_clear_error_and_writes_nothing() {
    let inp = tmp("bf16-in");
    synthetic_png(&inp.join("x.png"), 64, 64, 6);
    let o = tmp("bf16-out");
    let w = weights().to_str().unwrap();
    let out = restore_cpu(
        inp.to_str().unwrap(),
        o.to_str().unwrap(),
        w,
        &["--precision", "bf16"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--precision bf16 needs a GPU"), "{err}");
    assert!(!o.join("x.png").exists(), "nothing may be restored");
    // `--device auto` that falls back to the CPU refuses bf16 the same way.
    if dynface::backend::device::select_device("cuda").is_err() {
        let out = restore(&[
            inp.to_str().unwrap(),
            "-o",
            o.to_str().unwrap(),
            "--weights",
            w,
            "--device",
            "auto",
            "--quiet",
            "--precision",
            "bf16",
        ]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--device auto: --precision bf16 needs a GPU"),
            "{err}"
        );
        assert!(!o.join("x.png").exists(), "nothing may be restored");
    }
    // An unknown precision is refused by the argument parser.
    let out = restore_cpu(
        inp.to_str().unwrap(),
        o.to_str().unwrap(),
        w,
        &["--precision", "fp16"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("fp32"));
}

#[test]
fn the_twelve_real_photos_go_through_the_whole_pipeline() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/faces/real_lq");
    if !dir.is_dir() {
        dynface::check::skip::skip(
            "the_twelve_real_photos_go_through_the_whole_pipeline",
            dynface::check::skip::SkipReason::NoSharedData,
            &format!(
                "{} not found (the shared face set is outside the repository)",
                dir.display()
            ),
        );
        return;
    }
    let o = tmp("real");
    let out = restore_cpu(
        dir.to_str().unwrap(),
        o.to_str().unwrap(),
        weights().to_str().unwrap(),
        &["--sampler", "ddim10", "--batch", "4"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report(&o);
    assert_eq!(r["restored"], 12);
    assert_eq!(r["failed"], 0);
}
