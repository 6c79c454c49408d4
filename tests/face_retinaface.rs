//! RetinaFace on the graph engine against PyPI facexlib 0.3.0 with random weights (fixtures
//! from tools/reference/gen_retinaface_golden.py, network in float64, stored as f32): the
//! three head outputs element by element on the CPU backend in f64 and f32, and the
//! detections (boxes, scores, five landmarks after the threshold and NMS) of our host side,
//! on our own heads and on facexlib's; and our whole f32 detector end to end against
//! facexlib's whole f32 pipeline (`detections_f32`) and the f64 reference. The MobileNet-0.25 weights come from a facexlib-style
//! `.pth` (`module.` keys, f16, num_batches_tracked) through the product's loader; ResNet-50's
//! 25 M weights are redrawn here by the generator's formula, its batch-norm statistics read
//! from the fixture's `.pth`.

#[path = "support/restore_cli.rs"]
mod restore_cli;
use dynface::backend::cpu::CpuBackend;
use dynface::backend::Backend;
use dynface::check::compare::{compare, Tol};
use dynface::exec::eval;
use dynface::face::detect::retinaface::{network_input, RetinaFace};
use dynface::face::detect::retinaface_decode::{postprocess, HeadOutputs, Thresholds};
use dynface::face::detect::retinaface_nets::{max_pool3_s2_p1_nonneg, weight_spec, Variant};
use dynface::face::detect::retinaface_weights::{load_retinaface, load_retinaface_store};
use dynface::face::detect::{Face, RgbPlanes};
use dynface::graph::Graph;
use dynface::models::WeightMap;
use dynface::tensor::Tensor;
use dynface::weights::load_safetensors;
use dynface::weights::pth::{load_pth, PthOptions};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn dir(variant: Variant) -> PathBuf {
    let name = match variant {
        Variant::Resnet50 => "resnet50",
        Variant::Mobilenet025 => "mobilenet0.25",
    };
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/retinaface")
        .join(name)
}

struct Fixture {
    variant: Variant,
    /// Planar RGB on 0..255.
    rgb: Vec<f32>,
    width: usize,
    height: usize,
    heads: HeadOutputs,
    /// `[K, 15]`: box, score, five (x, y).
    detections: Vec<f32>,
    /// The same from facexlib's f32 pipeline.
    detections_f32: Vec<f32>,
    config: serde_json::Value,
}

fn fixture(variant: Variant) -> Fixture {
    let d = dir(variant);
    let img = image::open(d.join("image.png")).unwrap().to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut rgb = vec![0.0; 3 * w * h];
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            rgb[c * w * h + y as usize * w + x as usize] = p[c] as f32;
        }
    }
    let io = load_safetensors(&d.join("io.safetensors")).unwrap();
    let get = |k: &str| -> Vec<f64> {
        let t = io.tensor_f32(k).unwrap();
        t.data.iter().map(|&v| v as f64).collect()
    };
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["height"], h, "image.png matches config.json");
    assert_eq!(config["width"], w);
    Fixture {
        variant,
        rgb,
        width: w,
        height: h,
        heads: HeadOutputs {
            loc: get("loc"),
            conf: get("conf"),
            landmarks: get("landmarks"),
        },
        detections: io.tensor_f32("detections").unwrap().data,
        detections_f32: io.tensor_f32("detections_f32").unwrap().data,
        config,
    }
}

/// The generator's random weights: splitmix64 over the key's FNV-1a hash, uniform with the
/// key's mean and standard deviation, rounded to f32 (gen_retinaface_golden.py's docstring).
fn formula(key: &str, shape: &[usize]) -> Vec<f32> {
    let (mean, std) = if key.ends_with(".weight") && shape.len() == 4 {
        (0.0, 1.0 / ((shape[1] * shape[2] * shape[3]) as f64).sqrt())
    } else if key.ends_with(".weight") {
        (1.0, 0.2)
    } else if key.ends_with(".bias") {
        (0.0, 0.1)
    } else {
        panic!("{key}: not drawn by the formula")
    };
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in key.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01B3);
    }
    let s = 3f64.sqrt() * std;
    (1..=shape.iter().product::<usize>() as u64)
        .map(|i| {
            let mut z = h.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let u = (z >> 11) as f64 * 2f64.powi(-53);
            (mean + (2.0 * u - 1.0) * s) as f32
        })
        .collect()
}

