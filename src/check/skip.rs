//! Skipped checks that cannot pass silently. A test that cannot run says so through
//! [`skip`]: the line `skipped: <test>: <why>` on stdout (cargo shows it with `--nocapture`)
//! and, when `DYNFACE_SKIP_LOG` names a file, one tab-separated record `reason  test  why`
//! appended to it, so `scripts/test.sh` can list every skip of a run and count them by reason
//! even though `cargo test` captures the output of passing tests. In CI (`CI=true`) only a
//! missing GPU is an acceptable reason: any other skip panics, naming what is missing.

use std::io::Write;

/// Why a check could not run. Only [`SkipReason::NoGpu`] is acceptable in CI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// No usable CUDA device (CI has none; the emulator covers what it can).
    NoGpu,
    /// libnvrtc not found (CI installs it with `.ci/install-nvrtc.sh`).
    NoNvrtc,
    /// No host C++ compiler to build the kernel emulator.
    NoCompiler,
    /// `../shared` data (faces, photos) not found.
    NoSharedData,
    /// A committed test fixture (tests/fixtures) not found.
    NoFixture,
    /// No headless browser (Chromium) for the HTML report test.
    NoBrowser,
    /// A backend does not implement an op of the case yet.
    Unsupported,
    /// A switch in the environment turned the check off (DYNFACE_NO_EMU, fault variables).
    Disabled,
}

impl SkipReason {
    /// Every reason, so tests over the set cannot miss a newly added one.
    pub const ALL: [SkipReason; 8] = [
        SkipReason::NoGpu,
        SkipReason::NoNvrtc,
        SkipReason::NoCompiler,
        SkipReason::NoSharedData,
        SkipReason::NoFixture,
        SkipReason::NoBrowser,
        SkipReason::Unsupported,
        SkipReason::Disabled,
    ];

    /// The short label of the reason, as test.sh counts it.
    pub fn label(self) -> &'static str {
        match self {
            SkipReason::NoGpu => "no-gpu",
            SkipReason::NoNvrtc => "no-nvrtc",
            SkipReason::NoCompiler => "no-c++-compiler",
            SkipReason::NoSharedData => "no-shared-data",
            SkipReason::NoFixture => "no-fixture",
            SkipReason::NoBrowser => "no-browser",
            SkipReason::Unsupported => "unsupported-op",
            SkipReason::Disabled => "disabled-by-env",
        }
    }

    /// Whether CI may skip for this reason.
    pub fn allowed_in_ci(self) -> bool {
        self == SkipReason::NoGpu
    }
}

/// Whether this process runs in CI (`CI=true`, as GitHub Actions and `.ci/run` set it).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Records that `test` did not run because of `reason` (`why` in words). Panics in CI
/// unless the reason is the missing GPU, so a missing tool fails the run by name.
pub fn skip(test: &str, reason: SkipReason, why: &str) {
    let why = why.replace(['\n', '\t'], " ");
    println!("skipped: {test}: {why}");
    if let Some(path) = std::env::var_os("DYNFACE_SKIP_LOG") {
        // Appends of one short line are atomic enough for parallel test threads (O_APPEND).
        let line = format!("{}\t{test}\t{why}\n", reason.label());
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            panic!(
                "cannot record the skip of {test} in DYNFACE_SKIP_LOG={}: {e}",
                path.to_string_lossy()
            );
        }
    }
    if in_ci() && !reason.allowed_in_ci() {
        panic!(
            "{test}: CI must not skip this check ({}): {why}",
            reason.label()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_go_to_the_log_and_only_a_missing_gpu_is_allowed_in_ci() {
        assert!(SkipReason::NoGpu.allowed_in_ci());
        for r in SkipReason::ALL
            .into_iter()
            .filter(|&r| r != SkipReason::NoGpu)
        {
            assert!(!r.allowed_in_ci(), "{r:?}");
        }
        // The label set test.sh counts by: distinct, no spaces or tabs.
        let labels: std::collections::BTreeSet<_> =
            SkipReason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), SkipReason::ALL.len());
        assert!(labels.iter().all(|l| !l.contains([' ', '\t'])));
    }
}
