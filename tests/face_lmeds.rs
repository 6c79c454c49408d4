//! The LMEDS similarity fit against OpenCV's `estimateAffinePartial2D(method=LMEDS)`, the call
//! facexlib's FaceRestoreHelper aligns with (fixtures from tools/reference/gen_lmeds_golden.py:
//! 200 five-landmark sets, every third with one outlier).

use dynface::check::compare::{compare, Tol};
use dynface::face::align::fit_similarity_lmeds;
use std::path::Path;

/// Where our inliers are OpenCV's, the matrices agree to its float32 arithmetic and its
/// iterative refinement (10 Levenberg-Marquardt steps where we solve in closed form).
/// Measured: 1.0e-6 worst of the 197 identical cases (the next 4.9e-7); the other three
/// differ by more than 1e-3 (other inliers).
const TOL: Tol = Tol::both(4e-6);

#[test]
fn lmeds_matches_opencv_where_it_keeps_the_same_inliers() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/align/lmeds.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let pts = |v: &serde_json::Value| -> Vec<[f64; 2]> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()])
            .collect()
    };
    let cases = doc["cases"].as_array().unwrap();
    let (mut same, mut worst) = (0, 0.0f64);
    for (k, c) in cases.iter().enumerate() {
        let (src, dst) = (pts(&c["src"]), pts(&c["dst"]));
        let m = fit_similarity_lmeds(&src, &dst).unwrap();
        let cv_in: Vec<bool> = c["inliers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v == 1)
            .collect();
        let want: Vec<f64> = c["matrix"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
            .collect();
        let got: Vec<f64> = m.0.iter().flatten().copied().collect();
        let cmp = compare(&got, &want, &[2, 3], TOL);
        if cmp.passed() {
            same += 1;
            worst = worst.max(cmp.measured);
        } else {
            // A different answer must come from different inliers: OpenCV's fit refitted on
            // its own inliers by least squares is its matrix.
            let (s, d): (Vec<_>, Vec<_>) = src
                .iter()
                .zip(&dst)
                .zip(&cv_in)
                .filter(|(_, &i)| i)
                .map(|((s, d), _)| (*s, *d))
                .unzip();
            let refit = dynface::face::align::fit_similarity(&s, &d).unwrap();
            let r: Vec<f64> = refit.0.iter().flatten().copied().collect();
            let c2 = compare(&r, &want, &[2, 3], TOL);
            assert!(
                c2.passed(),
                "case {k}: neither our LMEDS nor a refit on OpenCV's inliers: {cmp}; {c2}"
            );
        }
    }
    println!(
        "{same} of {} cases identical, worst err {worst:.2e}",
        cases.len()
    );
    // OpenCV samples 13 random pairs of the 10 where we try all: measured 197 of 200 the same.
    assert!(same >= 190, "{same} of {} cases identical", cases.len());
}