fn resnet50_weights() -> WeightMap {
    let stats = load_pth(
        &dir(Variant::Resnet50).join("stats.pth"),
        &PthOptions::default(),
    )
    .unwrap()
    .store;
    let mut m = WeightMap::new();
    for (k, shape) in weight_spec(Variant::Resnet50) {
        let t = if k.ends_with("running_mean") || k.ends_with("running_var") {
            stats.tensor_f32(&k).unwrap()
        } else {
            Tensor::new(shape.clone(), formula(&k, &shape))
        };
        assert_eq!(t.shape, shape, "{k}");
        m.insert(k, t);
    }
    m
}

fn weights(variant: Variant) -> WeightMap {
    match variant {
        Variant::Resnet50 => resnet50_weights(),
        Variant::Mobilenet025 => {
            let (v, w) = load_retinaface(&dir(variant).join("weights.pth")).unwrap();
            assert_eq!(v, Variant::Mobilenet025, "told from the keys");
            w
        }
    }
}

fn heads<B: Backend + Clone>(f: &Fixture, backend: B, w: WeightMap) -> HeadOutputs {
    let det = RetinaFace::new(backend, f.variant, w, Thresholds::default());
    let x = network_input(&RgbPlanes {
        data: &f.rgb,
        width: f.width,
        height: f.height,
    });
    det.heads(&x).unwrap()
}

/// Compares the three outputs element by element, printing each measured error.
fn check_heads(what: &str, got: &HeadOutputs, want: &HeadOutputs, tol: [Tol; 3]) {
    let p = want.conf.len() / 2;
    for ((name, g, w, k), tol) in [
        ("loc", &got.loc, &want.loc, 4),
        ("conf", &got.conf, &want.conf, 2),
        ("landmarks", &got.landmarks, &want.landmarks, 10),
    ]
    .into_iter()
    .zip(tol)
    {
        let c = compare(g, w, &[p, k], tol);
        println!("{what} {name}: {c}");
        assert!(c.passed(), "{what} {name}: {c}");
    }
}

fn faces_flat(faces: &[Face]) -> Vec<f64> {
    faces
        .iter()
        .flat_map(|f| {
            let mut v: Vec<f32> = f.bbox.to_vec();
            v.push(f.score);
            v.extend(f.landmarks.iter().flatten());
            v
        })
        .map(|v| v as f64)
        .collect()
}

fn check_detections(what: &str, f: &Fixture, heads: &HeadOutputs, tol: Tol) {
    let faces = postprocess(heads, f.height, f.width, 1.0, Thresholds::default());
    let want: Vec<f64> = f.detections.iter().map(|&v| v as f64).collect();
    assert_eq!(
        faces.len() * 15,
        want.len(),
        "{what}: {} detections, facexlib {}",
        faces.len(),
        want.len() / 15
    );
    assert_eq!(
        faces.len() as u64,
        f.config["margins"]["kept"].as_u64().unwrap()
    );
    let c = compare(&faces_flat(&faces), &want, &[faces.len(), 15], tol);
    println!("{what} detections ({}): {c}", faces.len());
    assert!(c.passed(), "{what} detections: {c}");
}

// Tolerances are ≤ 10× the errors measured (`err` in the printed lines, with --nocapture).

