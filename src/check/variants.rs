//! Every convolution and matrix-product kernel variant against the CPU: each shape of a small
//! table runs through each forced tile shape (64×64, 64×128, 128×128) and, for the
//! convolutions, without and with a split over K, on any kernel backend (the GPU or the CPU
//! emulator of the kernel sources), compared element by element with the f64 CPU backend.
//! The launch heuristics alone would send every small test shape to the 64×64 tile; the
//! shapes here are small but cross the 128-row and 128-column boundaries of the big tiles.
//! [`conv_gemm_entry_points`] lists the entry points this table must reach, so a test can
//! fail when one was never launched.

use super::compare::{compare, Comparison, Tol};
use super::kernel_cases::{VARIANT_CONV_SHAPES, VARIANT_MATMUL_SHAPES};
use crate::backend::cpu::run_op;
use crate::backend::cuda::kernels::FILES;
use crate::backend::cuda::variant::TILES;
use crate::backend::cuda::{KernelBackend, Precision, Variant};
use crate::backend::{BackendError, Operand, Scratch};
use crate::graph::{Graph, Op};
use crate::tensor::{numel, random, Tensor};

/// Per op kind: (fp32 tolerance, fp32 error measured, bf16 tolerance, bf16 error measured),
/// element-wise with atol = rtol ([`super::compare`]). fp32 is against the f64 CPU; bf16
/// against the f64 CPU on bf16-rounded operands (what is left is the fp32 accumulation; the
/// weight gradient runs the fp32 kernel at both precisions). Measured on the emulator on
/// 2026-12-03: the largest over this table's shapes and every tile / split variant; each
/// tolerance is about 4× its measured error.
pub const VARIANT_TOLERANCES: &[(&str, f64, f64, f64, f64)] = &[
    ("conv2d", 4e-6, 1.09e-6, 2e-6, 4.51e-7),
    ("conv2d_backward_input", 8e-6, 2.13e-6, 3e-6, 8.45e-7),
    ("conv2d_backward_weight", 3e-6, 7.42e-7, 3e-6, 7.42e-7),
    ("matmul", 2e-6, 4.49e-7, 8e-7, 1.93e-7),
];

/// The tolerance of `op` (one of [`VARIANT_TOLERANCES`]) at `precision`; zero (any rounding
/// fails) for an op without an entry.
pub fn tolerance(op: &Op, precision: Precision) -> Tol {
    VARIANT_TOLERANCES
        .iter()
        .find(|e| e.0 == op.kind())
        .map(|e| match precision {
            Precision::Fp32 => Tol::both(e.1),
            Precision::Bf16 => Tol::both(e.3),
        })
        .unwrap_or(Tol::both(0.0))
}

/// One op of the table: its inputs' shapes and how it is named in the log.
#[derive(Clone, Debug)]
pub struct VariantCase {
    pub name: String,
    pub op: Op,
    pub shapes: Vec<Vec<usize>>,
}

/// One checked (case, variant) pair.
#[derive(Clone, Debug)]
pub struct VariantRow {
    pub case: String,
    pub variant: Variant,
    pub result: Result<Comparison, String>,
}

impl VariantRow {
    pub fn passed(&self) -> bool {
        self.result.as_ref().is_ok_and(|c| c.passed())
    }
}

/// The conv shapes and product shapes of the table: `check::kernel_cases`'s
/// [`VARIANT_CONV_SHAPES`] and [`VARIANT_MATMUL_SHAPES`] (the bias of a convolution is the
/// epilogue's, the same in every variant).
pub fn variant_cases() -> Vec<VariantCase> {
    let mut v = vec![];
    for s in VARIANT_CONV_SHAPES {
        let (p, xs, ws) = (s.params(), s.x, s.w);
        let ys = s.out_shape().to_vec();
        v.push(VariantCase {
            name: format!("conv2d {}", s.name),
            op: Op::Conv2d(p),
            shapes: vec![xs.to_vec(), ws.to_vec(), vec![ws[0]]],
        });
        v.push(VariantCase {
            name: format!("conv2d_backward_input {}", s.name),
            op: Op::Conv2dBackwardInput {
                p,
                in_hw: (xs[2], xs[3]),
            },
            shapes: vec![ys.clone(), ws.to_vec()],
        });
        v.push(VariantCase {
            name: format!("conv2d_backward_weight {}", s.name),
            op: Op::Conv2dBackwardWeight { p, w_shape: ws },
            shapes: vec![xs.to_vec(), ys],
        });
    }
    for m in VARIANT_MATMUL_SHAPES {
        v.push(VariantCase {
            name: format!("matmul {}", m.name()),
            op: Op::MatMul {
                trans_a: m.trans_a,
                trans_b: m.trans_b,
            },
            shapes: vec![m.a.to_vec(), m.b.to_vec()],
        });
    }
    v
}

