//! MTCNN on the graph engine with facenet-pytorch's real weights: the composite layers it
//! adds (PReLU, ceil-mode max pooling) against their definitions, and detection on the
//! shared photos (the face counts a person makes, see `support/photos.rs`) and on
//! face-free synthetic images.

#[path = "support/photos.rs"]
mod photos_support;
use dynface::backend::cpu::CpuBackend;
use dynface::check::cases::{Case, Draw, InputSpec, Tier};
use dynface::check::vjp::{check_case, VjpOptions, TOL};
use dynface::exec::eval;
use dynface::face::detect::mtcnn_weights::load_mtcnn;
use dynface::face::detect::{Face, Mtcnn, MtcnnOptions, RgbPlanes};
use dynface::graph::{autodiff, Graph};
use dynface::tensor::Tensor;
use photos_support::{mtcnn_wheel, photos_dir, PHOTO_FACES};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::Arc;

fn planes(img: &image::RgbImage) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut v = vec![0.0; 3 * w * h];
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            v[c * w * h + y as usize * w + x as usize] = p[c] as f32;
        }
    }
    v
}

fn detect(det: &Mtcnn<CpuBackend<f32>>, img: &image::RgbImage) -> Vec<Face> {
    let p = planes(img);
    det.detect(&RgbPlanes {
        data: &p,
        width: img.width() as usize,
        height: img.height() as usize,
    })
    .unwrap()
}

fn detector() -> Option<Mtcnn<CpuBackend<f32>>> {
    let wheel = mtcnn_wheel()?;
    let w = load_mtcnn(&wheel).unwrap();
    Some(Mtcnn::new(
        CpuBackend::<f32>::new(),
        w,
        MtcnnOptions::default(),
    ))
}

/// Forward against the definition (max over each window, partial last windows kept) and
/// reverse mode against the max's VJP (dy goes to the window's argmax), on inputs that are
/// a random permutation of distinct values so every argmax is unique. Sizes cover even,
/// odd, and the networks' own (22 → 11, 9 → 4, 10 → 5).
#[test]
fn ceil_mode_max_pool_matches_its_definition_and_vjp() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for (k, h, w) in [
        (2, 7, 8),
        (2, 10, 5),
        (3, 22, 9),
        (3, 9, 10),
        (3, 4, 3),
        (2, 2, 3),
    ] {
        let (n, c) = (2, 3);
        let len = n * c * h * w;
        let mut vals: Vec<f64> = (0..len).map(|i| i as f64 * 0.37 - 40.0).collect();
        vals.shuffle(&mut rng);
        let (oh, ow) = (Graph::pool_ceil_len(h, k), Graph::pool_ceil_len(w, k));
        let dy: Vec<f64> = (0..n * c * oh * ow)
            .map(|_| rng.gen_range(-1.0..1.0))
            .collect();
        let mut g = Graph::new();
        let x = g.input("x", &[n, c, h, w]);
        let y = g.max_pool2d_ceil(x, k).unwrap();
        assert_eq!(g.shape(y), &[n, c, oh, ow]);
        let cot = g.input("dy", &[n, c, oh, ow]);
        let dx = autodiff::grad(&mut g, &[(y, cot)], &[x]).unwrap()[0];
        let xt = Tensor::new(vec![n, c, h, w], vals.clone());
        let dyt = Tensor::new(vec![n, c, oh, ow], dy.clone());
        let out = eval(
            CpuBackend::<f64>::new(),
            &g,
            &[y, dx],
            &[("x", &xt), ("dy", &dyt)],
            &HashMap::new(),
        )
        .unwrap();
        let mut want_dx = vec![0.0; len];
        for p in 0..n * c {
            for i in 0..oh {
                for j in 0..ow {
                    let mut best = (f64::NEG_INFINITY, 0);
                    for a in 2 * i..(2 * i + k).min(h) {
                        for b in 2 * j..(2 * j + k).min(w) {
                            let idx = p * h * w + a * w + b;
                            if vals[idx] > best.0 {
                                best = (vals[idx], idx);
                            }
                        }
                    }
                    let o = p * oh * ow + i * ow + j;
                    // a + relu(b − a) rounds once: measured error ≤ 1.5e-14 at |x| ≤ 40.
                    let got = out[0].data[o];
                    assert!(
                        (got - best.0).abs() < 1e-12,
                        "k {k} {h}x{w} out {o}: {got} vs {}",
                        best.0
                    );
                    want_dx[best.1] += dy[o];
                }
            }
        }
        for (i, (g, want)) in out[1].data.iter().zip(&want_dx).enumerate() {
            // Sums of at most four dy values in f64: measured difference 0 or ~1e-16.
            assert!(
                (g - want).abs() < 1e-12,
                "k {k} {h}x{w} dx[{i}]: {g} vs {want}"
            );
        }
    }
}