/// f64 engine vs the f64 reference stored as f32. MobileNet's LeakyReLU slope 0.1 is an f32
/// parameter of the graph op (0.1 + 1.5e-9), which 27 leaky layers amplify. Measured: loc
/// 8.9e-7, conf 1.9e-7, landmarks 1.6e-6.
const MOBILENET_F64: [Tol; 3] = [Tol::both(4e-6), Tol::both(1e-6), Tol::both(8e-6)];
/// ResNet-50 has only ReLUs: f32 storage rounding. Measured: loc 4.1e-8, conf 2.8e-8,
/// landmarks 4.2e-8.
const RESNET_F64: [Tol; 3] = [Tol::both(2e-7), Tol::both(2e-7), Tol::both(2e-7)];
/// The f32 engine: facexlib's own f32 run is 1.5e-5 (MobileNet) / 1.9e-4 (ResNet-50) from its
/// f64 one (max error over the largest output). Measured (ours, this metric): MobileNet loc
/// 3.1e-5, conf 9.3e-6, landmarks 4.2e-5; ResNet-50 loc 3.8e-4, conf 1.4e-4, landmarks 8.1e-4.
const MOBILENET_F32: [Tol; 3] = [Tol::both(1.5e-4), Tol::both(5e-5), Tol::both(2e-4)];
const RESNET_F32: [Tol; 3] = [Tol::both(1e-3), Tol::both(5e-4), Tol::both(2e-3)];
/// Detections (pixels, scores) from f64 heads, boxes rounded to f32 on both sides.
/// Measured: MobileNet 2.0e-7 (our heads), 1.0e-7 (facexlib's heads); ResNet-50 1.6e-8,
/// 5.7e-8.
fn detections_tol(v: Variant) -> Tol {
    match v {
        Variant::Mobilenet025 => Tol::both(1e-6),
        Variant::Resnet50 => Tol::both(3e-7),
    }
}

/// The largest differences between our detections and `want` (`[K, 15]` rows): over the
/// coordinates (box and landmarks, pixels) and over the scores. Each of `want`'s rows is
/// matched to the nearest of ours (largest element difference), one to one: kept neighbours
/// whose scores tie within f32 rounding may swap places; the set must agree.
fn matched_errors(what: &str, got: &[Face], want: &[f32]) -> (f64, f64) {
    let got = faces_flat(got);
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} detections, facexlib {}",
        got.len() / 15,
        want.len() / 15
    );
    let diff = |g: &[f64], w: &[f32], score: bool| {
        g.iter()
            .zip(w)
            .enumerate()
            .filter(|(i, _)| (*i == 4) == score)
            .map(|(_, (a, &b))| (a - b as f64).abs())
            .fold(0.0, f64::max)
    };
    let mut used = vec![false; got.len() / 15];
    let (mut px, mut score) = (0.0f64, 0.0f64);
    for (k, w) in want.chunks(15).enumerate() {
        let (j, g) = got
            .chunks(15)
            .enumerate()
            .min_by(|a, b| {
                let d = |g: &[f64]| diff(g, w, false).max(diff(g, w, true));
                d(a.1).total_cmp(&d(b.1))
            })
            .unwrap();
        assert!(
            !used[j],
            "{what}: facexlib's detection {k} is nearest to our {j}, already matched"
        );
        used[j] = true;
        px = px.max(diff(g, w, false));
        score = score.max(diff(g, w, true));
    }
    (px, score)
}

