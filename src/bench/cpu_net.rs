//! `dynface bench --device cpu --net unet|swinir [--grad] [--profile]`: one whole network at
//! its real size on the CPU backend (f32, random weights: speed does not depend on their
//! values), timed after warm-up with the weights bound and the plan made, so only the graph
//! runs are in the figure. Graph building, planning and binding are timed apart. The same
//! networks, batch, threads and size run in PyTorch in
//! `tools/reference/bench_torch_cpu_net.py`, which reads this command's JSON and prints the
//! ratio.

use super::timing::process_cpu_seconds;
use super::unet::random_unet_weights;
use crate::backend::cpu::CpuBackend;
use crate::exec::{Executor, NodeTiming};
use crate::graph::plan::PlanOptions;
use crate::graph::{Graph, NodeId, Op};
use crate::models::swinir::{self, SwinIRConfig};
use crate::models::unet::cost::node_macs;
use crate::models::unet::model::{parameter_count, unet_spec, UNetGraph};
use crate::models::unet::UNetConfig;
use crate::models::WeightMap;
use crate::tensor::{numel, random, Tensor};
use anyhow::{anyhow, bail, Result};
use serde::Serialize;
use std::time::Instant;

/// The networks `--net` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Net {
    /// DifFace's FFHQ 512 prior (guided-diffusion ADM UNet, 159.8 M parameters).
    Unet,
    /// DifFace's SwinIR restorer (pixel-unshuffle ×8 front, 8 stages × 6 blocks, embed 180).
    Swinir,
}

impl Net {
    pub fn name(self) -> &'static str {
        match self {
            Net::Unet => "unet",
            Net::Swinir => "swinir",
        }
    }
}

/// What one `--net` run is asked to do.
#[derive(Clone, Debug)]
pub struct NetBenchOptions {
    pub net: Net,
    pub batch: usize,
    pub size: usize,
    pub with_grad: bool,
    pub warmup: usize,
    pub iters: usize,
    pub profile: bool,
}

