//! The bf16 tensor-core kernels (`Precision::Bf16`): convolution forward and input gradient
//! (kernels/conv_tc.cu) and batched matrix products (kernels/gemm_tc.cu), on fresh seeded
//! random inputs, at the shapes of the one case table (`check::kernel_cases::CONV_SHAPES`,
//! `MATMUL_SHAPES`; this file keeps no shape list). Conv shapes hit the edge tiles (channel and pixel counts that are not
//! multiples of 16 / 8), 1×1 and 3×3, stride 1 and 2, padding, groups, batch > 1 and a
//! UNet-like layer; products cover all four transpose combinations, broadcast batch axes,
//! odd sizes and attention-like q·kᵀ and ·v shapes. Each result is checked two ways:
//!
//! (a) against a CPU reference of the same arithmetic: operands rounded to bf16
//!     (nearest-even, `half::bf16`), products and sums in f64. What may remain is the fp32
//!     accumulation of the device: per output, with S = Σ|aᵢ·bᵢ| + |bias| over its K terms, a
//!     recursive fp32 sum of the K products, the split-K partial sums (≤ K/256 + 1 of them)
//!     and the bias has |error| ≤ n·u·S with n = K + K/256 + 3 additions. u = 2⁻²³, not
//!     2⁻²⁴: tensor cores align and truncate inside their block sums instead of rounding to
//!     nearest, so each addition may lose a whole unit in the last place. That worst case is
//!     25–1000× above the errors measured (the roundings are independent, so they grow as √n,
//!     not n): the test holds every element to ½·√n·u·S instead (S from the same reference on
//!     |a|, |b|, |bias|), about 3× the largest error measured, and prints the largest
//!     error / bound ratio.
//! (b) against the exact result of the unrounded fp32 inputs: ‖Δ‖/‖ref‖ ≤ 1e-2 (bf16 keeps 8
//!     significant bits: about 2⁻⁹ relative error per rounded operand), printed.
//!
//! Plus the rounding helper itself (`bf16_rne`, kernels/mma.cuh) bit for bit against
//! `half::bf16::from_f32` on random floats, exact ties, NaNs, infinities and subnormals; a
//! single mma with integer operands that must come out exact (the fragment layout on its own);
//! a small network's forward pass and input gradient through the executor; and the tiny
//! UNet fixtures at bf16 against PyTorch's golden, measured against the error of an
//! exact-accumulation bf16 reference in the same run.
//!
//! Runs on the GPU when there is one, else on the CPU emulator of the kernels (which emulates
//! `mma.sync` lane by lane: a test of the launch code, fragment layouts and index arithmetic,
//! not of the GPU); on the emulator the conv and matmul cases run twice, with the
//! multiprocessor count the launch code plans for set to 132 (small tiles, split-K, as on an
//! H100) and to 1 (the largest tiles, no split), so all three tile shapes run.
//! DYNFACE_NO_EMU=1 skips the emulator.

#[path = "support/kernel_device.rs"]
mod kernel_device;

use dynface::backend::cpu::run_op;
use dynface::backend::cuda::{KernelBackend, Precision};
use dynface::backend::Operand;
use dynface::check::kernel_cases::{CONV_SHAPES, MATMUL_SHAPES};
use dynface::graph::{Graph, Op};
use dynface::tensor::random::{normal, rng};
use dynface::tensor::{numel, Tensor};
use half::bf16;
use kernel_device::{run_op_on, Device};
use rand::Rng;

fn device(test: &str) -> Option<Device> {
    kernel_device::device(test, Precision::Bf16)
}

/// One op on the device (see `kernel_device::run_op_on`); an output element left NaN means
/// the kernel never wrote it (no op under test here makes NaN from finite inputs).
fn on_device<B: KernelBackend>(
    be: &B,
    op: &Op,
    inputs: &[&Tensor<f32>],
) -> Result<Tensor<f32>, String> {
    let t = run_op_on(be, op, inputs)?;
    if let Some(i) = t.data.iter().position(|v| v.is_nan()) {
        return Err(format!("NaN at output element {i} (unwritten?)"));
    }
    Ok(t)
}