/// Our f32 detector end to end (`RetinaFace::detect` on the f32 CPU backend: input, network,
/// priors, decoding, threshold, NMS) against facexlib's whole f32 `detect_faces` and against
/// the f64 reference: the same faces, matched one to one, coordinates and scores within
/// tolerances ≤ 10× those measured. facexlib's own f32 rows are 4.8e-3 (MobileNet) / 1.5e-2
/// (ResNet-50) from its f64 ones (config.json), the largest on the biggest boxes.
/// Measured (pixels; scores), vs facexlib f32 and vs f64: MobileNet 3.4e-3; 7.3e-6 and
/// 1.7e-3; 4.8e-6, ResNet-50 2.6e-2; 5.3e-5 and 1.5e-2; 4.3e-5.
#[test]
fn f32_detector_end_to_end_matches_facexlibs_f32_detections() {
    // (variant, [pixels, score] vs facexlib's f32 run, the same vs the f64 reference)
    for (v, tol_f32, tol_f64) in [
        (Variant::Mobilenet025, [2e-2, 5e-5], [1e-2, 3e-5]),
        (Variant::Resnet50, [1.5e-1, 3e-4], [1e-1, 3e-4]),
    ] {
        let f = fixture(v);
        let det = RetinaFace::new(
            CpuBackend::<f32>::new(),
            v,
            weights(v),
            Thresholds::default(),
        );
        let faces = det
            .detect(&RgbPlanes {
                data: &f.rgb,
                width: f.width,
                height: f.height,
            })
            .unwrap();
        for (against, want, tol) in [
            ("facexlib f32", &f.detections_f32, tol_f32),
            ("f64 reference", &f.detections, tol_f64),
        ] {
            let (px, score) = matched_errors(&format!("{v:?} vs {against}"), &faces, want);
            println!(
                "{v:?} f32 detector, {} faces, vs {against}: coordinates max |err| {px:.2e} px, scores {score:.2e}",
                faces.len()
            );
            assert!(px <= tol[0], "{v:?} vs {against}: {px} px");
            assert!(score <= tol[1], "{v:?} vs {against}: score {score}");
        }
    }
}

#[test]
fn mobilenet_heads_match_facexlib_in_f64_and_f32() {
    let f = fixture(Variant::Mobilenet025);
    let w = weights(f.variant);
    let got = heads(&f, CpuBackend::<f64>::new(), w.clone());
    check_heads("mobilenet f64", &got, &f.heads, MOBILENET_F64);
    check_detections("mobilenet f64", &f, &got, detections_tol(f.variant));
    let got32 = heads(&f, CpuBackend::<f32>::new(), w);
    check_heads("mobilenet f32", &got32, &f.heads, MOBILENET_F32);
}

#[test]
fn resnet50_heads_match_facexlib_in_f64_and_f32() {
    let f = fixture(Variant::Resnet50);
    let w = weights(f.variant);
    let got = heads(&f, CpuBackend::<f64>::new(), w.clone());
    check_heads("resnet50 f64", &got, &f.heads, RESNET_F64);
    check_detections("resnet50 f64", &f, &got, detections_tol(f.variant));
    let got32 = heads(&f, CpuBackend::<f32>::new(), w);
    check_heads("resnet50 f32", &got32, &f.heads, RESNET_F32);
}

/// Our priors, decoding, threshold and NMS on facexlib's own head outputs give its
/// detections: the host side alone, independent of the network.
#[test]
fn host_side_on_facexlib_heads_gives_its_detections() {
    for v in [Variant::Mobilenet025, Variant::Resnet50] {
        let f = fixture(v);
        check_detections(&format!("{v:?} host"), &f, &f.heads, detections_tol(v));
        // The draw is far from every decision (the generator picked it so): scores above
        // 0.8 are candidates and overlapping ones are suppressed, so some of each happen.
        let m = &f.config["margins"];
        let (cand, kept) = (
            m["candidates"].as_u64().unwrap(),
            m["kept"].as_u64().unwrap(),
        );
        assert!(
            kept >= 3 && cand > kept,
            "{v:?}: {cand} candidates, {kept} kept"
        );
    }
}

