//! The one driver of the op case table ([`super::cases`]) against any backend pair, as
//! ggml's test-backend-ops does: each case's forward output and input gradients (VJPs of a
//! random cotangent) on a candidate backend, against the f64 CPU backend on the same inputs,
//! compared element by element ([`super::compare`]) under the tolerance of the candidate's
//! precision and the case's family. Each row carries the FLOP and byte counts of its case's
//! graph ([`super::cost`]). The CPU f32 test (tests/ops.rs), the kernel tests on the
//! emulator or a GPU (tests/cuda_parity.rs, tests/tc_bf16.rs) and `dynface kernels check
//! --parity` all call [`run_case_table`].

use super::cases::{self, Case, Tier};
use super::compare::{compare, Comparison, Tol};
use super::cost::{graph_cost, Cost};
use super::kernel_cases;
use super::parity::{eval_case, eval_case_poisoned};
use super::CheckError;
use crate::backend::cpu::CpuBackend;
use crate::backend::Backend;
use std::rc::Rc;

/// The arithmetic of a candidate backend, which sets the tolerance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arith {
    /// f32 everywhere (CPU f32, the fp32 kernels).
    Fp32,
    /// bf16 operands of the convolutions and matrix products, fp32 accumulation.
    Bf16,
}

/// fp32 tolerance per family (atol = rtol, see [`super::compare`]) and the error measured
/// for it on 2026-12-03 (`Comparison::measured`, the largest over the family's values on the
/// CPU f32 backend and on the kernel emulator; `dynface kernels check --parity` prints them
/// as "measured"). Each tolerance is 4–9× its measured error; pure data movement is exact.
pub const FP32_TOLERANCES: &[(&str, f64, f64)] = &[
    ("unary", 2e-6, 3.63e-7),
    ("binary", 4e-7, 6.15e-8),
    ("broadcast", 2e-7, 2.57e-8),
    ("reduce", 3e-7, 4.36e-8),
    ("conv2d", 2e-6, 3.46e-7),
    ("conv2d_backward", 1e-6, 1.80e-7),
    ("matmul", 1e-6, 1.81e-7),
    ("linear", 5e-7, 7.43e-8),
    ("group_norm", 5e-7, 1.07e-7),
    ("group_norm_silu", 3e-6, 5.69e-7),
    ("layer_norm", 8e-7, 1.37e-7),
    ("batch_norm", 5e-7, 8.97e-8),
    ("softmax", 2e-6, 3.05e-7),
    ("attention", 6e-6, 1.41e-6),
    ("scale_shift", 3e-7, 4.80e-8),
    ("concat_slice_pad", 2e-7, 2.56e-8),
    ("reshape_permute", 4e-7, 6.48e-8),
    ("resample", 4e-7, 6.28e-8),
    ("pixel_shuffle", 0.0, 0.0),
    ("roll", 0.0, 0.0),
    ("window", 3e-7, 4.20e-8),
    ("timestep_embedding", 2e-7, 2.25e-8),
    ("blur", 1e-6, 1.75e-7),
    ("network", 5e-6, 9.38e-7),
    // CPU only (too slow for the emulator).
    ("large", 1e-5, 2.02e-6),
];

/// bf16 tolerance of the families whose ops run on bf16 operands (convolutions, products
/// and what contains them), against the exact f64 result (operands rounded to 8 significant
/// bits, 2⁻⁹ relative each), with the error measured on the emulator on 2026-12-03. Every
/// other family runs fp32 kernels at bf16 too and keeps its [`FP32_TOLERANCES`] entry.
pub const BF16_TOLERANCES: &[(&str, f64, f64)] = &[
    ("conv2d", 5e-2, 1.36e-2),
    ("conv2d_backward", 5e-2, 1.36e-2),
    ("matmul", 3e-2, 7.49e-3),
    ("linear", 3e-2, 6.56e-3),
    ("attention", 5e-2, 1.15e-2),
    ("network", 5e-2, 1.18e-2),
];