/// The variants a case runs through: every tile; for convolutions each without a split and
/// with three K splits (partials reduced by `splitk_reduce`).
pub fn variants_of(case: &VariantCase) -> Vec<Variant> {
    let splits: &[Option<usize>] = match case.op {
        Op::MatMul { .. } => &[None],
        _ => &[Some(1), Some(3)],
    };
    TILES
        .iter()
        .flat_map(|&t| {
            splits.iter().map(move |&s| Variant {
                tile: Some(t),
                splits: s,
            })
        })
        .collect()
}

/// Every conv and gemm entry point of `kernels/` (conv.cu, conv_tc.cu, gemm.cu, gemm_tc.cu,
/// without the bf16 rounding helper and the single-mma probe, which tc_bf16 checks alone).
pub fn conv_gemm_entry_points() -> Vec<&'static str> {
    FILES
        .iter()
        .filter(|f| matches!(f.name, "conv" | "conv_tc" | "gemm" | "gemm_tc"))
        .flat_map(|f| f.kernels.iter().copied())
        .filter(|k| !matches!(*k, "bf16_round" | "mma_probe"))
        .collect()
}

/// Whether `op` runs on bf16 operands at `Precision::Bf16` (its first two inputs; the
/// weight gradient stays fp32).
fn rounds_operands(op: &Op) -> bool {
    matches!(
        op,
        Op::Conv2d(_) | Op::Conv2dBackwardInput { .. } | Op::MatMul { .. }
    )
}

fn bf16(v: f32) -> f64 {
    half::bf16::from_f32(v).to_f64()
}

/// `op` on the f64 CPU backend, on the inputs as the device's kernels see them.
pub fn cpu_reference(
    op: &Op,
    inputs: &[Tensor<f32>],
    out_shape: &[usize],
    precision: Precision,
) -> Result<Vec<f64>, String> {
    let round = precision == Precision::Bf16 && rounds_operands(op);
    let ins: Vec<Vec<f64>> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.data
                .iter()
                .map(|&v| if round && i < 2 { bf16(v) } else { v as f64 })
                .collect()
        })
        .collect();
    let xs: Vec<&[f64]> = ins.iter().map(|v| v.as_slice()).collect();
    let ss: Vec<&[usize]> = inputs.iter().map(|t| t.shape.as_slice()).collect();
    let mut y = vec![0.0; numel(out_shape)];
    run_op(op, &xs, &ss, &mut y, out_shape).map_err(|e| e.to_string())?;
    Ok(y)
}

