//! `train sde` end to end on tiny synthetic faces: resume after a stop continues bit-exactly
//! (same loss log, same final weights and optimiser state as an uninterrupted run), and the
//! run refuses what would lose work or mix configs.

use dynface::models::sde::SdeConfig;
use dynface::train::checkpoint;
use dynface::train::log;
use dynface::train::sde::{self, RunOptions, SdeTrainConfig, CHECKPOINT, METRICS, WEIGHTS};
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dynface_train_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Six 40×40 "faces": smooth random colour fields with some sharp edges, so blur matters.
fn faces(dir: &Path) {
    use rand::Rng;
    let mut rng = dynface::tensor::random::rng(42);
    for k in 0..6 {
        let (a, b): (f32, f32) = (rng.gen_range(0.0..6.0), rng.gen_range(0.0..6.0));
        let img = image::RgbImage::from_fn(40, 40, |x, y| {
            let v = |c: f32| {
                let s = ((x as f32 * 0.3 + a + c).sin() * (y as f32 * 0.2 + b).cos()) * 0.5 + 0.5;
                let edge = if (x / 5 + y / 7) % 2 == 0 { 0.3 } else { 0.0 };
                ((s * 0.7 + edge) * 255.0).clamp(0.0, 255.0) as u8
            };
            image::Rgb([v(0.0), v(1.0), v(2.0)])
        });
        img.save(dir.join(format!("face{k}.png"))).unwrap();
    }
}

fn config(faces: &Path) -> SdeTrainConfig {
    SdeTrainConfig {
        train_dir: faces.to_path_buf(),
        holdout_every: 3,
        crop: 16,
        batch: 3,
        steps: 6,
        warmup: 2,
        model: SdeConfig {
            layers: vec![(4, 1), (6, 2), (8, 2)],
            hidden: 8,
            ..SdeConfig::default()
        },
        checkpoint_every: 2,
        val_every: 3,
        val_sigmas: vec![1.0, 4.0],
        ..SdeTrainConfig::default()
    }
}

fn quiet() -> RunOptions {
    RunOptions {
        quiet: true,
        ..RunOptions::default()
    }
}

/// The deterministic fields of each log record (timings differ run to run).
fn losses(dir: &Path) -> Vec<String> {
    log::read(&dir.join(METRICS))
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {} {}",
                r["step"], r["loss"], r["lr"], r["grad_norm"], r["val_mae"], r["val_spearman"]
            )
        })
        .collect()
}