/// The formula above reproduces the generator's draws: MobileNet's `.pth` holds them
/// rounded to f16 (batch-norm statistics aside, which are calibrated).
#[test]
fn weight_formula_matches_the_generators_draws() {
    let (_, store) =
        load_retinaface_store(&dir(Variant::Mobilenet025).join("weights.pth")).unwrap();
    let mut n = 0;
    for (k, shape) in weight_spec(Variant::Mobilenet025) {
        if k.contains("running_") {
            continue;
        }
        let stored = store.tensor_f32(&k).unwrap();
        let drawn = formula(&k, &shape);
        for (i, (&s, &d)) in stored.data.iter().zip(&drawn).enumerate() {
            assert_eq!(s, half::f16::from_f32(d).to_f32(), "{k}[{i}]");
        }
        n += drawn.len();
    }
    assert!(n > 400_000, "{n} weights compared");
}

/// `dynface weights retinaface` keeps exactly the tensors the network reads, without
/// `module.`, as f32; the detector run from that file finds the same faces as from the `.pth`.
#[test]
fn converted_weights_detect_the_same_faces() {
    use dynface::face::detect::retinaface_weights::{
        run_retinaface_weights, RetinaFaceWeightsOptions,
    };
    let tmp = std::env::temp_dir().join(format!("dynface-retina-conv-{}", std::process::id()));
    let out = tmp.join("mnet.safetensors");
    let src = dir(Variant::Mobilenet025).join("weights.pth");
    let n = run_retinaface_weights(&RetinaFaceWeightsOptions {
        source: src.clone(),
        output: Some(out.clone()),
    })
    .unwrap();
    assert_eq!(n, weight_spec(Variant::Mobilenet025).len());
    let (v, from_st) = load_retinaface(&out).unwrap();
    assert_eq!(v, Variant::Mobilenet025);
    let (_, from_pth) = load_retinaface(&src).unwrap();
    assert_eq!(from_st, from_pth);
    let f = fixture(Variant::Mobilenet025);
    let det = RetinaFace::new(CpuBackend::<f64>::new(), v, from_st, Thresholds::default());
    let faces = det
        .detect(&RgbPlanes {
            data: &f.rgb,
            width: f.width,
            height: f.height,
        })
        .unwrap();
    let want: Vec<f64> = f.detections.iter().map(|&v| v as f64).collect();
    let c = compare(
        &faces_flat(&faces),
        &want,
        &[faces.len(), 15],
        detections_tol(v),
    );
    assert!(c.passed(), "detect(): {c}");
    std::fs::remove_dir_all(&tmp).ok();
}

