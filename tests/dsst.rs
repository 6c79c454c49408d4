//! The shipped DSST table (weights/dsst.json): structure, monotonicity, the [690, 925]
//! calibration, and — when the face set is present — its residuals re-measured with the
//! graph's blur op.

use dynface::backend::cpu::CpuBackend;
use dynface::diffusion::{BetaSchedule, Schedule};
use dynface::dsst::{
    faces::load_faces, mean_blur_residual, sigma_grid, table_from_residuals, Calibration, DsstTable,
};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shipped() -> DsstTable {
    DsstTable::load(&root().join("weights/dsst.json")).expect("weights/dsst.json is shipped")
}

#[test]
fn shipped_table_is_monotone_on_the_full_grid() {
    let t = shipped();
    assert_eq!(t.schedule, "linear1000");
    assert_eq!(t.sigma, sigma_grid());
    assert!(
        t.t.windows(2).all(|w| w[0] <= w[1]),
        "t must not decrease in σ"
    );
    assert!(*t.t.last().unwrap() <= 999);
}

#[test]
fn shipped_table_maps_the_degraded_blur_range_into_690_925() {
    let t = shipped();
    let cal = Calibration::default();
    let (lo, hi) = (t.lookup(cal.sigma_lo), t.lookup(cal.sigma_hi));
    println!(
        "τ = {}: t({}) = {lo}, t({}) = {hi}",
        t.tau, cal.sigma_lo, cal.sigma_hi
    );
    assert!(
        (690..=925).contains(&lo) && (690..=925).contains(&hi),
        "{lo}..{hi}"
    );
    // One τ cannot place both ends exactly; the residual curve of this face set leaves
    // each end within 15 steps of its target.
    assert!(
        lo.abs_diff(690) <= 15 && hi.abs_diff(925) <= 15,
        "{lo}..{hi}"
    );
}

#[test]
fn shipped_steps_follow_from_its_residuals_and_tau() {
    let t = shipped();
    assert_eq!(t.residual.len(), t.sigma.len());
    let s = Schedule::new(&BetaSchedule::linear1000()).unwrap();
    let again = table_from_residuals(&t.residual, &t.sigma, &s, &t.schedule, t.tau).unwrap();
    assert_eq!(again.t, t.t);
}

#[test]
fn shipped_residuals_match_the_blur_op_on_the_face_set() {
    let dir = root().join("../shared/data/faces/hq");
    if !dir.is_dir() {
        dynface::check::skip::skip(
            "shipped_residuals_match_the_blur_op_on_the_face_set",
            dynface::check::skip::SkipReason::NoSharedData,
            &format!("face folder {} is missing", dir.display()),
        );
        return;
    }
    let t = shipped();
    let faces = load_faces(&dir, 1).unwrap();
    let picks = [9usize, 29, 79]; // σ = 1.0, 3.0, 8.0
    let sig: Vec<f64> = picks.iter().map(|&i| t.sigma[i]).collect();
    let d = mean_blur_residual(CpuBackend::<f32>::new(), &faces, &sig).unwrap();
    for (k, &i) in picks.iter().enumerate() {
        let rel = (d[k] - t.residual[i]).abs() / t.residual[i];
        println!(
            "σ = {}: residual {} (shipped {})",
            sig[k], d[k], t.residual[i]
        );
        assert!(
            rel < 1e-5,
            "σ = {}: {} vs shipped {}",
            sig[k],
            d[k],
            t.residual[i]
        );
    }
}