#[test]
fn resume_after_a_stop_is_bit_exact_with_an_uninterrupted_run() {
    let root = tmp("resume");
    let fdir = root.join("faces");
    std::fs::create_dir_all(&fdir).unwrap();
    faces(&fdir);
    let cfg = config(&fdir);

    let full = root.join("full");
    let s = sde::run(&cfg, &full, &quiet()).unwrap();
    assert_eq!((s.steps_run, s.final_step), (6, 6));

    // Stopped after 5 steps: the last checkpoint is at step 4, and the log has a line for
    // step 4 that the resume must drop and redo.
    let cut = root.join("cut");
    let opts = RunOptions {
        stop_after: Some(5),
        ..quiet()
    };
    let s = sde::run(&cfg, &cut, &opts).unwrap();
    assert_eq!(s.final_step, 5);
    assert!(
        !cut.join(WEIGHTS).exists(),
        "no final weights before the end"
    );
    let resumed = RunOptions {
        resume: true,
        ..quiet()
    };
    let s = sde::run(&cfg, &cut, &resumed).unwrap();
    assert_eq!(
        (s.steps_run, s.final_step),
        (2, 6),
        "resumed from the step-4 checkpoint"
    );

    let (a, b) = (losses(&full), losses(&cut));
    assert_eq!(
        a.len(),
        7,
        "one validation line at step 0 and six steps: {a:?}"
    );
    assert_eq!(a, b);
    let (sa, _) = checkpoint::load(&full.join(CHECKPOINT), cfg.adamw.clone()).unwrap();
    let (sb, _) = checkpoint::load(&cut.join(CHECKPOINT), cfg.adamw.clone()).unwrap();
    assert_eq!(sa, sb, "weights, EMA, AdamW moments and step are identical");
    // The exported weights hold the same tensors (the header's metadata order may differ).
    let (wa, wb) = (
        dynface::weights::load_safetensors(&full.join(WEIGHTS)).unwrap(),
        dynface::weights::load_safetensors(&cut.join(WEIGHTS)).unwrap(),
    );
    assert_eq!(wa.len(), wb.len());
    for (name, t) in wa.iter() {
        assert!(wb.get(name) == Some(t), "exported {name} differs");
    }
    // Training moved the weights and the running statistics.
    let init = sde::init_weights(&cfg);
    assert_ne!(
        init["features.0.conv.weight"],
        sa.model["features.0.conv.weight"]
    );
    assert_ne!(
        init["features.0.bn.running_var"],
        sa.model["features.0.bn.running_var"]
    );
    assert!(full.join("loss.svg").exists());
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn refuses_to_overwrite_a_run_or_resume_with_another_config() {
    let root = tmp("refuse");
    let fdir = root.join("faces");
    std::fs::create_dir_all(&fdir).unwrap();
    faces(&fdir);
    let mut cfg = config(&fdir);
    cfg.steps = 2;
    let out = root.join("run");
    sde::run(&cfg, &out, &quiet()).unwrap();
    let e = sde::run(&cfg, &out, &quiet()).unwrap_err().to_string();
    assert!(e.contains("--resume"), "{e}");
    cfg.lr *= 2.0;
    let resumed = RunOptions {
        resume: true,
        ..quiet()
    };
    let e = sde::run(&cfg, &out, &resumed).unwrap_err().to_string();
    assert!(e.contains("different config"), "{e}");
    // A config with a typo is refused by name.
    let p = root.join("bad.json");
    std::fs::write(&p, r#"{"stpes": 3}"#).unwrap();
    let e = format!("{:#}", SdeTrainConfig::from_file(&p).unwrap_err());
    assert!(e.contains("stpes"), "{e}");
    // A crop larger than the faces.
    let mut big = config(&fdir);
    big.crop = 64;
    let e = sde::run(&big, &root.join("big"), &quiet())
        .unwrap_err()
        .to_string();
    assert!(e.contains("smaller than the crop"), "{e}");
    std::fs::remove_dir_all(&root).ok();
}

/// A real kill: the CLI is SIGKILLed as soon as its first checkpoint exists, mid-run; the
/// resumed run's log and weights equal an uninterrupted in-process run's.
#[test]
fn sigkill_mid_run_then_resume_matches_an_uninterrupted_run() {
    let root = tmp("kill");
    let fdir = root.join("faces");
    std::fs::create_dir_all(&fdir).unwrap();
    faces(&fdir);
    let mut cfg = config(&fdir);
    cfg.steps = 40;
    cfg.checkpoint_every = 4;
    cfg.val_every = 10;
    let cfg_path = root.join("cfg.json");
    std::fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();
    let full = root.join("full");
    sde::run(&cfg, &full, &quiet()).unwrap();

    let out = root.join("killed");
    let exe = env!("CARGO_BIN_EXE_dynface");
    let args = |resume: bool| {
        let mut a = vec![
            "train".to_string(),
            "sde".into(),
            "--config".into(),
            cfg_path.display().to_string(),
            "-o".into(),
            out.display().to_string(),
        ];
        if resume {
            a.push("--resume".into());
        }
        a
    };
    let mut child = std::process::Command::new(exe)
        .args(args(false))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !out.join(CHECKPOINT).exists() && t0.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let killed_at = checkpoint::load(&out.join(CHECKPOINT), cfg.adamw.clone())
        .unwrap()
        .0
        .step;
    if killed_at == cfg.steps {
        println!("note: the run finished before the kill landed; resume is a no-op here");
    }
    let st = std::process::Command::new(exe)
        .args(args(true))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    println!(
        "killed with the checkpoint at step {killed_at}; resumed to {}",
        cfg.steps
    );
    assert_eq!(losses(&full), losses(&out));
    let (sa, _) = checkpoint::load(&full.join(CHECKPOINT), cfg.adamw.clone()).unwrap();
    let (sb, _) = checkpoint::load(&out.join(CHECKPOINT), cfg.adamw.clone()).unwrap();
    assert!(sa == sb, "final state differs after the kill and resume");
    std::fs::remove_dir_all(&root).ok();
}

/// The SDE shipped in `weights/` (trained by `train sde` on the HQ faces) loads against its
/// config's key spec and gives a finite σ̂ in range for a random image.
#[test]
fn shipped_sde_weights_match_their_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights");
    let cfg: SdeConfig =
        serde_json::from_str(&std::fs::read_to_string(root.join("sde_faces24.json")).unwrap())
            .unwrap();
    let store = dynface::weights::load_safetensors(&root.join("sde_faces24.safetensors")).unwrap();
    let spec = dynface::models::sde::checkpoint_spec(&cfg, 3);
    assert_eq!(store.len(), spec.len());
    let mut w = dynface::train::optim::Params::new();
    for (name, shape) in spec {
        let t = store.tensor_f32(&name).unwrap();
        assert_eq!(t.shape, shape, "{name}");
        w.insert(name, t);
    }
    // A held-out face (every 4th file by name, starting with the first, was not trained on)
    // blurred at σ = 1 and σ = 10: the estimates must be ordered and near the truth
    // (measured 2.21 and 10.51 with the shipped 2000-step weights, errors 1.21 and 0.51; 2.83
    // and 9.73 with the earlier 1000-step ones; the bound is about twice the worst error).
    let hq = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/faces/hq");
    if !hq.exists() {
        dynface::check::skip::skip(
            "shipped SDE",
            dynface::check::skip::SkipReason::NoSharedData,
            &format!("{} is absent", hq.display()),
        );
        return;
    }
    let (_, held_out) = dynface::train::data::split_files(&hq, None, 4).unwrap();
    let faces = dynface::train::data::load_faces(&held_out[..1]).unwrap();
    let set = dynface::train::data::validation_set(&faces, 256, &[1.0, 10.0]);
    let mut p = sde::SdePredictor::new(&cfg, 2, 256).unwrap();
    let imgs: Vec<&[f32]> = set.iter().map(|v| v.2.as_slice()).collect();
    let s = p.predict(&w, &imgs).unwrap();
    println!("σ̂ at σ = 1: {:.2}, at σ = 10: {:.2}", s[0], s[1]);
    assert!(s[1] > s[0] + 3.0, "{s:?}");
    assert!(
        (s[0] - 1.0).abs() < 2.5 && (s[1] - 10.0).abs() < 2.5,
        "{s:?}"
    );
}