/// PReLU's VJP (both arguments) by finite differences, inputs kept off its kink at 0.
#[test]
fn prelu_vjp_matches_finite_differences() {
    let spec = |name: &str, shape: &[usize], draw: Draw| InputSpec {
        name: name.into(),
        shape: shape.to_vec(),
        draw,
        grad: true,
    };
    let case = Case {
        family: "face",
        name: "prelu".into(),
        inputs: vec![
            spec(
                "x",
                &[2, 3, 4, 5],
                Draw::Away {
                    base: Box::new(Draw::Normal(1.0)),
                    kinks: vec![0.0],
                    margin: 0.05,
                },
            ),
            spec("a", &[3], Draw::Uniform(0.05, 0.5)),
        ],
        build: Arc::new(|g: &mut Graph, i: &[dynface::graph::NodeId]| g.prelu(i[0], i[1])),
        differentiable: true,
        tier: Tier::Small,
    };
    let r = check_case(&case, &VjpOptions::default()).unwrap();
    assert!(r.passes(TOL), "{r}");
}

#[test]
fn finds_every_face_a_person_counts_in_the_shared_photos() {
    let (Some(det), Some(dir)) = (detector(), photos_dir()) else {
        return;
    };
    let mut wrong = vec![];
    for (name, want) in PHOTO_FACES {
        let img = dynface::degrade::load::load_rgb8(&dir.join(name))
            .unwrap()
            .rgb;
        let faces = detect(&det, &img);
        if faces.len() != *want {
            wrong.push(format!(
                "{name}: {} faces, a person counts {want}: {faces:?}",
                faces.len()
            ));
        }
        for f in &faces {
            let [x1, y1, x2, y2] = f.bbox;
            assert!(x2 > x1 && y2 > y1, "{name}: {f:?}");
            assert!(f.score > 0.7 && f.score <= 1.0, "{name}: {f:?}");
            for (i, p) in f.landmarks.iter().enumerate() {
                assert!(
                    p[0] >= x1 && p[0] <= x2 && p[1] >= y1 && p[1] <= y2,
                    "{name}: landmark {i} {p:?} outside the box {:?}",
                    f.bbox
                );
            }
            let l = &f.landmarks;
            // Upright faces: the left eye left of the right eye, the nose below the eyes,
            // the mouth corners below the nose.
            assert!(l[0][0] < l[1][0] && l[3][0] < l[4][0], "{name}: {l:?}");
            assert!(
                l[2][1] > l[0][1].min(l[1][1]) && l[3][1] > l[2][1] && l[4][1] > l[2][1],
                "{name}: {l:?}"
            );
        }
        // One detection per person: no two boxes overlap by more than a third of the smaller.
        for (i, a) in faces.iter().enumerate() {
            for b in &faces[i + 1..] {
                let iw = (a.bbox[2].min(b.bbox[2]) - a.bbox[0].max(b.bbox[0])).max(0.0);
                let ih = (a.bbox[3].min(b.bbox[3]) - a.bbox[1].max(b.bbox[1])).max(0.0);
                let area = |f: &Face| (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]);
                assert!(
                    iw * ih < area(a).min(area(b)) / 3.0,
                    "{name}: {a:?} and {b:?}"
                );
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Noise, a smooth gradient, and a landscape-like image (sky, hills, a textured field)
/// hold no face; the detector must find none.
#[test]
fn no_detections_on_face_free_images() {
    let Some(det) = detector() else { return };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let noise = image::RgbImage::from_fn(320, 240, |_, _| {
        image::Rgb([rng.gen(), rng.gen(), rng.gen()])
    });
    let gradient = image::RgbImage::from_fn(300, 200, |x, y| {
        image::Rgb([
            (x * 255 / 299) as u8,
            (y * 255 / 199) as u8,
            ((x + y) * 255 / 498) as u8,
        ])
    });
    let mut rng2 = rand_chacha::ChaCha8Rng::seed_from_u64(6);
    let landscape = image::RgbImage::from_fn(400, 260, |x, y| {
        let (fx, fy) = (x as f32, y as f32);
        let hill = 150.0 + 25.0 * (fx / 53.0).sin() + 12.0 * (fx / 17.0 + 1.0).sin();
        let jitter: f32 = rng2.gen_range(-12.0..12.0);
        let p = if fy < hill - 40.0 {
            [110.0 + fy * 0.4, 160.0 + fy * 0.3, 235.0]
        } else if fy < hill {
            [70.0, 110.0 + (fx / 9.0).sin() * 10.0, 60.0]
        } else {
            [90.0 + ((fx * 0.7 + fy * 1.3).sin() * 30.0), 140.0, 50.0]
        };
        image::Rgb(p.map(|v| (v + jitter).clamp(0.0, 255.0) as u8))
    });
    for (what, img) in [
        ("noise", &noise),
        ("gradient", &gradient),
        ("landscape", &landscape),
    ] {
        let faces = detect(&det, img);
        assert!(faces.is_empty(), "{what}: {faces:?}");
    }
}

/// `dynface weights mtcnn` from the wheel and from a folder of its three files give the
/// same tensors as reading the wheel directly; a changed file is refused by its SHA-256.
#[test]
fn weights_from_wheel_folder_and_safetensors_agree_and_a_changed_file_is_refused() {
    use dynface::face::detect::mtcnn_weights::{run_mtcnn_weights, MtcnnWeightsOptions, NETS};
    use std::io::Read;
    let Some(wheel) = mtcnn_wheel() else { return };
    let dir = std::env::temp_dir().join(format!("dynface-mtcnn-w-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("pt")).unwrap();
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&wheel).unwrap()).unwrap();
    for net in NETS {
        let mut bytes = vec![];
        zip.by_name(&format!("facenet_pytorch/data/{net}.pt"))
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        std::fs::write(dir.join("pt").join(format!("{net}.pt")), bytes).unwrap();
    }
    let direct = load_mtcnn(&wheel).unwrap();
    for src in [wheel.clone(), dir.join("pt")] {
        let out = dir.join("mtcnn.safetensors");
        let n = run_mtcnn_weights(&MtcnnWeightsOptions {
            source: src.clone(),
            output: out.clone(),
        })
        .unwrap();
        assert_eq!(n, 50);
        let back = load_mtcnn(&out).unwrap();
        assert_eq!(back.len(), direct.len());
        for (k, t) in &direct {
            assert_eq!(back[k].shape, t.shape, "{k}");
            assert_eq!(back[k].data, t.data, "{k} from {}", src.display());
        }
    }
    let onet = dir.join("pt/onet.pt");
    let mut bytes = std::fs::read(&onet).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&onet, bytes).unwrap();
    let err = format!("{:#}", load_mtcnn(&dir.join("pt")).unwrap_err());
    assert!(err.contains("onet.pt") && err.contains("SHA-256"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