/// Runs one op on `be` on an arena poisoned with NaN (so an unwritten output element shows)
/// with a 64-value NaN guard band after the output (a write past its end is an error).
pub fn run_op_poisoned<B: KernelBackend>(
    be: &B,
    op: &Op,
    inputs: &[&Tensor<f32>],
) -> Result<Tensor<f32>, String> {
    let mut g = Graph::new();
    let ids: Vec<_> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| g.input(&format!("in{i}"), &t.shape))
        .collect();
    let id = g.push(op.clone(), &ids).map_err(|e| e.to_string())?;
    let node = g.node(id).clone();
    let mut offsets = vec![];
    let mut at = 0;
    for t in inputs {
        offsets.push(at);
        at += t.numel().max(1);
    }
    let out_off = at;
    let n_out = numel(&node.shape);
    // Input shapes, then the op's scratch after the guard band (poisoned too).
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape.as_slice()).collect();
    let scratch = Scratch {
        offset: at + n_out.max(1) + 64,
        len: be.scratch_len(&node, &shapes),
    };
    let total = scratch.offset + scratch.len;
    let e = |e: BackendError| e.to_string();
    let mut arena = be.alloc(total).map_err(e)?;
    be.fill(&mut arena, 0, total, f32::NAN).map_err(e)?;
    for (t, &o) in inputs.iter().zip(&offsets) {
        be.write(&mut arena, o, &t.data).map_err(e)?;
    }
    let ops: Vec<Operand> = inputs
        .iter()
        .zip(&offsets)
        .map(|(t, &o)| Operand {
            offset: o,
            shape: &t.shape,
        })
        .collect();
    let out = Operand {
        offset: out_off,
        shape: &node.shape,
    };
    be.exec(&mut arena, &node, &ops, out, scratch).map_err(e)?;
    let data = be.read(&arena, out_off, n_out).map_err(e)?;
    if be
        .read(&arena, out_off + n_out, 64)
        .map_err(e)?
        .iter()
        .any(|v| !v.is_nan())
    {
        return Err("kernel wrote past the end of its output".into());
    }
    Ok(Tensor::new(node.shape.clone(), data))
}

/// Fresh inputs for `case`: N(0, 1) activations and cotangents, N(0, 0.2²) weights.
pub fn draw_inputs(case: &VariantCase, seed: u64) -> Vec<Tensor<f32>> {
    let mut r = random::rng(seed);
    case.shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let weight =
                matches!(case.op, Op::Conv2d(_) | Op::Conv2dBackwardInput { .. }) && i == 1;
            random::normal::<f32>(&mut r, s, if weight { 0.2 } else { 1.0 })
        })
        .collect()
}

/// Runs every case whose name contains `filter` through each of its variants on `be`
/// (whose conv / product precision is `precision`), restoring the heuristics afterwards.
pub fn run_variant_table<B: KernelBackend>(
    be: &B,
    precision: Precision,
    filter: Option<&str>,
) -> Vec<VariantRow> {
    let mut rows = vec![];
    for (ci, case) in variant_cases().into_iter().enumerate() {
        if filter.is_some_and(|f| !case.name.contains(f)) {
            continue;
        }
        let tol = tolerance(&case.op, precision);
        let inputs = draw_inputs(&case, 0x7a11 + ci as u64);
        let refs: Vec<&Tensor<f32>> = inputs.iter().collect();
        let shape = output_shape(&case);
        let want = shape
            .clone()
            .and_then(|shape| cpu_reference(&case.op, &inputs, &shape, precision));
        for v in variants_of(&case) {
            be.force_variant(v);
            let result = match (&want, run_op_poisoned(be, &case.op, &refs)) {
                (Err(e), _) => Err(format!("CPU reference: {e}")),
                (_, Err(e)) => Err(e),
                (Ok(want), Ok(got)) => {
                    let got: Vec<f64> = got.data.iter().map(|&v| v as f64).collect();
                    Ok(compare(&got, want, shape.as_deref().unwrap_or(&[]), tol))
                }
            };
            rows.push(VariantRow {
                case: case.name.clone(),
                variant: v,
                result,
            });
        }
    }
    be.force_variant(Variant::default());
    rows
}

/// The output shape of a case's op (shape inference only).
fn output_shape(case: &VariantCase) -> Result<Vec<usize>, String> {
    let mut g = Graph::new();
    let ids: Vec<_> = case
        .shapes
        .iter()
        .enumerate()
        .map(|(i, s)| g.input(&format!("in{i}"), s))
        .collect();
    let id = g.push(case.op.clone(), &ids).map_err(|e| e.to_string())?;
    Ok(g.shape(id).to_vec())
}