/// One op kind's share of a profiled run.
#[derive(Clone, Debug, Serialize)]
pub struct OpRow {
    pub op: String,
    pub calls: usize,
    pub ms: f64,
    pub share: f64,
    /// CPU-milliseconds of all threads (load-robust), and its share of the run's.
    pub cpu_ms: Option<f64>,
    pub cpu_share: Option<f64>,
    /// Convolutions and products: 2 FLOP per multiply-add over the time.
    pub gflops: Option<f64>,
    /// Everything else: bytes of the f32 inputs read and the output written once.
    pub gbps: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct NetBenchReport {
    pub net: Net,
    pub batch: usize,
    pub size: usize,
    pub with_grad: bool,
    pub threads: usize,
    pub warmup: usize,
    pub iters: usize,
    /// Seconds to build the graph (and its reverse pass), to plan it and allocate the arena,
    /// and to bind the weights: all before the first timed run, none in `median_ms`.
    pub build_s: f64,
    pub plan_s: f64,
    pub bind_s: f64,
    pub times_ms: Vec<f64>,
    pub median_ms: f64,
    pub min_ms: f64,
    /// CPU-seconds of all threads per wall second over the timed runs (2 threads: at most 2).
    pub cpu_per_wall: Option<f64>,
    /// CPU-seconds of all threads per timed run: on a loaded machine it grows less than the
    /// wall time (waiting for a core is not counted), so before/after stay comparable.
    pub cpu_s_per_run: Option<f64>,
    /// 2 × multiply-adds of the convolutions and matrix products per run.
    pub gflop: f64,
    pub arena_bytes: usize,
    pub nodes: usize,
    /// Parameters of the network (the PyTorch script checks its own count against it).
    pub parameters: usize,
    pub profile: Vec<OpRow>,
}

/// A network ready to plan: its graph, the outputs to compute, the per-run inputs and the
/// weights by name.
pub struct NetGraph {
    pub parameters: usize,
    pub graph: Graph,
    pub outputs: Vec<NodeId>,
    pub inputs: Vec<(String, Tensor<f32>)>,
    pub weights: WeightMap,
}

/// Builds `net` at batch × 3 × size² with random weights and inputs (seeded).
pub fn build_net(net: Net, batch: usize, size: usize, with_grad: bool) -> Result<NetGraph> {
    let mut rng = random::rng(1);
    match net {
        Net::Unet => {
            let cfg = UNetConfig::ffhq512();
            let ug = UNetGraph::new(&cfg, batch, size, size, with_grad)?;
            let x = random::normal(&mut rng, &[batch, cfg.in_channels, size, size], 1.0);
            let t = Tensor::new(
                vec![batch],
                (0..batch).map(|i| ((700 + 17 * i) % 1000) as f32).collect(),
            );
            let mut inputs = vec![("x".to_string(), x), ("t".to_string(), t)];
            if with_grad {
                let shape = ug.graph.shape(ug.out).to_vec();
                inputs.push(("cotangent".into(), random::normal(&mut rng, &shape, 1.0)));
            }
            Ok(NetGraph {
                parameters: parameter_count(&unet_spec(&cfg)?),
                outputs: ug.outputs(),
                graph: ug.graph,
                inputs,
                weights: random_unet_weights(&cfg, 0)?,
            })
        }
        Net::Swinir => {
            let cfg = SwinIRConfig::difface_restorer();
            let mut g = Graph::new();
            let x = g.input("x", &[batch, cfg.in_chans, size, size]);
            let out = swinir::build(&mut g, &cfg, x)?;
            let xv = random::uniform(&mut rng, &[batch, cfg.in_chans, size, size], 0.0, 1.0);
            let mut inputs = vec![("x".to_string(), xv)];
            let mut outputs = vec![out];
            if with_grad {
                let shape = g.shape(out).to_vec();
                let cot = g.input("cotangent", &shape);
                outputs.push(crate::graph::autodiff::grad(&mut g, &[(out, cot)], &[x])?[0]);
                inputs.push(("cotangent".into(), random::normal(&mut rng, &shape, 1.0)));
            }
            Ok(NetGraph {
                parameters: swinir::parameter_count(&cfg),
                graph: g,
                outputs,
                inputs,
                weights: random_swinir_weights(&cfg, size)?,
            })
        }
    }
}

/// Random SwinIR weights for an input of `size²` (N(0, 1/fan_in), biases N(0, 0.01²),
/// norms at 1 and 0), with the derived bias and mask constants added.
fn random_swinir_weights(cfg: &SwinIRConfig, size: usize) -> Result<WeightMap> {
    let mut rng = random::rng(0);
    let mut m = swinir::builtin_constants();
    for (k, s) in swinir::checkpoint_spec(cfg, size, size) {
        if k.ends_with("attn_mask") || k.ends_with("relative_position_index") {
            continue; // buffers: derived below
        }
        let t = if k.contains("norm") {
            let v = if k.ends_with(".weight") { 1.0 } else { 0.0 };
            Tensor::new(s.clone(), vec![v; numel(&s)])
        } else if s.len() == 1 {
            random::normal(&mut rng, &s, 0.01)
        } else {
            let fan_in: usize = s.iter().skip(1).product::<usize>().max(1);
            random::normal(&mut rng, &s, (1.0 / fan_in as f64).sqrt())
        };
        m.insert(k, t);
    }
    swinir::derive_weights(cfg, &mut m, size, size).map_err(|e| anyhow!("SwinIR weights: {e}"))?;
    Ok(m)
}

/// Sums a profiled run per op kind, largest first.
pub fn op_profile(g: &Graph, times: &[NodeTiming]) -> Vec<OpRow> {
    let mut rows: Vec<(OpRow, f64, f64)> = vec![];
    for t in times {
        let node = &g.nodes[t.node];
        if matches!(
            node.op,
            Op::Input { .. } | Op::Const { .. } | Op::Fill { .. }
        ) || node.op.is_view()
        {
            continue; // nothing executed
        }
        let flop = 2.0 * node_macs(g, t.node).total() as f64;
        let elems: usize = node
            .inputs
            .iter()
            .map(|&i| numel(g.shape(i)))
            .sum::<usize>()
            + numel(&node.shape);
        let bytes = 4.0 * elems as f64;
        let i = match rows.iter().position(|r| r.0.op == t.op) {
            Some(i) => i,
            None => {
                rows.push((
                    OpRow {
                        op: t.op.to_string(),
                        calls: 0,
                        ms: 0.0,
                        share: 0.0,
                        cpu_ms: None,
                        cpu_share: None,
                        gflops: None,
                        gbps: None,
                    },
                    0.0,
                    0.0,
                ));
                rows.len() - 1
            }
        };
        let r = &mut rows[i];
        r.0.calls += 1;
        r.0.ms += t.seconds * 1e3;
        if let Some(c) = t.cpu_seconds {
            r.0.cpu_ms = Some(r.0.cpu_ms.unwrap_or(0.0) + c * 1e3);
        }
        r.1 += flop;
        r.2 += bytes;
    }
    let total: f64 = rows.iter().map(|r| r.0.ms).sum();
    let cpu_total: f64 = rows.iter().filter_map(|r| r.0.cpu_ms).sum();
    let mut out: Vec<OpRow> = rows
        .into_iter()
        .map(|(mut r, flop, bytes)| {
            let s = r.ms * 1e-3;
            r.share = if total > 0.0 { r.ms / total } else { 0.0 };
            r.cpu_share = r.cpu_ms.filter(|_| cpu_total > 0.0).map(|c| c / cpu_total);
            if s > 0.0 {
                if flop > 0.0 {
                    r.gflops = Some(flop / s / 1e9);
                } else {
                    r.gbps = Some(bytes / s / 1e9);
                }
            }
            r
        })
        .collect();
    out.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    out
}

/// The profile as a text table (the CUDA bench's columns plus a rate).
pub fn format_profile(rows: &[OpRow]) -> String {
    let mut s = format!(
        "{:<28} {:>6} {:>11} {:>7} {:>11} {:>7} {:>14}\n",
        "op", "calls", "ms", "share", "CPU ms", "share", "rate"
    );
    for r in rows {
        let rate = match (r.gflops, r.gbps) {
            (Some(f), _) => format!("{f:.1} GFLOP/s"),
            (_, Some(b)) => format!("{b:.2} GB/s"),
            _ => "-".into(),
        };
        s.push_str(&format!(
            "{:<28} {:>6} {:>11.1} {:>6.1}% {:>11} {:>7} {:>14}\n",
            r.op,
            r.calls,
            r.ms,
            100.0 * r.share,
            r.cpu_ms.map_or("-".into(), |c| format!("{c:.1}")),
            r.cpu_share
                .map_or("-".into(), |c| format!("{:.1}%", 100.0 * c)),
            rate
        ));
    }
    let total: f64 = rows.iter().map(|r| r.ms).sum();
    let cpu: f64 = rows.iter().filter_map(|r| r.cpu_ms).sum();
    s.push_str(&format!(
        "{:<28} {:>6} {:>11.1} {:>7} {:>11.1}\n",
        "total", "", total, "", cpu
    ));
    s
}

/// Builds, plans and binds `opts.net`, then times `opts.iters` runs after `opts.warmup`.
pub fn run_net(opts: &NetBenchOptions) -> Result<NetBenchReport> {
    if opts.batch == 0 || opts.iters == 0 {
        bail!("--net needs a batch and --iters of at least 1");
    }
    let threads = rayon::current_num_threads();
    let t0 = Instant::now();
    let ng = build_net(opts.net, opts.batch, opts.size, opts.with_grad)?;
    let build_s = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let mut ex = Executor::new(
        CpuBackend::<f32>::new(),
        &ng.graph,
        &ng.outputs,
        PlanOptions::default(),
    )?;
    let plan_s = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    ex.bind_all(|k| ng.weights.get(k).cloned())?;
    for (name, t) in &ng.inputs {
        ex.set_input(name, t)?;
    }
    let bind_s = t0.elapsed().as_secs_f64();
    let gflop: f64 = (0..ng.graph.len())
        .filter(|&i| ex.plan().regions[i].is_some())
        .map(|i| 2.0 * node_macs(&ng.graph, i).total() as f64)
        .sum::<f64>()
        / 1e9;
    let nodes = ex.plan().order.len();
    println!(
        "cpu bench --net {}: batch {}, {}², {}, f32, {threads} threads, {nodes} nodes, {:.1} GFLOP \
         per run, arena {:.2} GB; build {:.2} s, plan {:.2} s, bind {:.2} s (not timed)",
        opts.net.name(),
        opts.batch,
        opts.size,
        if opts.with_grad {
            "forward + input gradient"
        } else {
            "forward"
        },
        gflop,
        ex.peak_bytes() as f64 / 1e9,
        build_s,
        plan_s,
        bind_s
    );
    for _ in 0..opts.warmup {
        ex.run()?;
    }
    let mut times_ms = vec![];
    let (c0, w0) = (process_cpu_seconds(), Instant::now());
    for i in 0..opts.iters {
        let t = Instant::now();
        ex.run()?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        println!("  run {}: {ms:.1} ms", i + 1);
        times_ms.push(ms);
    }
    let wall = w0.elapsed().as_secs_f64();
    let cpu_s = match (c0, process_cpu_seconds()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let cpu_per_wall = cpu_s.filter(|_| wall > 0.0).map(|c| c / wall);
    let cpu_s_per_run = cpu_s.map(|c| c / opts.iters as f64);
    let mut sorted = times_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median_ms = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    };
    println!(
        "{} {}: median {median_ms:.1} ms of {n} (min {:.1}), {:.1} GFLOP/s, {} CPU-s per wall-s, \
         {} CPU-s per run",
        opts.net.name(),
        if opts.with_grad { "fwd+grad" } else { "fwd" },
        sorted[0],
        gflop / (median_ms * 1e-3),
        cpu_per_wall.map_or("n/a".into(), |c| format!("{c:.2}")),
        cpu_s_per_run.map_or("n/a".into(), |c| format!("{c:.2}"))
    );
    let profile = if opts.profile {
        let times = ex.run_profiled_with_clock(&process_cpu_seconds)?;
        let rows = op_profile(&ng.graph, &times);
        println!("per-op profile, one run:\n{}", format_profile(&rows));
        rows
    } else {
        vec![]
    };
    Ok(NetBenchReport {
        net: opts.net,
        batch: opts.batch,
        size: opts.size,
        with_grad: opts.with_grad,
        threads,
        warmup: opts.warmup,
        iters: opts.iters,
        build_s,
        plan_s,
        bind_s,
        times_ms,
        median_ms,
        min_ms: sorted[0],
        cpu_per_wall,
        cpu_s_per_run,
        gflop,
        arena_bytes: ex.peak_bytes(),
        nodes,
        parameters: ng.parameters,
        profile,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both networks at a small size (the UNet's 7 levels need 64 px): a run completes, the
    /// profile covers every executed node once, and its shares add up to one.
    #[test]
    fn small_nets_run_and_profile_every_node() {
        for (net, size, with_grad) in [(Net::Unet, 64, false), (Net::Swinir, 64, true)] {
            let r = run_net(&NetBenchOptions {
                net,
                batch: 1,
                size,
                with_grad,
                warmup: 0,
                iters: 1,
                profile: true,
            })
            .unwrap();
            let calls: usize = r.profile.iter().map(|p| p.calls).sum();
            let leaves = r.profile.iter().all(|p| p.op != "const" && p.op != "input");
            assert!(leaves, "leaves are not executed");
            assert!(calls > 100 && calls <= r.nodes, "{calls} of {}", r.nodes);
            let share: f64 = r.profile.iter().map(|p| p.share).sum();
            assert!((share - 1.0).abs() < 1e-9, "{share}");
            let conv = r.profile.iter().find(|p| p.op == "conv2d").unwrap();
            assert!(conv.gflops.unwrap() > 0.0 && conv.gbps.is_none());
            assert!(r.gflop > 0.0 && r.median_ms > 0.0);
            // The counts PyTorch's builds of the same networks report
            // (tools/reference/bench_torch_cpu_net.py), so both sides time one network.
            let want = match net {
                Net::Unet => 159_788_454,
                Net::Swinir => 15_792_587,
            };
            assert_eq!(r.parameters, want, "{net:?}");
        }
    }
}