/// `op` on the CPU in f64, after `f` is applied to every input element.
fn reference(
    op: &Op,
    inputs: &[&Tensor<f32>],
    out_shape: &[usize],
    f: &[fn(f32) -> f64],
) -> Vec<f64> {
    let ins: Vec<Vec<f64>> = inputs
        .iter()
        .zip(f)
        .map(|(t, f)| t.data.iter().map(|&v| f(v)).collect())
        .collect();
    let xs: Vec<&[f64]> = ins.iter().map(|v| v.as_slice()).collect();
    let ss: Vec<&[usize]> = inputs.iter().map(|t| t.shape.as_slice()).collect();
    let mut y = vec![0.0f64; numel(out_shape)];
    run_op(op, &xs, &ss, &mut y, out_shape).expect("CPU reference");
    y
}

fn exact(v: f32) -> f64 {
    v as f64
}
fn to_bf16(v: f32) -> f64 {
    bf16::from_f32(v).to_f64()
}
fn abs_bf16(v: f32) -> f64 {
    bf16::from_f32(v).to_f64().abs()
}
fn abs_exact(v: f32) -> f64 {
    (v as f64).abs()
}

/// Unit roundoff of an fp32 addition that may truncate (see the module comment).
const U_TRUNC: f64 = 1.0 / (1u64 << 23) as f64;
/// Per-element bound |Δ| ≤ SQRT_N_FACTOR·√n·u·S. Measured on the emulator (2026-12-03): the
/// largest |Δ| / (√n·u·S) over every conv and product shape of `check::kernel_cases` was 0.18
/// (the depthwise 8-channel forward, K = 9; printed as |Δ|/bound 0.364), and 0.14 for the
/// single mma; ½ is about 2.7× the former. (Before: the worst-case n·u·S, which the measured
/// errors used at most 4 % of.)
const SQRT_N_FACTOR: f64 = 0.5;
/// Bound (b): norm-wise relative error of bf16 operands against the exact fp32-input result
/// (measured 1.3e-3 to 2.6e-3 over the conv and product cases, 1.7e-3 / 2.3e-3 for the
/// network's forward / input gradient: about 4×).
const TOL_VS_FP32: f64 = 1e-2;

struct Outcome {
    /// max over elements of |device − bf16 reference| / bound
    ratio: f64,
    /// ‖device − exact‖ / ‖exact‖
    rel_fp32: f64,
}

/// Checks one op (`Conv2d` with inputs x, w[, bias], `Conv2dBackwardInput` with dy, w, or
/// `MatMul` with a, b) whose reduction length is `k`. The last input is the bias when `bias` (kept in fp32 by the
/// kernels: it is added in the epilogue, not multiplied).
fn check<B: KernelBackend>(
    be: &B,
    op: &Op,
    inputs: &[&Tensor<f32>],
    k: usize,
    bias: bool,
) -> Result<Outcome, String> {
    let got = on_device(be, op, inputs)?;
    let shape = &got.shape;
    let mut f_round: Vec<fn(f32) -> f64> = vec![to_bf16, to_bf16];
    let mut f_abs: Vec<fn(f32) -> f64> = vec![abs_bf16, abs_bf16];
    if bias {
        f_round.push(exact);
        f_abs.push(abs_exact);
    }
    let want = reference(op, inputs, shape, &f_round);
    let mass = reference(op, inputs, shape, &f_abs);
    let f_exact: [fn(f32) -> f64; 3] = [exact, exact, exact];
    let exact_ref = reference(op, inputs, shape, &f_exact[..inputs.len()]);
    let n_add = (k + k / 256 + 3) as f64;
    let mut ratio: f64 = 0.0;
    for (i, ((&g, &w), &s)) in got.data.iter().zip(&want).zip(&mass).enumerate() {
        let err = (g as f64 - w).abs();
        let bound = SQRT_N_FACTOR * n_add.sqrt() * U_TRUNC * s;
        if err > bound {
            return Err(format!(
                "element {:?}: device {g:e}, bf16-operand reference {w:e}, |Δ| {err:.3e} > \
                 fp32-accumulation bound {bound:.3e} (½·√{n_add}·u·Σ|terms|, Σ|terms| {s:.3e})",
                dynface::check::compare::multi_index(i, shape)
            ));
        }
        if bound > 0.0 {
            ratio = ratio.max(err / bound);
        }
    }
    let rel_fp32 = got
        .cast::<f64>()
        .rel_err(&Tensor::new(shape.clone(), exact_ref));
    Ok(Outcome { ratio, rel_fp32 })
}

