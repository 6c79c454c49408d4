//! Forward and forward + input-gradient time of a UNet on any backend, with random weights
//! (speed does not depend on their values): the figure compared with PyTorch's
//! `tools/reference/bench_torch.py` on the same card.

use crate::backend::Backend;
use crate::exec::Executor;
use crate::graph::plan::PlanOptions;
use crate::models::unet::model::UNetGraph;
use crate::models::unet::{unet_spec, UNetConfig};
use crate::tensor::{random, Scalar, Tensor};
use anyhow::Result;
use serde::Serialize;
use std::collections::HashMap;
use std::time::Instant;

#[derive(Clone, Debug, Serialize)]
pub struct UNetTiming {
    pub batch: usize,
    pub size: usize,
    pub with_grad: bool,
    /// Median milliseconds per pass.
    pub ms: f64,
    pub min_ms: f64,
    pub images_per_s: f64,
    pub peak_bytes: usize,
}

/// Random weights for every key of the config (N(0, 1/fan_in); norms at 1 and 0).
pub fn random_unet_weights(cfg: &UNetConfig, seed: u64) -> Result<HashMap<String, Tensor<f32>>> {
    let mut rng = random::rng(seed);
    let mut m = HashMap::new();
    for (k, s) in unet_spec(cfg)? {
        let fan_in: usize = s.iter().skip(1).product::<usize>().max(1);
        let t = if s.len() == 1 {
            random::normal(&mut rng, &s, 0.02)
        } else {
            random::normal(&mut rng, &s, (1.0 / fan_in as f64).sqrt())
        };
        m.insert(k, t);
    }
    Ok(m)
}

/// Times `reps` passes after `warmup` untimed ones, synchronising around each; `fuse`:
/// with the rewrite passes the backend asks for (see `PlanOptions::fuse`).
#[allow(clippy::too_many_arguments)]
pub fn time_unet<B: Backend>(
    backend: B,
    cfg: &UNetConfig,
    weights: &HashMap<String, Tensor<f32>>,
    batch: usize,
    size: usize,
    with_grad: bool,
    warmup: usize,
    reps: usize,
    fuse: bool,
) -> Result<(UNetTiming, Executor<B>)> {
    let ug = UNetGraph::new(cfg, batch, size, size, with_grad)?;
    let opts = PlanOptions {
        fuse,
        ..Default::default()
    };
    let mut ex = Executor::new(backend, &ug.graph, &ug.outputs(), opts)?;
    ex.bind_all(|k| weights.get(k).cloned())?;
    let mut rng = random::rng(1);
    let x: Tensor<f32> = random::normal(&mut rng, &[batch, cfg.in_channels, size, size], 1.0);
    ex.set_input("x", &x.cast::<B::Elem>())?;
    let t = Tensor::new(
        vec![batch],
        (0..batch)
            .map(|i| B::Elem::of_f64((700 + 17 * i) as f64 % 1000.0))
            .collect(),
    );
    ex.set_input("t", &t)?;
    if with_grad {
        let shape = ug.graph.shape(ug.out).to_vec();
        let c: Tensor<f32> = random::normal(&mut rng, &shape, 1.0);
        ex.set_input("cotangent", &c.cast::<B::Elem>())?;
    }
    for _ in 0..warmup {
        ex.run()?;
    }
    ex.backend.synchronize()?;
    let mut times = vec![];
    for _ in 0..reps.max(1) {
        let t0 = Instant::now();
        ex.run()?;
        ex.backend.synchronize()?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let ms = times[times.len() / 2];
    Ok((
        UNetTiming {
            batch,
            size,
            with_grad,
            ms,
            min_ms: times[0],
            images_per_s: batch as f64 / (ms / 1e3),
            peak_bytes: ex.peak_bytes(),
        },
        ex,
    ))
}