/// A state dict of the wrong network, or one missing a tensor, is refused naming the problem.
#[test]
fn wrong_checkpoints_are_refused_clearly() {
    let tmp = std::env::temp_dir().join(format!("dynface-retina-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    // MTCNN-like keys: not RetinaFace.
    let mut s = dynface::weights::WeightStore::new();
    let t = |n: usize| {
        dynface::weights::WeightTensor::new(
            vec![n],
            dynface::weights::WeightData::F32(vec![0.5; n]),
        )
        .unwrap()
    };
    s.insert("pnet.conv1.bias", t(10));
    let p = tmp.join("other.safetensors");
    dynface::weights::save_safetensors(&s, &p, None).unwrap();
    let e = format!("{:#}", load_retinaface(&p).unwrap_err());
    assert!(e.contains("not a RetinaFace checkpoint"), "{e}");
    // MobileNet's weights less one tensor.
    let (_, mut store) =
        load_retinaface_store(&dir(Variant::Mobilenet025).join("weights.pth")).unwrap();
    store.remove("ssh2.conv7x7_3.1.running_var");
    let p = tmp.join("partial.safetensors");
    dynface::weights::save_safetensors(&store, &p, None).unwrap();
    let e = format!("{:#}", load_retinaface(&p).unwrap_err());
    assert!(e.contains("missing: ssh2.conv7x7_3.1.running_var"), "{e}");
    let e = format!(
        "{:#}",
        load_retinaface(&tmp.join("absent.pth")).unwrap_err()
    );
    assert!(
        e.contains("dynface weights download retinaface_resnet50"),
        "{e}"
    );
    std::fs::remove_dir_all(&tmp).ok();
}

/// The stem's 3×3 / stride 2 / padding 1 max pooling against its definition, on even and
/// odd sizes, for the non-negative (post-ReLU) inputs it is used on.
#[test]
fn stem_max_pool_matches_its_definition() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    for (h, w) in [(8, 8), (7, 9), (1, 2), (12, 5)] {
        let x: Vec<f32> = (0..2 * h * w).map(|_| rng.gen_range(0.0..4.0)).collect();
        let mut g = Graph::new();
        let xi = g.input("x", &[1, 2, h, w]);
        let y = max_pool3_s2_p1_nonneg(&mut g, xi).unwrap();
        let (oh, ow) = (h.div_ceil(2), w.div_ceil(2));
        assert_eq!(g.shape(y), [1, 2, oh, ow]);
        let xt = Tensor::new(vec![1, 2, h, w], x.clone());
        let got = eval(
            CpuBackend::<f32>::new(),
            &g,
            &[y],
            &[("x", &xt)],
            &HashMap::new(),
        )
        .unwrap();
        for c in 0..2 {
            for i in 0..oh {
                for j in 0..ow {
                    let mut m = f32::NEG_INFINITY;
                    for di in 0..3 {
                        for dj in 0..3 {
                            let (yy, xx) = ((2 * i + di) as isize - 1, (2 * j + dj) as isize - 1);
                            if (0..h as isize).contains(&yy) && (0..w as isize).contains(&xx) {
                                m = m.max(x[c * h * w + yy as usize * w + xx as usize]);
                            }
                        }
                    }
                    assert_eq!(
                        got[0].data[(c * oh + i) * ow + j],
                        m,
                        "{h}×{w} [{c},{i},{j}]"
                    );
                }
            }
        }
    }
}

/// `dynface restore --detector retinaface` on a whole photo: detection through the CLI with
/// the MobileNet `.pth`, the faces in the report (the random network finds many; at most two
/// are restored and pasted back, aligned by facexlib's LMEDS fit), and a missing checkpoint
/// named with where to get it.
#[test]
fn restore_cli_runs_retinaface_on_a_whole_photo() {
    let inp = restore_cli::tmp("retina-in");
    let o = restore_cli::tmp("retina-out");
    std::fs::copy(
        dir(Variant::Mobilenet025).join("image.png"),
        inp.join("photo.png"),
    )
    .unwrap();
    let w = dir(Variant::Mobilenet025).join("weights.pth");
    let run = |weights: &Path| {
        restore_cli::restore_cpu(
            inp.to_str().unwrap(),
            o.to_str().unwrap(),
            restore_cli::weights().to_str().unwrap(),
            &[
                "--sampler",
                "ddim2",
                "--overwrite",
                "--detect",
                "--detector",
                "retinaface",
                "--detector-weights",
                weights.to_str().unwrap(),
                "--max-faces",
                "2",
                "--align-fit",
                "lmeds",
            ],
        )
    };
    let out = run(&w);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let rep: serde_json::Value =
        serde_json::from_slice(&std::fs::read(o.join("report.json")).unwrap()).unwrap();
    let e = &rep["images"][0];
    assert_eq!(e["status"], "restored", "{e}");
    assert_eq!(e["photo"]["detector"], "retinaface");
    let faces = e["photo"]["faces"].as_array().unwrap();
    // facexlib's detections, minus none: the report lists every face found.
    assert_eq!(
        faces.len(),
        fixture(Variant::Mobilenet025).detections.len() / 15
    );
    let restored = faces.iter().filter(|f| f["status"] == "restored").count();
    assert_eq!(restored, 2, "{faces:?}");
    let photo = image::open(o.join("photo.png")).unwrap();
    assert_eq!((photo.width(), photo.height()), (174, 150));
    let out = run(&inp.join("none.pth"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("dynface weights download retinaface_resnet50"),
        "{stderr}"
    );
}