fn run_cases<B: KernelBackend>(be: &B, label: &str) -> Vec<String> {
    let mut r = rng(91);
    let mut failures = vec![];
    // The kernel-sized convolutions of the one case table (`check::kernel_cases`).
    for s in CONV_SHAPES {
        let (name, xs, ws, groups, with_bias) = (s.name, s.x, s.w, s.groups, s.bias);
        let p = s.params();
        let [_, _, oh, ow] = s.out_shape();
        let x = normal::<f32>(&mut r, &xs, 1.0);
        let w = normal::<f32>(&mut r, &ws, 0.2);
        let b = normal::<f32>(&mut r, &[ws[0]], 1.0);
        let dy = normal::<f32>(&mut r, &[xs[0], ws[0], oh, ow], 1.0);
        let k_fwd = ws[1] * ws[2] * ws[3];
        let k_bwd = ws[0] / groups * ws[2] * ws[3];
        let mut fwd_in = vec![&x, &w];
        if with_bias {
            fwd_in.push(&b);
        }
        let runs = [
            ("forward", Op::Conv2d(p), fwd_in, k_fwd, with_bias),
            (
                "input gradient",
                Op::Conv2dBackwardInput {
                    p,
                    in_hw: (xs[2], xs[3]),
                },
                vec![&dy, &w],
                k_bwd,
                false,
            ),
        ];
        for (what, op, ins, k, bias) in runs {
            let tag = format!("[{label}] {what:<14} {name}");
            match check(be, &op, &ins, k, bias) {
                Ok(o) => {
                    let ok = o.rel_fp32 <= TOL_VS_FP32;
                    println!(
                        "{} {tag:<76} |Δ|/bound {:.4}  rel err vs fp32 {:.2e} (tol {TOL_VS_FP32:.0e})",
                        if ok { "  ok" } else { "FAIL" },
                        o.ratio,
                        o.rel_fp32
                    );
                    if !ok {
                        failures.push(format!(
                            "{tag}: relative error vs the fp32 result {:.3e} > {TOL_VS_FP32:.0e}",
                            o.rel_fp32
                        ));
                    }
                }
                Err(e) => {
                    println!("FAIL {tag}: {e}");
                    failures.push(format!("{tag}: {e}"));
                }
            }
        }
    }
    failures
}

