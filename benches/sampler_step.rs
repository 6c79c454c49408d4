//! Per-step time of the guided sampler with the update on the host (the f64 reference path)
//! and in the step graph (the device step), with a denoiser that costs almost nothing, so the
//! difference is the update's own cost: host-side f64 arithmetic, conversions and transfers
//! against a few element-wise graph ops and one device-to-device copy.
//!
//! `cargo bench --bench sampler_step -- [SIZE] [BATCH] [STEPS] [cpu|cuda]`
//! (defaults 64 1 25 cpu).

use dynface::backend::cpu::CpuBackend;
use dynface::backend::Backend;
use dynface::graph::{Graph, NodeId};
use dynface::sampler::{DenoiserInputs, Guidance, Sampler, SamplerConfig, UnitScale, UpdateOn};
use dynface::tensor::{random, Tensor};

fn denoiser(g: &mut Graph, ins: &DenoiserInputs) -> dynface::graph::Result<NodeId> {
    g.affine(ins.x, 0.1, 0.0)
}

fn sampler<B: Backend>(be: B, u: UpdateOn, shape: [usize; 4], steps: usize) -> Sampler<B> {
    let cfg = SamplerConfig {
        sampler: format!("ddim{steps}"),
        update_on: u,
        ..SamplerConfig::default()
    };
    Sampler::new(be, cfg, shape, denoiser, |_: &str| None::<Tensor<f32>>).expect("sampler")
}

/// Milliseconds per step of one run: (total, outside the graph runs).
fn one_run<B: Backend>(sm: &mut Sampler<B>, gd: &Guidance, seed: u64) -> (f64, f64) {
    let out = sm.sample(gd, &mut UnitScale, seed).expect("run");
    let per = 1e3 / out.trace.len() as f64;
    (
        out.timing.total * per,
        (out.timing.total - out.timing.graph) * per,
    )
}

/// The two paths timed in alternation (so load from other processes hits both alike), after
/// one warm-up run each; per path the minimum over `reps` runs of the total and of the time
/// outside the graph runs (host work: conversions, transfers, the host update, noise).
fn compare<B: Backend>(
    mk: impl Fn() -> B,
    shape: [usize; 4],
    steps: usize,
    gd: &Guidance,
    reps: usize,
) -> [(f64, f64); 2] {
    let mut host = sampler(mk(), UpdateOn::Host, shape, steps);
    let mut dev = sampler(mk(), UpdateOn::Device, shape, steps);
    one_run(&mut host, gd, 1);
    one_run(&mut dev, gd, 1);
    let min = |a: (f64, f64), b: (f64, f64)| (a.0.min(b.0), a.1.min(b.1));
    let mut best = [(f64::INFINITY, f64::INFINITY); 2];
    for rep in 0..reps as u64 {
        best[0] = min(best[0], one_run(&mut host, gd, 2 + rep));
        best[1] = min(best[1], one_run(&mut dev, gd, 2 + rep));
    }
    best
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` adds `--bench`; only the positional arguments are ours.
    let a: Vec<String> = std::env::args()
        .skip(1)
        .filter(|s| !s.starts_with("--"))
        .collect();
    let arg = |i: usize, d: usize| a.get(i).map_or(Ok(d), |s| s.parse::<usize>());
    let (size, batch, steps) = (arg(0, 64)?, arg(1, 1)?, arg(2, 25)?);
    let reps = 7;
    let device = a.get(3).map_or("cpu", |s| s.as_str());
    let shape = [batch, 3, size, size];
    let mut rng = random::rng(1);
    let gd = Guidance {
        images: (0..3)
            .map(|_| random::uniform::<f64>(&mut rng, &shape, 0.0, 1.0))
            .collect::<Vec<Tensor<f64>>>(),
        sigma: vec![vec![3.0; batch], vec![2.0; batch], vec![1.0; batch]],
        start: vec![vec![999; batch]; 3],
    };
    println!(
        "guided sampler, N = 3, ddim{steps}, {batch}×3×{size}², denoiser 0.1·x; minimum of {reps} \
         alternating runs, ms per step ({} threads)",
        rayon::current_num_threads()
    );
    let run = |name: &str, [h, d]: [(f64, f64); 2]| {
        println!(
            "{name}: host step {:.2} ms/step ({:.2} outside the graph), device step {:.2} ms/step \
             ({:.2} outside the graph); host-side work removed: {:.2} ms/step",
            h.0,
            h.1,
            d.0,
            d.1,
            h.1 - d.1
        )
    };
    match device {
        "cpu" => {
            run(
                "cpu-f32",
                compare(CpuBackend::<f32>::new, shape, steps, &gd, reps),
            );
        }
        "cuda" => {
            let be = std::rc::Rc::new(
                dynface::backend::cuda::CudaBackend::new().map_err(anyhow::Error::msg)?,
            );
            run("cuda", compare(|| be.clone(), shape, steps, &gd, reps));
        }
        other => anyhow::bail!("device {other}: expected cpu or cuda"),
    }
    Ok(())
}
