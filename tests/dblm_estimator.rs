//! The training-free blur-level estimate (src/dblm/estimate.rs).

use dynface::blur::blur_forward;
use dynface::dblm::{spearman, BlurLevelEstimator};
use dynface::degrade::load::{collect_inputs, load_rgb8, stem_of};
use dynface::degrade::seed::{image_rng, Stream};
use dynface::degrade::{degrade_image, DegradeConfig};
use dynface::tensor::random;
use std::path::Path;

fn planes(img: &image::RgbImage) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut v = vec![0.0f32; 3 * w * h];
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            v[c * w * h + y as usize * w + x as usize] = p[c] as f32 / 255.0;
        }
    }
    v
}

/// On synthetic data with a perfect restorer, σ̂ grows with the true blur.
#[test]
fn estimate_grows_with_the_blur_of_the_input() {
    let (c, h, w) = (3, 48, 48);
    let mut rng = random::rng(5);
    let noise = random::uniform::<f32>(&mut rng, &[1, c, h, w], 0.0, 1.0).data;
    let mut x = vec![0.0f32; noise.len()];
    blur_forward(&noise, &[1.0f32], [1, c, h, w], &mut x);
    let est = BlurLevelEstimator {
        tolerance: 0.005,
        ..Default::default()
    };
    let mut last = 0.0;
    for s in [0.5f32, 1.5, 3.0, 6.0] {
        let mut y = vec![0.0f32; x.len()];
        blur_forward(&x, &[s], [1, c, h, w], &mut y);
        let e = est.estimate(&x, &y, [c, h, w]).unwrap();
        assert!(e >= last, "σ̂ {e} after {last} for blur {s}");
        last = e;
    }
    assert!(last > 0.5);
    assert_eq!(
        est.estimate(&x, &x, [c, h, w]).unwrap(),
        0.1,
        "identical images need no blur"
    );
}

/// How well σ̂ tracks the drawn degradation σ on the HQ faces, with an oracle restorer
/// (RM(y) = the HQ face): the estimator's principle, separated from any restorer's quality.
#[test]
fn estimate_tracks_the_degradation_sigma_on_faces() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/faces/hq");
    if !dir.is_dir() {
        dynface::check::skip::skip(
            "estimate_tracks_the_degradation_sigma_on_faces",
            dynface::check::skip::SkipReason::NoSharedData,
            &format!(
                "{} not found (the shared face set is outside the repository)",
                dir.display()
            ),
        );
        return;
    }
    let files = collect_inputs(&[dir]).unwrap();
    let cfg = DegradeConfig::default();
    let mut truth = vec![];
    let mut est: Vec<Vec<f64>> = vec![vec![]; 3];
    let tols = [0.01f32, 0.02, 0.04];
    for f in files.iter().take(12) {
        let hq = load_rgb8(f).unwrap().rgb;
        // Half size keeps the test fast; σ is halved to match.
        let hq = image::imageops::resize(&hq, 256, 256, image::imageops::FilterType::Triangle);
        let stem = stem_of(f);
        let p = cfg.draw(&mut image_rng(0, &stem, Stream::Params));
        let (lq, _) = degrade_image(&hq, &p, &mut image_rng(0, &stem, Stream::Noise)).unwrap();
        truth.push(p.sigma.unwrap());
        let (a, b) = (planes(&hq), planes(&lq));
        for (k, &t) in tols.iter().enumerate() {
            let e = BlurLevelEstimator {
                tolerance: t,
                ..Default::default()
            };
            est[k].push(e.estimate(&a, &b, [3, 256, 256]).unwrap() as f64 * 2.0);
        }
    }
    for (k, t) in tols.iter().enumerate() {
        println!(
            "tolerance {t}: Spearman ρ(σ̂, σ_true) = {:.3} over {} faces",
            spearman(&est[k], &truth),
            truth.len()
        );
    }
    let rho = spearman(&est[2], &truth);
    assert!(rho > 0.3, "σ̂ does not track the degradation σ (ρ = {rho})");
}
