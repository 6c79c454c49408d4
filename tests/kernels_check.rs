//! Compiles every CUDA kernel with NVRTC for sm_90 (and sm_90a) and fails on compile errors
//! or register spills. Needs libnvrtc only (no GPU); without it the test prints why it was
//! skipped (a skip is not a pass: run .ci/install-nvrtc.sh).

use dynface::backend::cuda::kernels::all_kernels;
use dynface::backend::cuda::nvrtc;
use dynface::cli::kernels::{run_kernels_check, KernelsCheckArgs};

#[test]
fn every_kernel_compiles_for_hopper_without_spills() {
    if let Some(why) = nvrtc::unavailable() {
        dynface::check::skip::skip(
            "every_kernel_compiles_for_hopper_without_spills",
            dynface::check::skip::SkipReason::NoNvrtc,
            &why,
        );
        return;
    }
    let args = KernelsCheckArgs {
        arch: vec!["sm_90".into()],
        sm90a: true,
        // The fast-math variant is optional (`dynface kernels check --fast-math`); each
        // extra variant costs a full compile of every file.
        fast_math: false,
        ..Default::default()
    };
    let report = run_kernels_check(&args).unwrap_or_else(|e| panic!("{e:#}"));
    let n = all_kernels().count();
    assert_eq!(
        report.rows.len(),
        2 * n,
        "every registered kernel must be reported for sm_90 and sm_90a"
    );
    for r in &report.rows {
        assert!(r.registers > 0, "{} reports no registers", r.kernel);
        assert!(r.registers <= 255);
    }
}