#[test]
fn bf16_tensor_core_conv_forward_and_input_gradient() {
    let test = "tc conv";
    let failures = match device(test) {
        None => return,
        Some(Device::Cuda(b)) => run_cases(&*b, "gpu"),
        Some(Device::Emu(mut e)) => {
            let mut f = vec![];
            for sms in [132, 1] {
                e.set_sms(sms);
                f.extend(run_cases(&e, &format!("emu, {sms} SMs")));
            }
            f
        }
    };
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn run_matmul_cases<B: KernelBackend>(be: &B, label: &str) -> Vec<String> {
    let mut r = rng(94);
    let mut failures = vec![];
    // The kernel-sized products of the one case table (`check::kernel_cases`).
    for m in MATMUL_SHAPES {
        let a = normal::<f32>(&mut r, m.a, 1.0);
        let b = normal::<f32>(&mut r, m.b, 1.0);
        let k = m.k();
        let op = Op::MatMul {
            trans_a: m.trans_a,
            trans_b: m.trans_b,
        };
        let tag = format!("[{label}] matmul {}", m.name());
        match check(be, &op, &[&a, &b], k, false) {
            Ok(o) => {
                let ok = o.rel_fp32 <= TOL_VS_FP32;
                println!(
                    "{} {tag:<76} |Δ|/bound {:.4}  rel err vs fp32 {:.2e} (tol {TOL_VS_FP32:.0e})",
                    if ok { "  ok" } else { "FAIL" },
                    o.ratio,
                    o.rel_fp32
                );
                if !ok {
                    failures.push(format!(
                        "{tag}: relative error vs the fp32 result {:.3e} > {TOL_VS_FP32:.0e}",
                        o.rel_fp32
                    ));
                }
            }
            Err(e) => {
                println!("FAIL {tag}: {e}");
                failures.push(format!("{tag}: {e}"));
            }
        }
    }
    failures
}

#[test]
fn bf16_tensor_core_matmul_batched_transposed_broadcast() {
    let test = "tc matmul";
    let failures = match device(test) {
        None => return,
        Some(Device::Cuda(b)) => run_matmul_cases(&*b, "gpu"),
        Some(Device::Emu(mut e)) => {
            let mut f = vec![];
            for sms in [132, 1] {
                e.set_sms(sms);
                f.extend(run_matmul_cases(&e, &format!("emu, {sms} SMs")));
            }
            f
        }
    };
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Floats that exercise every branch of fp32 → bf16 rounding.
fn rounding_inputs() -> Vec<f32> {
    let mut r = rng(92);
    let mut v: Vec<f32> = vec![];
    // Random bit patterns: every exponent, subnormals, NaNs and infinities included.
    for _ in 0..20000 {
        v.push(f32::from_bits(r.gen::<u32>()));
    }
    // Ordinary values across many magnitudes.
    for _ in 0..5000 {
        let m: f32 = r.gen_range(-1.0..1.0);
        v.push(m * 2f32.powi(r.gen_range(-140..128)));
    }
    // Exact ties (low half 0x8000) with even and odd kept bit, and their neighbours.
    for _ in 0..4000 {
        let hi = r.gen::<u32>() & 0xffff_0000;
        for lo in [0x8000u32, 0x7fff, 0x8001, 0x0000, 0xffff] {
            v.push(f32::from_bits(hi | lo));
        }
    }
    for bits in [
        0x7f80_0000u32, // +inf
        0xff80_0000,    // −inf
        0x7fc0_0000,    // quiet NaN
        0xffc0_0001,    // negative NaN with payload
        0x7f80_0001,    // signalling NaN, payload only in the low half
        0x7fbf_ffff,    // signalling NaN whose rounding would carry
        0x7f7f_ffff,    // largest finite: rounds to +inf
        0x7f7f_7fff,    // just below the tie to +inf
        0x7f7f_8000,    // the tie to +inf (kept bit odd: rounds up)
        0x0000_0001,    // smallest subnormal
        0x0000_8000,    // subnormal tie, kept bit even: rounds down to +0
        0x0001_8000,    // subnormal tie, kept bit odd: rounds up
        0x007f_ffff,    // largest subnormal: rounds to the smallest normal
        0x8000_0000,    // −0
        0x0000_0000,    // +0
    ] {
        v.push(f32::from_bits(bits));
    }
    v
}

fn rounding_check<B: KernelBackend>(be: &B) -> Result<usize, String> {
    let xs = rounding_inputs();
    let n = xs.len();
    let e = |e: dynface::backend::BackendError| e.to_string();
    let mut arena = be.alloc(2 * n).map_err(e)?;
    be.fill(&mut arena, n, n, f32::NAN).map_err(e)?;
    be.write(&mut arena, 0, &xs).map_err(e)?;
    be.bf16_round(&arena, 0, n, n).map_err(e)?;
    let got = be.read(&arena, n, n).map_err(e)?;
    let mut bad = vec![];
    for (x, y) in xs.iter().zip(&got) {
        let want = (bf16::from_f32(*x).to_bits() as u32) << 16;
        if y.to_bits() != want {
            bad.push(format!(
                "{:#010x} → {:#010x}, half::bf16 gives {want:#010x}",
                x.to_bits(),
                y.to_bits()
            ));
        }
    }
    if bad.is_empty() {
        Ok(n)
    } else {
        Err(format!(
            "{} of {n} roundings differ, e.g.\n{}",
            bad.len(),
            bad[..bad.len().min(10)].join("\n")
        ))
    }
}

#[test]
fn bf16_rounding_helper_matches_half_bit_for_bit() {
    let test = "bf16 rounding";
    let res = match device(test) {
        None => return,
        Some(Device::Cuda(b)) => rounding_check(&*b),
        Some(Device::Emu(e)) => rounding_check(&e),
    };
    match res {
        Ok(n) => {
            println!("{test}: {n} values, every bf16 bit pattern equal to half::bf16::from_f32")
        }
        Err(e) => panic!("{test}: {e}"),
    }
}

/// Two convolutions with a SiLU between, a linear layer over the channels and a residual add,
/// loss Σ out², and the loss gradient
/// with respect to the input (what a DPS step needs) through the executor at bf16, against the
/// f64 CPU backend: the precision switch reaches the executor's conv and matmul launches (errors far above
/// fp32's ~1e-7), and the composition stays within the bf16 budget.
#[test]
fn bf16_network_forward_and_input_gradient_through_the_executor() {
    use dynface::backend::cpu::CpuBackend;
    use dynface::exec::eval;
    use dynface::graph::autodiff::grad;
    let test = "tc network";
    let mut g = Graph::new();
    let x = g.input("x", &[2, 16, 12, 12]);
    let w1 = g.constant("w1", &[32, 16, 3, 3]);
    let b1 = g.constant("b1", &[32]);
    let w2 = g.constant("w2", &[16, 32, 3, 3]);
    let t = g.conv2d(x, w1, Some(b1), 1, 1, 1).unwrap();
    let t = g.silu(t).unwrap();
    let t = g.conv2d(t, w2, None, 1, 1, 1).unwrap();
    // A linear layer over the channels (a matrix product, and two in its gradient).
    let w3 = g.constant("w3", &[16, 16]);
    let seq = g.reshape(t, &[2, 16, 144]).unwrap();
    let seq = g.permute(seq, &[0, 2, 1]).unwrap();
    let seq = g.linear(seq, w3, None).unwrap();
    let seq = g.permute(seq, &[0, 2, 1]).unwrap();
    let t = g.reshape(seq, &[2, 16, 12, 12]).unwrap();
    let out = g.add(x, t).unwrap();
    let sq = g.square(out).unwrap();
    let loss = g.sum_all(sq).unwrap();
    let one = g.fill(1.0, &[]);
    let gx = grad(&mut g, &[(loss, one)], &[x]).unwrap()[0];
    let mut r = rng(93);
    let consts: std::collections::HashMap<String, Tensor<f32>> = g
        .constants()
        .into_iter()
        .map(|(name, s)| (name, normal::<f32>(&mut r, &s, 0.1)))
        .collect();
    let xin = normal::<f32>(&mut r, &[2, 16, 12, 12], 1.0);
    let outs = [out, gx];
    let want = eval(
        CpuBackend::<f64>::new(),
        &g,
        &outs,
        &[("x", &xin.cast::<f64>())],
        &consts,
    )
    .unwrap();
    let got = match device(test) {
        None => return,
        Some(Device::Cuda(b)) => eval(*b, &g, &outs, &[("x", &xin)], &consts),
        Some(Device::Emu(e)) => eval(e, &g, &outs, &[("x", &xin)], &consts),
    }
    .unwrap();
    for (name, got, want) in [
        ("forward", &got[0], &want[0]),
        ("∂loss/∂x", &got[1], &want[1]),
    ] {
        let err = got.cast::<f64>().rel_err(want);
        println!(
            "{test}: {name:<9} rel err vs f64 {err:.2e} (bf16 convolutions and products; tol {TOL_VS_FP32:.0e})"
        );
        assert!(err <= TOL_VS_FP32, "{name}: {err:.3e} > {TOL_VS_FP32:.0e}");
        assert!(
            err > 1e-5,
            "{name}: {err:.3e} is fp32-level: the bf16 kernels did not run"
        );
    }
}

/// One `mma_bf16_16816` on its own (kernel `mma_probe`, fragments built from the documented
/// layout outside the tiled kernels). Small integers are exact in bf16 and every partial sum
/// of their products is exact in fp32, so the result must equal C + A·B exactly whatever the
/// accumulation order: a wrong lane / register / half assignment cannot hide in a tolerance.
/// Then random normal operands against the bf16-operand reference within the fp32 bound.
#[test]
fn single_mma_matches_the_documented_fragment_layout() {
    let test = "mma probe";
    let res = match device(test) {
        None => return,
        Some(Device::Cuda(b)) => mma_probe_check(&*b),
        Some(Device::Emu(e)) => mma_probe_check(&e),
    };
    match res {
        Ok(msg) => println!("{test}: {msg}"),
        Err(e) => panic!("{test}: {e}"),
    }
}

fn mma_probe_check<B: KernelBackend>(be: &B) -> Result<String, String> {
    let e = |e: dynface::backend::BackendError| e.to_string();
    let mut r = rng(95);
    let run = |a: &[f32], b: &[f32], c: &[f32]| -> Result<Vec<f32>, String> {
        let mut arena = be.alloc(256 + 128 + 128 + 128).map_err(e)?;
        be.fill(&mut arena, 0, 640, f32::NAN).map_err(e)?;
        be.write(&mut arena, 0, a).map_err(e)?;
        be.write(&mut arena, 256, b).map_err(e)?;
        be.write(&mut arena, 384, c).map_err(e)?;
        be.mma_probe(&arena, 0, 256, 384, 512).map_err(e)?;
        be.read(&arena, 512, 128).map_err(e)
    };
    // D[i][j] = C[i][j] + Σ_k A[i][k]·B[k][j] in f64 after `f` on A and B.
    let product = |a: &[f32], b: &[f32], c: &[f32], f: fn(f32) -> f64| -> Vec<f64> {
        (0..128)
            .map(|ij| {
                let (i, j) = (ij / 8, ij % 8);
                c[ij] as f64
                    + (0..16)
                        .map(|k| f(a[i * 16 + k]) * f(b[k * 8 + j]))
                        .sum::<f64>()
            })
            .collect()
    };
    let ints = |r: &mut rand_chacha::ChaCha8Rng, n: usize, m: i32| -> Vec<f32> {
        (0..n).map(|_| r.gen_range(-m..=m) as f32).collect()
    };
    let (a, b, c) = (
        ints(&mut r, 256, 8),
        ints(&mut r, 128, 8),
        ints(&mut r, 128, 100),
    );
    let got = run(&a, &b, &c)?;
    let want = product(&a, &b, &c, exact);
    for (ij, (g, w)) in got.iter().zip(&want).enumerate() {
        if *g as f64 != *w {
            return Err(format!(
                "integer operands: D[{}][{}] = {g}, exact {w} (fragment layout wrong?)",
                ij / 8,
                ij % 8
            ));
        }
    }
    let a = normal::<f32>(&mut r, &[256], 1.0).data;
    let b = normal::<f32>(&mut r, &[128], 1.0).data;
    let c = normal::<f32>(&mut r, &[128], 1.0).data;
    let got = run(&a, &b, &c)?;
    let want = product(&a, &b, &c, to_bf16);
    let mass = product(
        &a,
        &b,
        &c.iter().map(|v| v.abs()).collect::<Vec<_>>(),
        abs_bf16,
    );
    let mut ratio: f64 = 0.0;
    for (ij, ((g, w), s)) in got.iter().zip(&want).zip(&mass).enumerate() {
        let bound = SQRT_N_FACTOR * 18f64.sqrt() * U_TRUNC * s;
        let err = (*g as f64 - w).abs();
        if err > bound {
            return Err(format!(
                "random operands: D[{}][{}] = {g:e}, bf16 reference {w:e}, |Δ| {err:.2e} > {bound:.2e}",
                ij / 8,
                ij % 8
            ));
        }
        ratio = ratio.max(err / bound);
    }
    Ok(format!(
        "integer operands exact; random operands |Δ|/bound {ratio:.3} (½·√18·u·S: 16 products + C, 18 additions)"
    ))
}

/// The f64 CPU backend, except that the operands of every op the device runs at bf16 (conv
/// forward and input gradient, matrix product; not a bias) are rounded to bf16 first: the
/// device's arithmetic with exact accumulation, for whole graphs.
struct Bf16Reference(dynface::backend::cpu::CpuBackend<f64>);

impl dynface::backend::Backend for Bf16Reference {
    type Elem = f64;
    type Arena = Vec<f64>;
    fn name(&self) -> String {
        "cpu-f64 with bf16-rounded conv/matmul operands".into()
    }
    fn alloc(&self, len: usize) -> dynface::backend::BResult<Vec<f64>> {
        self.0.alloc(len)
    }
    fn write(&self, a: &mut Vec<f64>, off: usize, d: &[f64]) -> dynface::backend::BResult<()> {
        self.0.write(a, off, d)
    }
    fn read(&self, a: &Vec<f64>, off: usize, len: usize) -> dynface::backend::BResult<Vec<f64>> {
        self.0.read(a, off, len)
    }
    fn fill(
        &self,
        a: &mut Vec<f64>,
        off: usize,
        len: usize,
        v: f32,
    ) -> dynface::backend::BResult<()> {
        self.0.fill(a, off, len, v)
    }
    fn copy(
        &self,
        a: &mut Vec<f64>,
        src: usize,
        dst: usize,
        len: usize,
    ) -> dynface::backend::BResult<()> {
        self.0.copy(a, src, dst, len)
    }
    /// The device's fusions, so both plan the same graph (the fused attention runs fp32 on
    /// the device, no bf16 operands: exact here).
    fn supports(&self, op: &Op, inputs: &[&[usize]]) -> bool {
        dynface::backend::cuda::fuses(op, inputs)
    }
    fn exec(
        &self,
        arena: &mut Vec<f64>,
        node: &dynface::graph::Node,
        inputs: &[Operand],
        out: Operand,
        scratch: dynface::backend::Scratch,
    ) -> dynface::backend::BResult<()> {
        if !matches!(
            node.op,
            Op::Conv2d(_) | Op::Conv2dBackwardInput { .. } | Op::MatMul { .. }
        ) {
            return self.0.exec(arena, node, inputs, out, scratch);
        }
        let ins: Vec<Vec<f64>> = inputs
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let s = &arena[o.offset..o.offset + numel(o.shape)];
                if i < 2 {
                    // Via f32, as the device rounds its fp32 values (half's f64 → bf16
                    // truncates the low mantissa word instead of rounding it).
                    s.iter()
                        .map(|&v| bf16::from_f32(v as f32).to_f64())
                        .collect()
                } else {
                    s.to_vec()
                }
            })
            .collect();
        let xs: Vec<&[f64]> = ins.iter().map(|v| v.as_slice()).collect();
        let ss: Vec<&[usize]> = inputs.iter().map(|o| o.shape).collect();
        let n = numel(out.shape);
        run_op(
            &node.op,
            &xs,
            &ss,
            &mut arena[out.offset..out.offset + n],
            out.shape,
        )
    }
}