/// One log line per row: verdict, case, variant, the comparison.
pub fn format_row(r: &VariantRow) -> String {
    let status = if r.passed() { "  ok" } else { "FAIL" };
    match &r.result {
        Ok(c) => format!("{status} {:<58} {:<18} {c}", r.case, r.variant.label()),
        Err(e) => format!("{status} {:<58} {:<18} {e}", r.case, r.variant.label()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_reaches_every_tile_and_both_split_modes() {
        let cases = variant_cases();
        for t in TILES {
            assert!(cases
                .iter()
                .flat_map(variants_of)
                .any(|v| v.tile == Some(t) && v.splits == Some(3)));
        }
        for (kind, t32, m32, t16, m16) in VARIANT_TOLERANCES {
            assert!(*t32 >= *m32 && *t32 <= 10.0 * m32, "{kind} fp32");
            assert!(*t16 >= *m16 && *t16 <= 10.0 * m16, "{kind} bf16");
        }
        let eps = conv_gemm_entry_points();
        assert_eq!(eps.len(), 40, "{eps:?}");
        assert!(eps.contains(&"splitk_reduce") && eps.contains(&"gemm_tc_v1_64x128_tn"));
    }

    /// The harness can fail: a deliberately wrong convolution, the correct fp32 result except
    /// that the last output element misses one term of its K sum (what an off-by-one loop
    /// bound at one tile's edge does), at a UNet-like shape (64→64 ch, 32², batch 2). The
    /// element-wise check names that element; the norm-wise error stays below 1e-4, the
    /// tolerance cuda_parity used before, which would have passed it.
    #[test]
    fn an_off_by_one_variant_fails_element_wise_while_the_norm_passes_the_old_tolerance() {
        let p = crate::graph::Conv2dParams {
            stride: 1,
            pad: 1,
            groups: 1,
        };
        let case = VariantCase {
            name: "conv2d UNet 64→64 at 32², batch 2".into(),
            op: Op::Conv2d(p),
            shapes: vec![vec![2, 64, 32, 32], vec![64, 64, 3, 3]],
        };
        let ins = draw_inputs(&case, 5);
        let shape = output_shape(&case).unwrap();
        let want = cpu_reference(&case.op, &ins, &shape, Precision::Fp32).unwrap();
        let run_f32 = |ins: &[Tensor<f32>]| {
            let xs: Vec<&[f32]> = ins.iter().map(|t| t.data.as_slice()).collect();
            let ss: Vec<&[usize]> = ins.iter().map(|t| t.shape.as_slice()).collect();
            let mut y = vec![0.0f32; numel(&shape)];
            run_op(&case.op, &xs, &ss, &mut y, &shape).unwrap();
            y
        };
        let good: Vec<f64> = run_f32(&ins).iter().map(|&v| v as f64).collect();
        let tol = tolerance(&case.op, Precision::Fp32);
        let ok = compare(&good, &want, &shape, tol);
        assert!(ok.passed(), "the correct fp32 conv must pass: {ok}");
        // The dropped term: one of the last element's (output pixel [1, 63, 31, 31]) in-image
        // products x·w of typical size, the median |x·w|, so no lucky value decides.
        let (x, w) = (&ins[0].data, &ins[1].data);
        let mut terms = vec![];
        for c in 0..64 {
            for (kh, kw) in (0..2).flat_map(|a| (0..2).map(move |b| (a, b))) {
                // pad 1: taps kh, kw ∈ {0, 1} read rows / columns 30, 31; tap 2 is padding.
                let xi = ((64 + c) * 32 + 30 + kh) * 32 + 30 + kw;
                let wi = ((63 * 64 + c) * 3 + kh) * 3 + kw;
                terms.push(x[xi] as f64 * w[wi] as f64);
            }
        }
        terms.sort_by(|a, b| a.abs().total_cmp(&b.abs()));
        let term = terms[terms.len() / 2];
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] -= term;
        let c = compare(&bad, &want, &shape, tol);
        println!("correct: {ok}\nwrong:   {c}\n(dropped term {term:.3e})");
        assert!(
            !c.passed(),
            "the element-wise check missed the wrong element: {c}"
        );
        assert_eq!(c.worst, last, "{c}");
        assert!(c.to_string().contains("[1, 63, 31, 31]"), "{c}");
        assert!(
            c.norm_rel < 1e-4,
            "the bug should hide under the old norm-wise tolerance 1e-4 for this to prove \
             anything: {c}"
        );
    }
}
