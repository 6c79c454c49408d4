//! Times one forward pass and one forward + input-gradient pass of a UNet on the CPU (f32,
//! random weights, batch 1) and prints the executor's planned peak bytes.
//!
//! `cargo run --release --example unet_bench -- [size] [config.json]` (default: 512, FFHQ 512).

use dynface::backend::cpu::CpuBackend;
use dynface::exec::Executor;
use dynface::graph::plan::PlanOptions;
use dynface::models::unet::cli::check_plan_memory;
use dynface::models::unet::model::UNetGraph;
use dynface::models::unet::UNetConfig;
use dynface::tensor::{random, Tensor};
use std::time::Instant;

/// User + system CPU seconds of this process (all threads), from /proc/self/stat at the
/// usual 100 ticks per second; 0 where that file does not exist. On a shared machine the
/// CPU time is the fairer figure.
fn cpu_seconds() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

const LIMIT_BYTES: usize = 20_000_000_000;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let size: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(512);
    let cfg = match args.get(2) {
        Some(p) => UNetConfig::from_file(std::path::Path::new(p))?,
        None => UNetConfig::ffhq512(),
    };
    let mut rng = random::rng(2024);
    let x: Tensor<f32> = random::normal(&mut rng, &[1, cfg.in_channels, size, size], 1.0);
    let t = Tensor::new(vec![1], vec![500.0f32]);
    let cot: Tensor<f32> = random::normal(&mut rng, &[1, cfg.out_channels, size, size], 1.0);
    for with_grad in [false, true] {
        let ug = UNetGraph::new(&cfg, 1, size, size, with_grad)?;
        let outputs = ug.outputs();
        let planned = check_plan_memory(&ug.graph, &outputs, 4, LIMIT_BYTES)?;
        let mut ex = Executor::new(
            CpuBackend::<f32>::new(),
            &ug.graph,
            &outputs,
            PlanOptions::default(),
        )?;
        // Fan-in scaled weights keep activations O(1), as in a trained network.
        let mut wrng = random::rng(7);
        for (name, shape) in ex.required_constants() {
            let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
            let w: Tensor<f32> = if shape.len() == 1 && name.ends_with("weight") {
                Tensor::full(&shape, 1.0)
            } else {
                random::normal(&mut wrng, &shape, 1.0 / (fan_in as f64).sqrt())
            };
            ex.bind_const(&name, &w)?;
        }
        ex.set_input("x", &x)?;
        ex.set_input("t", &t)?;
        if with_grad {
            ex.set_input("cotangent", &cot)?;
        }
        // The first run also faults the arena's pages in; the second is the steady state.
        for run in 1..=2 {
            let (t0, c0) = (Instant::now(), cpu_seconds());
            ex.run()?;
            let secs = t0.elapsed().as_secs_f64();
            let cpu = cpu_seconds() - c0;
            let out = ex.output(ug.out)?;
            let finite = out.data.iter().all(|v| v.is_finite());
            println!(
                "{} at {size}², run {run}: {secs:.2} s wall, {cpu:.2} s CPU, peak {} bytes ({:.2} GB; planned {planned}), output finite: {finite}",
                if with_grad { "forward + grad x" } else { "forward" },
                ex.peak_bytes(),
                ex.peak_bytes() as f64 / 1e9
            );
        }
        if std::env::var_os("UNET_BENCH_PROFILE").is_some() {
            // Seconds per op kind, largest first.
            let mut by_op: std::collections::BTreeMap<&str, f64> = Default::default();
            for n in ex.run_profiled()? {
                *by_op.entry(n.op).or_default() += n.seconds;
            }
            let mut v: Vec<_> = by_op.into_iter().collect();
            v.sort_by(|a, b| b.1.total_cmp(&a.1));
            for (op, s) in v.iter().take(8) {
                println!("    {op:<26} {s:7.2} s");
            }
        }
    }
    Ok(())
}
