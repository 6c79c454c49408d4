//! `train se` and `train dgsa` on the tiny random model set: they run end to end (the CLI
//! included), resume bit-exactly, overfit one fixed batch (DGSA also with the DISTS term, on
//! random VGG16 weights and DISTS-pytorch's α/β), and what they write loads into
//! `dynface restore`, whose report then names the trained σ̂ estimator and DGSA.

#[path = "support/restore_cli.rs"]
mod restore_cli;

use dynface::models::dists;
use dynface::tensor::random;
use dynface::train::dgsa::{self, DgsaTrainConfig, Guide};
use dynface::train::dists_weights;
use dynface::train::export;
use dynface::train::log;
use dynface::train::optim::Params;
use dynface::train::se::{self, SeTrainConfig};
use dynface::train::stage::{RunOptions, CHECKPOINT, METRICS};
use dynface::train::{checkpoint, optim::AdamWConfig};
use dynface::weights::{load_safetensors, save_safetensors};
use restore_cli::{bin, report, restore_cpu, synthetic_png, tmp, weights};
use std::path::{Path, PathBuf};

/// Five 72×72 face-like images (larger than the set's 64² so crops move).
fn faces() -> PathBuf {
    let d = tmp("train-faces");
    for k in 0..5 {
        synthetic_png(&d.join(format!("f{k}.png")), 72, 72, k + 1);
    }
    d
}

fn quiet() -> RunOptions {
    RunOptions {
        quiet: true,
        ..RunOptions::default()
    }
}

fn se_config(faces: &Path) -> SeTrainConfig {
    SeTrainConfig {
        models: weights().to_path_buf(),
        train_dir: faces.to_path_buf(),
        holdout_every: 5,
        batch: 2,
        steps: 4,
        warmup: 1,
        checkpoint_every: 2,
        val_every: 4,
        val_batches: 1,
        ..SeTrainConfig::default()
    }
}

fn dgsa_config(faces: &Path, models: &Path) -> DgsaTrainConfig {
    DgsaTrainConfig {
        models: models.to_path_buf(),
        train_dir: faces.to_path_buf(),
        holdout_every: 5,
        // No batch norm in DGSA: one image per step keeps the test short.
        batch: 1,
        steps: 4,
        warmup: 1,
        checkpoint_every: 2,
        val_every: 4,
        val_batches: 1,
        // The tiny set's prior: t across its whole chain.
        t_min: 100,
        t_max: 900,
        ..DgsaTrainConfig::default()
    }
}

/// The deterministic fields of each log record (timings differ run to run).
fn losses(dir: &Path) -> Vec<String> {
    log::read(&dir.join(METRICS))
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                r["step"], r["loss"], r["lr"], r["grad_norm"], r["val_loss"]
            )
        })
        .collect()
}

fn loss_series(dir: &Path) -> Vec<f64> {
    log::read(&dir.join(METRICS))
        .unwrap()
        .iter()
        .filter_map(|r| r["loss"].as_f64())
        .collect()
}

/// Stops after 3 steps (checkpoint at 2), resumes, and compares with an uninterrupted run.
fn assert_resume_bit_exact(run: impl Fn(&Path, &RunOptions), root: &Path, adamw: &AdamWConfig) {
    let full = root.join("full");
    run(&full, &quiet());
    let cut = root.join("cut");
    run(
        &cut,
        &RunOptions {
            stop_after: Some(3),
            ..quiet()
        },
    );
    run(
        &cut,
        &RunOptions {
            resume: true,
            ..quiet()
        },
    );
    let (a, b) = (losses(&full), losses(&cut));
    assert!(
        a.len() >= 4,
        "four steps (and a validation line at step 0): {a:?}"
    );
    assert_eq!(a, b);
    let (sa, _) = checkpoint::load(&full.join(CHECKPOINT), adamw.clone()).unwrap();
    let (sb, _) = checkpoint::load(&cut.join(CHECKPOINT), adamw.clone()).unwrap();
    assert_eq!(sa, sb, "weights, EMA, AdamW moments and step are identical");
}