/// fp32 tolerance per family of the kernel-sized cases ([`super::kernel_cases`]), with the
/// error measured for it on 2026-12-03 (the larger of the CPU f32 backend's and the kernel
/// emulator's, `dynface kernels check --parity`'s "kernel-sized ... measured" lines): longer
/// reductions than the small cases (K up to 1152, rows of 1024). Each is 3–9× its measured
/// error; data movement is exact.
pub const KERNEL_FP32_TOLERANCES: &[(&str, f64, f64)] = &[
    ("unary", 2e-6, 4.13e-7),
    ("binary", 3e-7, 4.72e-8),
    ("broadcast", 2e-7, 2.31e-8),
    ("reduce", 2e-7, 3.67e-8),
    ("conv2d", 8e-6, 1.44e-6),
    ("conv2d_backward", 1e-5, 2.10e-6),
    ("matmul", 5e-6, 9.92e-7),
    ("group_norm", 1e-6, 1.99e-7),
    ("layer_norm", 1e-6, 2.55e-7),
    ("softmax", 3e-6, 6.96e-7),
    ("group_norm_silu", 4e-6, 7.57e-7),
    ("concat_slice_pad", 0.0, 0.0),
    ("reshape_permute", 0.0, 0.0),
    ("roll", 0.0, 0.0),
    ("pixel_shuffle", 0.0, 0.0),
    ("resample", 3e-7, 4.68e-8),
    ("timestep_embedding", 2e-7, 2.30e-8),
    ("blur", 3e-6, 7.77e-7),
    // ∂/∂σ at σ = 200 on a 4×5 image: 1201 taps folded onto 5 pixels leave entries ~6000×
    // smaller than Σ|∂g/∂σ|, so fp32 taps and sums (the CPU f32 backend's 4.0e-4 too)
    // cannot do better; the case exists to reach the on-the-fly tap path (R > 512).
    ("blur_folded", 3e-3, 7.63e-4),
];

/// bf16 tolerance of the kernel-sized convolutions and products against the exact f64
/// result, with the error measured on the emulator on 2026-12-03 (tests/tc_bf16.rs holds
/// the same shapes to a sharper model of the bf16 arithmetic as well).
pub const KERNEL_BF16_TOLERANCES: &[(&str, f64, f64)] = &[
    ("conv2d", 5e-2, 9.61e-3),
    ("conv2d_backward", 5e-2, 1.19e-2),
    ("matmul", 5e-2, 9.75e-3),
];

fn lookup(table: &[(&str, f64, f64)], family: &str) -> Option<Tol> {
    table
        .iter()
        .find(|(f, _, _)| *f == family)
        .map(|&(_, t, _)| Tol::both(t))
}

/// The tolerance of `case` at `arith`, against the f64 CPU backend (see
/// [`FP32_TOLERANCES`], [`BF16_TOLERANCES`]). A family without an entry gets a zero
/// tolerance, so any rounding fails loudly, never a silent pass (a unit test requires an
/// entry for every family).
pub fn tolerance(case: &Case, arith: Arith) -> Tol {
    let (fp32, bf16) = match case.tier {
        Tier::Small => (FP32_TOLERANCES, BF16_TOLERANCES),
        Tier::Kernel => (KERNEL_FP32_TOLERANCES, KERNEL_BF16_TOLERANCES),
    };
    let bf16 = match arith {
        Arith::Fp32 => None,
        Arith::Bf16 => lookup(bf16, case.family),
    };
    bf16.or_else(|| lookup(fp32, case.family))
        .unwrap_or(Tol::both(0.0))
}

/// One compared value of one case.
#[derive(Clone, Debug)]
pub struct TableRow {
    pub family: &'static str,
    pub case: String,
    /// "output" or "d/d<input>".
    pub value: String,
    pub result: Result<Comparison, String>,
    /// Work of the case's whole graph (forward and VJPs), the same on every row of a case.
    pub cost: Cost,
}

impl TableRow {
    pub fn passed(&self) -> bool {
        self.result.as_ref().is_ok_and(|c| c.passed())
    }
}

/// What a table run did: the compared rows, and the cases the candidate does not implement
/// (reported, never counted as passed).
#[derive(Clone, Debug, Default)]
pub struct TableRun {
    pub rows: Vec<TableRow>,
    pub unsupported: Vec<String>,
}

impl TableRun {
    pub fn failures(&self) -> Vec<String> {
        self.rows
            .iter()
            .filter(|r| !r.passed())
            .map(format_row)
            .collect()
    }
}

/// Whether a case is selected by `filter` (a substring of "family/name"; None: all).
pub fn selected(case: &Case, filter: Option<&str>) -> bool {
    filter.is_none_or(|f| format!("{}/{}", case.family, case.name).contains(f))
}

/// Runs every selected small case ([`cases::all`]) on `candidate` (at `arith`) and on the
/// f64 CPU backend, comparing each value element by element. `include_large` adds the
/// family of larger cases (slow on the kernel emulator).
pub fn run_case_table<B: Backend>(
    candidate: Rc<B>,
    arith: Arith,
    filter: Option<&str>,
    include_large: bool,
) -> TableRun {
    let list: Vec<Case> = cases::all()
        .into_iter()
        .filter(|c| include_large || c.family != "large")
        .collect();
    run_cases(candidate, arith, &list, filter)
}

/// [`run_case_table`] on the kernel-sized cases ([`kernel_cases::all`]).
pub fn run_kernel_table<B: Backend>(
    candidate: Rc<B>,
    arith: Arith,
    filter: Option<&str>,
) -> TableRun {
    run_cases(candidate, arith, &kernel_cases::all(), filter)
}

