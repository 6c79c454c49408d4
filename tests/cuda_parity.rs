//! The CUDA kernels against the f64 CPU backend. The op checks are thin callers of the one
//! case table (`check::table`: the small finite-difference cases of `check::cases` and the
//! kernel-sized shapes of `check::kernel_cases`, which reach partial tiles, stride 2,
//! groups, long reductions, a blur radius larger than the image), every value compared
//! element by element on an arena poisoned with NaN, so an unwritten output element fails.
//! What stays hand-written here is what the table cannot express: the fused attention
//! entry point on its own, a residual network plain and through CUDA graph replay (poisoned
//! between runs), the profiling table, the device-to-device copy and the forced tile /
//! split-K variants. Without a usable GPU every test runs on the CPU emulator of the kernel
//! sources (`cuda::emu`: launch code and kernel arithmetic, not the GPU itself), or records
//! a skip (`check::skip`); DYNFACE_NO_EMU=1 turns the emulator off.

#[path = "support/kernel_device.rs"]
mod kernel_device;

use dynface::backend::cuda::{CudaBackend, KernelBackend};
use dynface::check::compare::{compare, Tol};
use dynface::check::table::Arith;
use dynface::exec::Executor;
use dynface::graph::autodiff::grad;
use dynface::graph::plan::PlanOptions;
use dynface::graph::Graph;
use dynface::tensor::random::{normal, rng, uniform};
use dynface::tensor::Tensor;
use kernel_device::Device;
use rand_chacha::ChaCha8Rng;

fn device(test: &str) -> Option<Device> {
    kernel_device::device(test, dynface::backend::cuda::Precision::Fp32)
}

/// Runs a generic test body on the GPU, else on the emulator, else prints the skip.
macro_rules! on_device {
    ($test:expr, $body:ident) => {
        match device($test) {
            Some(Device::Cuda(b)) => $body(*b, $test),
            Some(Device::Emu(b)) => $body(b, $test),
            None => {}
        }
    };
}

/// Fused attention, head width 64, up to 1024×1024 [2.3e-6 on the emulator, 2026-12-03].
const TOL_ATTENTION: Tol = Tol::both(1e-5);
/// The residual network's outputs, loss and input gradient (~20 ops compounded) [3.2e-6].
const TOL_NETWORK: Tol = Tol::both(1.5e-5);

fn randn(r: &mut ChaCha8Rng, shape: &[usize]) -> Tensor<f32> {
    normal(r, shape, 1.0)
}

/// The op case table (`check::cases` and the kernel-sized `check::kernel_cases`) of these
/// families on the fp32 kernels against the f64 CPU backend, element by element: one test
/// per group so the log reads per family. Every family is in one group (checked below).
const GROUPS: &[(&str, &[&str])] = &[
    ("elementwise", &["unary", "binary", "scale_shift"]),
    ("broadcast_reduce", &["broadcast", "reduce"]),
    ("conv2d", &["conv2d", "conv2d_backward"]),
    ("matmul", &["matmul", "linear"]),
    (
        "norms",
        &["group_norm", "layer_norm", "batch_norm", "group_norm_silu"],
    ),
    ("softmax_attention", &["softmax", "attention"]),
    (
        "layout",
        &[
            "concat_slice_pad",
            "reshape_permute",
            "resample",
            "pixel_shuffle",
            "roll",
            "window",
            "timestep_embedding",
        ],
    ),
    ("blur", &["blur", "blur_folded"]),
    ("network", &["network"]),
];

fn group(name: &str) {
    let families = GROUPS.iter().find(|(g, _)| *g == name).unwrap().1;
    let test = format!("case table fp32 {name}");
    match device(&test) {
        Some(Device::Cuda(b)) => {
            kernel_device::case_table_on(std::rc::Rc::new(*b), Arith::Fp32, &test, families)
        }
        Some(Device::Emu(e)) => {
            kernel_device::case_table_on(std::rc::Rc::new(e), Arith::Fp32, &test, families)
        }
        None => {}
    }
}

#[test]
fn case_table_elementwise() {
    group("elementwise");
}
#[test]
fn case_table_broadcast_reduce() {
    group("broadcast_reduce");
}
#[test]
fn case_table_conv2d_forward_input_and_weight_gradients() {
    group("conv2d");
}
#[test]
fn case_table_matmul_batched_transposed_broadcast() {
    group("matmul");
}
#[test]
fn case_table_norms() {
    group("norms");
}
#[test]
fn case_table_softmax_attention() {
    group("softmax_attention");
}
#[test]
fn case_table_layout() {
    group("layout");
}
#[test]
fn case_table_gaussian_blur_forward_adjoint_dsigma() {
    group("blur");
}
#[test]
fn case_table_network() {
    group("network");
}