#[test]
fn se_resumes_bit_exactly_and_its_estimator_loads_into_restore() {
    let f = faces();
    let root = tmp("train-se");
    let cfg = se_config(&f);
    assert_resume_bit_exact(
        |out, o| {
            se::run(&cfg, out, o).unwrap();
        },
        &root,
        &cfg.adamw,
    );
    let full = root.join("full");
    for name in [se::WEIGHTS, "models.json", "loss.svg", export::VALIDATION] {
        assert!(full.join(name).exists(), "no {name}");
    }
    // σ* labels reached the log: the tiny random restorer recovers little, so σ* is large
    // but within the grid.
    for r in log::read(&full.join(METRICS)).unwrap() {
        if let Some(s) = r["mean_sigma_star"].as_f64() {
            assert!((0.1..=15.0).contains(&s), "σ* {s}");
        }
    }
    let inp = tmp("train-se-in");
    synthetic_png(&inp.join("a.png"), 64, 64, 9);
    let o = tmp("train-se-restored");
    let out = restore_cpu(
        inp.to_str().unwrap(),
        o.to_str().unwrap(),
        full.to_str().unwrap(),
        &["--preset", "no-dgsa"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report(&o);
    let t = &r["images"][0]["trace"];
    assert_eq!(t["estimator"], "standard estimator (TM + SDE)");
    assert!(
        t["scale"].as_str().unwrap().contains("--preset no-dgsa"),
        "{t}"
    );
}

#[test]
fn dgsa_stages_run_from_the_cli_resume_bit_exactly_and_load_into_restore() {
    let f = faces();
    let root = tmp("train-dgsa");
    // Stage 1 from the command line, with a JSON config.
    let cfg1 = DgsaTrainConfig {
        steps: 2,
        ..dgsa_config(&f, weights())
    };
    let cfg_path = root.join("stage1.json");
    std::fs::write(&cfg_path, serde_json::to_string(&cfg1).unwrap()).unwrap();
    let s1 = root.join("stage1");
    let out = std::process::Command::new(bin())
        .args(["train", "dgsa", "--config"])
        .arg(&cfg_path)
        .arg("-o")
        .arg(&s1)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("SWT subband L1 alone"),
        "no DISTS note: {stderr}"
    );
    assert!(s1.join(dgsa::WEIGHTS).exists());
    let rec = log::read(&s1.join(METRICS)).unwrap();
    let last = rec.last().unwrap();
    assert!(
        last["val_loss"].as_f64().unwrap() > 0.0 && last["val_loss_s1"].as_f64().unwrap() > 0.0
    );

    // Stage 2 on DBLM outputs, starting from stage 1's weights: bit-exact resume.
    let cfg2 = DgsaTrainConfig {
        guide: Guide::Dblm,
        init: Some(s1.join(dgsa::WEIGHTS)),
        // Validation is covered by stage 1; without it the 9 steps here stay short.
        val_batches: 0,
        ..dgsa_config(&f, weights())
    };
    let root2 = root.join("stage2");
    assert_resume_bit_exact(
        |out, o| {
            dgsa::run(&cfg2, out, o).unwrap();
        },
        &root2,
        &cfg2.adamw,
    );
    let full = root2.join("full");
    let inp = tmp("train-dgsa-in");
    synthetic_png(&inp.join("a.png"), 64, 64, 9);
    let o = tmp("train-dgsa-restored");
    let out = restore_cpu(
        inp.to_str().unwrap(),
        o.to_str().unwrap(),
        full.to_str().unwrap(),
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = &report(&o)["images"][0]["trace"];
    assert_eq!(t["dgsa"], true);
    assert_eq!(t["scale"], "DGSA (trained weights of the model set)");
    // A VGG16 file without DISTS's α/β is refused with a clear message, not silently ignored.
    let bad = DgsaTrainConfig {
        dists_weights: Some("vgg16.safetensors".into()),
        ..cfg1
    };
    let e = dgsa::run(&bad, &root.join("bad"), &quiet()).unwrap_err();
    assert!(format!("{e:#}").contains("DISTS"), "{e:#}");
}

/// 50 steps on one fixed batch: the loss falls (the gradients reach every trained weight,
/// through TM, the σ* targets and the SDE, and the optimiser follows them).
#[test]
fn se_overfits_one_fixed_batch() {
    let f = faces();
    let root = tmp("train-overfit-se");
    let cfg = SeTrainConfig {
        steps: 50,
        lr: 1e-3,
        warmup: 5,
        checkpoint_every: 50,
        val_every: 50,
        val_batches: 0,
        ema_decay: 0.0,
        overfit_one_batch: true,
        ..se_config(&f)
    };
    se::run(&cfg, &root, &quiet()).unwrap();
    let l = loss_series(&root);
    let (first, last) = (l[0], l[l.len() - 1]);
    eprintln!("se overfit: loss {first:.5} → {last:.5}");
    // Measured: 0.33523 → 0.07840 (× 0.23).
    assert!(last < 0.4 * first, "se loss {first} → {last}");
}

/// DGSA from a weak start (S ≈ 0) on one fixed batch: the loss falls as S grows where the
/// guidance step pays. ζ is raised from the sampler's 0.3 because one guidance step of the
/// untrained tiny prior moves x̂₀(x̃_t) so little that S ≡ 0 and S ≡ 1 differ by 0.2% at
/// ζ = 0.3 (measured: loss 0.021407 vs 0.021364).
#[test]
fn dgsa_overfits_one_fixed_batch() {
    let f = faces();
    let root = tmp("train-overfit-dgsa");
    let cfg = DgsaTrainConfig {
        steps: 50,
        lr: 1e-2,
        warmup: 5,
        checkpoint_every: 50,
        val_every: 50,
        val_batches: 0,
        ema_decay: 0.0,
        init_scale: 0.0,
        zeta: Some(30.0),
        overfit_one_batch: true,
        ..dgsa_config(&f, weights())
    };
    let sum = dgsa::run(&cfg, &root, &quiet()).unwrap();
    let l = loss_series(&root);
    let (first, last) = (l[0], l[l.len() - 1]);
    eprintln!(
        "dgsa overfit: loss {first:.6} → {last:.6} ({:.2} s/step)",
        sum.seconds_per_step
    );
    // Measured: 0.021511 → 0.020523 (× 0.954), falling steadily after the warm-up.
    assert!(last < 0.97 * first, "dgsa loss {first} → {last}");
}

/// Random VGG16 convolutions (He-normal, small biases) under torchvision's keys, and
/// DISTS-pytorch's α/β (the golden fixture holds the real values), written as safetensors.
fn dists_files(dir: &Path) -> (PathBuf, PathBuf) {
    let mut rng = random::rng(5);
    let vgg: Params = dists::vgg_spec()
        .into_iter()
        .map(|(k, shape)| {
            let std = if k.ends_with("bias") {
                0.01
            } else {
                (2.0 / (shape[1] * 9) as f64).sqrt()
            };
            let t = random::normal(&mut rng, &shape, std);
            (k, t)
        })
        .collect();
    let vp = dir.join("vgg16_random.safetensors");
    save_safetensors(&export::to_store(&vgg).unwrap(), &vp, None).unwrap();
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dists/io.safetensors");
    let io = load_safetensors(&fx).unwrap();
    let ab: Params = [dists::ALPHA, dists::BETA]
        .iter()
        .map(|k| (k.to_string(), io.tensor_f32(k).unwrap()))
        .collect();
    let ap = dir.join("dists_alpha_beta.safetensors");
    save_safetensors(&export::to_store(&ab).unwrap(), &ap, None).unwrap();
    (vp, ap)
}

/// DGSA with loss = SWT + λ·DISTS on one fixed batch: the loss falls, the log holds both
/// terms (and their weighted sum is the loss), the report says which loss and which VGG16.
#[test]
fn dgsa_with_dists_overfits_one_fixed_batch() {
    let f = faces();
    let root = tmp("train-overfit-dgsa-dists");
    let (vgg, ab) = dists_files(&tmp("train-dists-files"));
    let steps = 12;
    let cfg = DgsaTrainConfig {
        steps,
        lr: 1e-2,
        warmup: 3,
        checkpoint_every: steps,
        val_every: steps,
        val_batches: 0,
        ema_decay: 0.0,
        init_scale: 0.0,
        zeta: Some(30.0),
        overfit_one_batch: true,
        dists_weights: Some(vgg),
        dists_alpha_beta: Some(ab),
        dists_lambda: 0.5,
        ..dgsa_config(&f, weights())
    };
    let t0 = std::time::Instant::now();
    let sum = dgsa::run(&cfg, &root, &quiet()).unwrap();
    let recs = log::read(&root.join(METRICS)).unwrap();
    let train: Vec<_> = recs
        .iter()
        .filter(|r| r["loss_dists"].is_number())
        .collect();
    assert_eq!(train.len(), steps as usize, "{recs:?}");
    for r in &train {
        let (l, sw, d) = (
            r["loss"].as_f64().unwrap(),
            r["loss_swt"].as_f64().unwrap(),
            r["loss_dists"].as_f64().unwrap(),
        );
        assert!(d > 0.0 && sw > 0.0, "{r:?}");
        // f32 sum of two terms: measured |Δ| ≤ 2e-9 relative.
        assert!((l - (sw + 0.5 * d)).abs() <= 1e-6 * l, "{r:?}");
    }
    let l = loss_series(&root);
    let (first, last) = (l[0], l[l.len() - 1]);
    eprintln!(
        "dgsa + DISTS overfit: loss {first:.6} → {last:.6} in {:.1} s ({:.2} s/step)",
        t0.elapsed().as_secs_f64(),
        sum.seconds_per_step
    );
    // Measured: 0.108509 → 0.106842 (× 0.985) in 12 steps, 1.4 s/step on the loaded 2-core machine.
    assert!(last < 0.99 * first, "dgsa + DISTS loss {first} → {last}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join(export::VALIDATION)).unwrap())
            .unwrap();
    let loss = report["loss"].as_str().unwrap();
    assert!(loss.contains("0.5·DISTS"), "{loss}");
    assert!(loss.contains("NOT torchvision"), "{loss}");
    assert_eq!(report["dists"]["vgg16"]["torchvision_imagenet"], false);
}

/// Bad DISTS files are refused with errors that name the problem.
#[test]
fn dists_files_are_checked() {
    let d = tmp("train-dists-bad");
    let one = |name: &str, shape: Vec<usize>| -> Params {
        [(name.to_string(), dynface::tensor::Tensor::zeros(&shape))].into()
    };
    let write = |p: &Params, f: &str| {
        let path = d.join(f);
        save_safetensors(&export::to_store(p).unwrap(), &path, None).unwrap();
        path
    };
    // A VGG16 file with one wrong-shaped key and the rest missing.
    let bad = write(
        &one("features.0.weight", vec![64, 3, 3, 2]),
        "vgg_bad.safetensors",
    );
    let e = format!("{:#}", dists_weights::load_vgg16(&bad).unwrap_err());
    assert!(e.contains("wrong shape: features.0.weight"), "{e}");
    assert!(e.contains("missing: features.28.bias"), "{e}");
    assert!(
        dists_weights::load_vgg16(&d.join("nope.pth"))
            .unwrap_err()
            .to_string()
            .contains("download.pytorch.org"),
        "a missing file says where VGG16 comes from"
    );
    // α/β of the right shapes but other values: refused by the pin.
    let mut ab = one(dists::ALPHA, vec![1, dists::WEIGHTS_LEN, 1, 1]);
    ab.extend(one(dists::BETA, vec![1, dists::WEIGHTS_LEN, 1, 1]));
    let e = format!(
        "{:#}",
        dists_weights::load_alpha_beta(&write(&ab, "ab.safetensors")).unwrap_err()
    );
    assert!(e.contains(dists_weights::ALPHA_BETA_VALUES_SHA256), "{e}");
    // A weights.pt that is not the package's: refused before it is parsed.
    let pt = d.join("weights.pt");
    std::fs::write(&pt, b"not a pickle").unwrap();
    let e = format!("{:#}", dists_weights::load_alpha_beta(&pt).unwrap_err());
    assert!(e.contains(dists_weights::ALPHA_BETA_SHA256), "{e}");
    // α/β without VGG16 is a config error.
    let cfg = DgsaTrainConfig {
        dists_alpha_beta: Some(pt),
        ..DgsaTrainConfig::default()
    };
    let e = format!("{:#}", cfg.validate().unwrap_err());
    assert!(e.contains("needs dists_weights"), "{e}");
}