/// The tiny UNets of tests/fixtures/unet (ADM architecture: convolutions, group norms,
/// attention with head widths 8 and 16, i.e. through the matmul kernels) at bf16, forward and
/// input gradient, against PyTorch's float64 golden. Two bf16 computations of a deep network
/// cannot be compared element by element: an operand whose two versions round to different
/// bf16 neighbours perturbs the next layer enough to flip more roundings, and after a few
/// layers the rounding errors of the two are independent. So the yardstick is
/// [`Bf16Reference`], the same network with the same bf16 operand rounding but exact
/// accumulation, measured against the same golden in the same run: the device's error must
/// be within 1.5× of that reference's (independent roundings of the same kind give errors of
/// the same size; a wrong rounding or fragment layout gives far larger ones). Both errors are
/// printed: they are what bf16 costs these networks.
#[test]
fn tiny_unets_at_bf16_err_no_more_than_exact_accumulation_bf16() {
    use dynface::exec::Executor;
    use dynface::graph::plan::PlanOptions;
    use dynface::models::unet::model::UNetGraph;
    use dynface::models::unet::weights::load_safetensors;
    use dynface::models::unet::UNetConfig;
    use std::path::Path;
    const RATIO: f64 = 1.5;
    fn run<B: KernelBackend>(be: B, test: &str) {
        let be = std::rc::Rc::new(be);
        // Two of the fixtures (the emulator takes ~10 s each): DifFace's per-level layout, and
        // the up/down-sampling resblocks with the new attention order.
        for name in ["difface_perlevel", "sdk_new_headch_updown"] {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/unet")
                .join(name);
            let cfg = UNetConfig::from_file(&dir.join("config.json")).unwrap();
            let w = load_safetensors(&dir.join("weights.safetensors")).unwrap();
            let io = load_safetensors(&dir.join("io.safetensors")).unwrap();
            let x = &io["x"];
            let ug = UNetGraph::new(&cfg, x.shape[0], x.shape[2], x.shape[3], true).unwrap();
            let outs = [ug.out, ug.grad_x.unwrap()];
            let mut ex =
                Executor::new(be.clone(), &ug.graph, &ug.outputs(), PlanOptions::default())
                    .unwrap();
            ex.bind_all(|k| w.get(k).cloned()).unwrap();
            for k in ["x", "t", "cotangent"] {
                ex.set_input(k, &io[k]).unwrap();
            }
            ex.run().unwrap();
            let got: Vec<Tensor<f32>> = outs.iter().map(|&o| ex.output(o).unwrap()).collect();
            let bf16_ref = dynface::exec::eval(
                Bf16Reference(dynface::backend::cpu::CpuBackend::<f64>::new()),
                &ug.graph,
                &outs,
                &[
                    ("x", &io["x"].cast::<f64>()),
                    ("t", &io["t"].cast::<f64>()),
                    ("cotangent", &io["cotangent"].cast::<f64>()),
                ],
                &w,
            )
            .unwrap();
            for (i, what) in ["out", "grad_x"].into_iter().enumerate() {
                let golden = io[what].cast::<f64>();
                let e_dev = got[i].cast::<f64>().rel_err(&golden);
                let e_ref = bf16_ref[i].rel_err(&golden);
                println!(
                    "{test}: {name} {what:<6} rel err vs PyTorch f64: device {e_dev:.2e}, \
                     exact-accumulation bf16 {e_ref:.2e} (ratio {:.2}, tol {RATIO})",
                    e_dev / e_ref
                );
                assert!(
                    e_dev <= RATIO * e_ref,
                    "{name} {what}: {e_dev:.3e} > {RATIO} × {e_ref:.3e}"
                );
                assert!(
                    e_dev > 1e-5,
                    "{name} {what}: fp32-level error: bf16 did not run"
                );
            }
        }
    }
    let test = "tiny unet bf16";
    match device(test) {
        None => {}
        Some(Device::Cuda(b)) => run(*b, test),
        Some(Device::Emu(e)) => run(e, test),
    }
}

/// The whole op case table (`check::cases` and the kernel-sized `check::kernel_cases`) with
/// the convolutions and products on the bf16 tensor-core kernels, against the f64 CPU
/// backend, element by element (`check::table`).
#[test]
fn case_table_on_the_bf16_kernels() {
    let test = "case table bf16";
    let mut families: Vec<&str> = dynface::check::cases::FAMILIES.to_vec();
    families.extend(dynface::check::kernel_cases::families());
    let arith = dynface::check::table::Arith::Bf16;
    match device(test) {
        Some(Device::Cuda(b)) => {
            kernel_device::case_table_on(std::rc::Rc::new(*b), arith, test, &families)
        }
        Some(Device::Emu(e)) => {
            kernel_device::case_table_on(std::rc::Rc::new(e), arith, test, &families)
        }
        None => {}
    }
}