/// No family of either case list is left out of the groups above ("large" is CPU only).
#[test]
fn every_case_family_is_in_a_kernel_test_group() {
    let grouped: Vec<&str> = GROUPS.iter().flat_map(|(_, f)| f.iter().copied()).collect();
    let mut all: Vec<&str> = dynface::check::cases::FAMILIES
        .iter()
        .copied()
        .filter(|f| *f != "large")
        .collect();
    all.extend(dynface::check::kernel_cases::families());
    for f in all {
        assert!(grouped.contains(&f), "family {f} is in no test group");
    }
}

#[test]
fn fused_attention_matches_composite() {
    on_device!("fused attention", fused_attention_body);
}

fn fused_attention_body<B: KernelBackend>(be: B, _test: &str) {
    let mut r = rng(19);
    let mut failures = vec![];
    for (b, l, s) in [(2, 100, 77), (1, 1024, 1024), (3, 1, 33)] {
        let q = randn(&mut r, &[b, l, 64]);
        let k = randn(&mut r, &[b, s, 64]);
        let v = randn(&mut r, &[b, s, 64]);
        let scale = 1.0 / 8.0;
        // Reference: the CPU composite softmax(q·kᵀ·scale)·v in f64.
        let mut g = Graph::new();
        let (qi, ki, vi) = (
            g.input("q", &[b, l, 64]),
            g.input("k", &[b, s, 64]),
            g.input("v", &[b, s, 64]),
        );
        let o = g.attention(qi, ki, vi, scale, None).unwrap();
        let want = dynface::exec::eval(
            dynface::backend::cpu::CpuBackend::<f64>::new(),
            &g,
            &[o],
            &[
                ("q", &q.cast::<f64>()),
                ("k", &k.cast::<f64>()),
                ("v", &v.cast::<f64>()),
            ],
            &Default::default(),
        )
        .unwrap()
        .remove(0);
        let (nq, nk) = (q.numel(), k.numel());
        let total = nq + 2 * nk + nq;
        let mut arena = be.alloc(total).unwrap();
        be.fill(&mut arena, 0, total, f32::NAN).unwrap();
        be.write(&mut arena, 0, &q.data).unwrap();
        be.write(&mut arena, nq, &k.data).unwrap();
        be.write(&mut arena, nq + nk, &v.data).unwrap();
        be.fused_attention(&arena, 0, nq, nq + nk, nq + 2 * nk, (b, l, s), scale)
            .unwrap();
        let got = Tensor::new(vec![b, l, 64], be.read(&arena, nq + 2 * nk, nq).unwrap());
        let g: Vec<f64> = got.data.iter().map(|&v| v as f64).collect();
        let c = compare(&g, &want.data, &want.shape, TOL_ATTENTION);
        println!("fused attention b{b} l{l} s{s}: {c}");
        if !c.passed() {
            failures.push(format!("b{b} l{l} s{s}: {c}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A small residual network: conv → group norm → SiLU → conv, a self-attention block over the
/// pixels, residual adds; loss = Σ out², and its gradient with respect to the input.
fn resnet_graph() -> (Graph, Vec<dynface::graph::NodeId>) {
    let mut g = Graph::new();
    let (n, ch, hw) = (2, 32, 12);
    let x = g.input("x", &[n, ch, hw, hw]);
    let mut h = x;
    for blk in 0..2 {
        h = g.scope(&format!("res{blk}"), |g| {
            let w1 = g.constant(&format!("r{blk}.w1"), &[ch, ch, 3, 3]);
            let b1 = g.constant(&format!("r{blk}.b1"), &[ch]);
            let ga = g.constant(&format!("r{blk}.ga"), &[ch]);
            let be = g.constant(&format!("r{blk}.be"), &[ch]);
            let w2 = g.constant(&format!("r{blk}.w2"), &[ch, ch, 3, 3]);
            let t = g.group_norm(h, ga, be, 8, 1e-5).unwrap();
            let t = g.silu(t).unwrap();
            let t = g.conv2d(t, w1, Some(b1), 1, 1, 1).unwrap();
            let t = g.conv2d(t, w2, None, 1, 1, 1).unwrap();
            g.add(h, t).unwrap()
        });
    }
    // Attention over the hw² pixels, 32 channels as one head.
    let wq = g.constant("attn.wq", &[ch, ch]);
    let wk = g.constant("attn.wk", &[ch, ch]);
    let wv = g.constant("attn.wv", &[ch, ch]);
    let seq = g.reshape(h, &[n, ch, hw * hw]).unwrap();
    let seq = g.permute(seq, &[0, 2, 1]).unwrap();
    let q = g.linear(seq, wq, None).unwrap();
    let k = g.linear(seq, wk, None).unwrap();
    let v = g.linear(seq, wv, None).unwrap();
    let a = g
        .attention(q, k, v, 1.0 / (ch as f32).sqrt(), None)
        .unwrap();
    let a = g.permute(a, &[0, 2, 1]).unwrap();
    let a = g.reshape(a, &[n, ch, hw, hw]).unwrap();
    let out = g.add(h, a).unwrap();
    let sq = g.square(out).unwrap();
    let loss = g.sum_all(sq).unwrap();
    let one = g.fill(1.0, &[]);
    let gx = grad(&mut g, &[(loss, one)], &[x]).unwrap()[0];
    (g, vec![out, loss, gx])
}

fn resnet_consts(g: &Graph) -> std::collections::HashMap<String, Tensor<f32>> {
    let mut r = rng(20);
    g.constants()
        .into_iter()
        .map(|(name, s)| {
            let t = if name.ends_with(".ga") {
                uniform::<f32>(&mut r, &s, 0.5, 1.5)
            } else {
                normal::<f32>(&mut r, &s, 0.08)
            };
            (name, t)
        })
        .collect()
}

fn resnet_plain<B: KernelBackend>(be: B, what: &str) {
    resnet_check(be, what, false)
}

fn resnet_captured<B: KernelBackend>(be: B, what: &str) {
    if be.name().contains("emulated") {
        dynface::check::skip::skip(
            what,
            dynface::check::skip::SkipReason::NoGpu,
            "CUDA graph capture needs a GPU (the emulator cannot record graphs)",
        );
        return;
    }
    resnet_check(be, what, true)
}

fn resnet_check<B: KernelBackend>(be: B, what: &str, captured: bool) {
    let (g, outs) = resnet_graph();
    let consts = resnet_consts(&g);
    let mut cpu = Executor::new(
        dynface::backend::cpu::CpuBackend::<f64>::new(),
        &g,
        &outs,
        PlanOptions::default(),
    )
    .unwrap();
    cpu.bind_all(|n| consts.get(n).cloned()).unwrap();
    let mut gpu = Executor::new(be, &g, &outs, PlanOptions::default()).unwrap();
    gpu.bind_all(|n| consts.get(n).cloned()).unwrap();
    let mut r = rng(21);
    let mut failures = vec![];
    // Two different inputs: a replayed graph must follow new input values.
    for round in 0..2 {
        let x = randn(&mut r, &[2, 32, 12, 12]);
        cpu.set_input("x", &x.cast::<f64>()).unwrap();
        cpu.run().unwrap();
        gpu.poison(f32::NAN).unwrap();
        gpu.bind_all(|n| consts.get(n).cloned()).unwrap();
        gpu.set_input("x", &x).unwrap();
        if captured {
            if round == 0 {
                gpu.capture().unwrap();
                // capture() ran once uncaptured: poison again so the replay must write.
                gpu.poison(f32::NAN).unwrap();
                gpu.bind_all(|n| consts.get(n).cloned()).unwrap();
                gpu.set_input("x", &x).unwrap();
            }
            gpu.replay().unwrap();
        } else {
            gpu.run().unwrap();
        }
        for (i, &o) in outs.iter().enumerate() {
            let want = cpu.output(o).unwrap();
            let got = gpu.output(o).unwrap();
            let g: Vec<f64> = got.data.iter().map(|&v| v as f64).collect();
            let c = compare(&g, &want.data, &want.shape, TOL_NETWORK);
            println!("{what} round {round} output {i}: {c}");
            if !c.passed() {
                failures.push(format!("{what} round {round} output {i}: {c}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    if captured {
        // Launch overhead: the same forward + backward, issued op by op vs replayed.
        let time = |gpu: &mut Executor<B>, replay: bool| {
            gpu.backend.synchronize().unwrap();
            let t0 = std::time::Instant::now();
            for _ in 0..20 {
                if replay {
                    gpu.replay().unwrap();
                } else {
                    gpu.run().unwrap();
                }
            }
            gpu.backend.synchronize().unwrap();
            t0.elapsed().as_secs_f64() / 20.0 * 1e3
        };
        let ops = g.nodes.len();
        let run_ms = time(&mut gpu, false);
        let replay_ms = time(&mut gpu, true);
        println!("{what}: {ops} graph nodes, run {run_ms:.3} ms, graph replay {replay_ms:.3} ms");
    }
}

#[test]
fn residual_network_forward_and_input_gradient() {
    on_device!("resnet", resnet_plain);
}

#[test]
fn residual_network_through_cuda_graph_replay() {
    on_device!("resnet via CUDA graph replay", resnet_captured);
}

#[test]
fn profiling_table_lists_kernels() {
    let be = match CudaBackend::new() {
        Ok(b) => b,
        Err(why) => {
            dynface::check::skip::skip(
                "profiling",
                dynface::check::skip::SkipReason::NoGpu,
                &why.to_string(),
            );
            return;
        }
    };
    let (g, outs) = resnet_graph();
    let consts = resnet_consts(&g);
    let mut gpu = Executor::new(be, &g, &outs, PlanOptions::default()).unwrap();
    gpu.bind_all(|n| consts.get(n).cloned()).unwrap();
    gpu.set_input("x", &randn(&mut rng(22), &[2, 32, 12, 12]))
        .unwrap();
    gpu.run().unwrap();
    gpu.backend.start_profiling();
    gpu.run().unwrap();
    let rows = gpu.backend.finish_profiling().unwrap();
    print!("{}", dynface::backend::cuda::profile::format_table(&rows));
    assert!(rows.iter().any(|r| r.kernel.starts_with("conv_fwd")));
    assert!(rows.iter().any(|r| r.op == "group_norm_backward"));
    assert!(rows.iter().all(|r| r.total_ms >= 0.0 && r.launches > 0));
    let share: f64 = rows.iter().map(|r| r.share).sum();
    assert!((share - 1.0).abs() < 1e-6);
}

#[test]
fn arena_copy_moves_values_on_the_device() {
    on_device!("arena_copy_moves_values_on_the_device", arena_copy_body);
}

fn arena_copy_body<B: KernelBackend>(be: B, _test: &str) {
    // An odd length that does not fill the last block, between unaligned offsets.
    let n = 1000 + 37;
    let total = 3 * n + 10;
    let mut arena = be.alloc(total).unwrap();
    be.fill(&mut arena, 0, total, f32::NAN).unwrap();
    let src: Tensor<f32> = normal(&mut rng(901), &[n], 1.0);
    be.write(&mut arena, 5, &src.data).unwrap();
    be.copy(&mut arena, 5, 2 * n + 3, n).unwrap();
    assert_eq!(be.read(&arena, 2 * n + 3, n).unwrap(), src.data);
    // Neighbours of the destination are untouched (still the NaN poison).
    assert!(be.read(&arena, 2 * n + 2, 1).unwrap()[0].is_nan());
    assert!(be.read(&arena, 3 * n + 3, 1).unwrap()[0].is_nan());
    let err = be.copy(&mut arena, 5, 10, n).unwrap_err().to_string();
    assert!(err.contains("overlap"), "{err}");
    assert!(be.copy(&mut arena, 0, total - 5, n).is_err());
}

/// Every conv and gemm kernel variant (each tile shape, with and without split-K; fp32 and
/// the bf16 tensor-core kernels) on the `check::variants` table against the f64 CPU, element
/// by element, then the list of entry points launched: it must hold every conv / gemm entry
/// point of kernels/ (a variant the launch code can no longer reach fails here).
#[test]
fn every_conv_and_gemm_kernel_variant_matches_the_cpu() {
    use dynface::backend::cuda::Precision;
    use dynface::check::variants::{conv_gemm_entry_points, format_row, run_variant_table};
    let mut launched = std::collections::BTreeMap::<&str, u64>::new();
    let mut failures = vec![];
    let mut rows = 0;
    for precision in [Precision::Fp32, Precision::Bf16] {
        let test = format!("kernel variants {precision:?}");
        let (result, log) = match kernel_device::device(&test, precision) {
            None => return,
            Some(Device::Cuda(b)) => (run_variant_table(&*b, precision, None), b.launched()),
            Some(Device::Emu(e)) => (run_variant_table(&e, precision, None), e.launched()),
        };
        for r in &result {
            println!("[{precision:?}] {}", format_row(r));
            if !r.passed() {
                failures.push(format!("[{precision:?}] {}", format_row(r)));
            }
        }
        rows += result.len();
        for (k, n) in log {
            *launched.entry(k).or_default() += n;
        }
    }
    let want = conv_gemm_entry_points();
    let missing: Vec<&str> = want
        .iter()
        .copied()
        .filter(|k| !launched.contains_key(k))
        .collect();
    println!(
        "conv/gemm entry points launched ({} of {}):",
        want.len() - missing.len(),
        want.len()
    );
    for k in &want {
        println!(
            "  {k:<32} {} launches",
            launched.get(k).copied().unwrap_or(0)
        );
    }
    println!("{rows} (case, variant) rows, {} failures", failures.len());
    assert!(
        missing.is_empty(),
        "conv/gemm entry points never launched: {missing:?}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