/// Runs the selected cases of `list` on `candidate` and on the f64 CPU backend. The
/// candidate's arena is filled with NaN before its inputs are written, so an output element
/// no kernel wrote fails the comparison.
pub fn run_cases<B: Backend>(
    candidate: Rc<B>,
    arith: Arith,
    list: &[Case],
    filter: Option<&str>,
) -> TableRun {
    let mut run = TableRun::default();
    for c in list {
        if !selected(c, filter) {
            continue;
        }
        let seed = c.seed();
        let label = format!("{}/{}", c.family, c.name);
        let reference = match eval_case(CpuBackend::<f64>::new(), c, seed) {
            Ok(v) => v,
            Err(CheckError::Unsupported(m)) => {
                run.unsupported.push(format!("{label}: CPU reference: {m}"));
                continue;
            }
            Err(e) => {
                run.rows.push(TableRow {
                    family: c.family,
                    case: c.name.clone(),
                    value: "output".into(),
                    result: Err(format!("CPU reference: {e}")),
                    cost: Cost::default(),
                });
                continue;
            }
        };
        let got = match eval_case_poisoned(candidate.clone(), c, seed) {
            Ok(v) => v,
            Err(CheckError::Unsupported(m)) => {
                run.unsupported.push(format!("{label}: {m}"));
                continue;
            }
            Err(e) => {
                run.rows.push(TableRow {
                    family: c.family,
                    case: c.name.clone(),
                    value: "output".into(),
                    result: Err(e.to_string()),
                    cost: Cost::default(),
                });
                continue;
            }
        };
        let tol = tolerance(c, arith);
        let graph = if c.differentiable {
            c.grad_graph()
        } else {
            c.forward_graph()
        };
        let cost = graph.map(|cg| graph_cost(&cg.graph)).unwrap_or_default();
        for ((name, g), w) in got.names.iter().zip(&got.values).zip(&reference.values) {
            let result = if g.shape != w.shape {
                Err(format!("shape {:?}, reference {:?}", g.shape, w.shape))
            } else {
                Ok(compare(&g.data, &w.data, &w.shape, tol))
            };
            run.rows.push(TableRow {
                family: c.family,
                case: c.name.clone(),
                value: name.clone(),
                result,
                cost,
            });
        }
    }
    run
}

/// One log line: verdict, family/case, value, the comparison.
pub fn format_row(r: &TableRow) -> String {
    let status = if r.passed() { "  ok" } else { "FAIL" };
    let what = format!("{}/{} {}", r.family, r.case, r.value);
    let work = format!(
        "{:.1} kFLOP {:.1} kB",
        r.cost.flops as f64 / 1e3,
        r.cost.bytes as f64 / 1e3
    );
    match &r.result {
        Ok(c) => format!("{status} {what:<64} {work:<24} {c}"),
        Err(e) => format!("{status} {what:<64} {work:<24} {e}"),
    }
}

/// The largest measured error per family (for setting tolerances), as log lines.
pub fn measured_by_family(run: &TableRun) -> Vec<String> {
    let mut m: std::collections::BTreeMap<&str, f64> = Default::default();
    for r in &run.rows {
        if let Ok(c) = &r.result {
            let e = m.entry(r.family).or_default();
            *e = e.max(c.measured);
        }
    }
    m.into_iter()
        .map(|(f, e)| format!("measured {f:<20} {e:.2e}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_an_fp32_tolerance_within_ten_times_its_measured_error() {
        for f in cases::FAMILIES {
            let (_, tol, measured) = FP32_TOLERANCES
                .iter()
                .find(|(name, _, _)| name == f)
                .unwrap_or_else(|| panic!("family {f} has no fp32 tolerance"));
            assert!(*tol <= 10.0 * measured, "{f}: {tol:e} > 10 × {measured:e}");
            assert!(*tol >= *measured, "{f}: {tol:e} < measured {measured:e}");
        }
        for (f, tol, measured) in BF16_TOLERANCES {
            assert!(cases::FAMILIES.contains(f), "{f}");
            assert!(*tol <= 10.0 * measured && tol >= measured, "{f} bf16");
        }
    }

    #[test]
    fn every_kernel_case_family_has_a_tolerance_within_ten_times_its_measured_error() {
        let families = kernel_cases::families();
        for f in &families {
            let (_, tol, measured) = KERNEL_FP32_TOLERANCES
                .iter()
                .find(|(name, _, _)| name == f)
                .unwrap_or_else(|| panic!("kernel family {f} has no fp32 tolerance"));
            assert!(*tol <= 10.0 * measured, "{f}: {tol:e} > 10 × {measured:e}");
            assert!(*tol >= *measured, "{f}: {tol:e} < measured {measured:e}");
        }
        for (f, tol, measured) in KERNEL_FP32_TOLERANCES.iter().chain(KERNEL_BF16_TOLERANCES) {
            assert!(families.contains(f), "{f}: a tolerance without cases");
            assert!(*tol <= 10.0 * measured && tol >= measured, "{f}");
        }
    }
}
