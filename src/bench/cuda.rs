//! `dynface bench --device cuda`: convolutions at the UNet's shapes, the FFHQ 512 UNet's
//! forward and forward + input gradient (the cost of one DPS step) at batch 1 and 8, the same
//! replayed as a CUDA graph, and the per-kernel profile of one forward + gradient.

use super::unet::{random_unet_weights, time_unet, UNetTiming};
use super::BenchOptions;
use crate::backend::cuda::{bench as cbench, profile, CudaBackend, CudaOptions, Precision};
use crate::backend::Backend;
use crate::models::unet::UNetConfig;
use anyhow::{anyhow, Result};
use serde::Serialize;
use std::rc::Rc;
use std::time::Instant;

#[derive(Clone, Debug, Serialize)]
pub struct CudaBenchReport {
    pub device: String,
    /// Convolution operand precision of this run.
    pub precision: Precision,
    /// Whether the UNet was planned with the rewrite passes (fused GroupNorm+SiLU and
    /// attention) or op by op (`--unfused-norm`).
    pub fused_norm_silu: bool,
    pub conv: Vec<String>,
    pub unet: Vec<UNetTiming>,
    /// (batch, ms per forward + gradient replayed from a CUDA graph)
    pub unet_graph_replay: Vec<(usize, f64)>,
    pub profile: Vec<String>,
}

pub fn run_cuda(args: &BenchOptions) -> Result<CudaBenchReport> {
    let opts = CudaOptions {
        precision: args.precision,
        ..Default::default()
    };
    let be = Rc::new(CudaBackend::with_options(opts).map_err(|e| anyhow!("--device cuda: {e}"))?);
    let device = be.info().to_string();
    println!(
        "cuda bench on {device}, convolutions and products {} (conv weight gradient fp32)",
        args.precision
    );
    let t0 = Instant::now();
    be.preload_all()?;
    println!(
        "kernels compiled or loaded from the cache in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let mut conv = vec![];
    if !args.skip_conv {
        let rows = cbench::run_conv_bench(&be, &cbench::ConvBenchOptions::default())?;
        let table = cbench::format_rows(&rows);
        println!("{table}");
        conv = table.lines().map(str::to_string).collect();
    }
    let cfg = UNetConfig::ffhq512();
    let fuse = !args.unfused_norm;
    let weights = random_unet_weights(&cfg, 0)?;
    let mut unet = vec![];
    let mut replay = vec![];
    let mut prof = vec![];
    println!(
        "FFHQ 512 UNet (random weights), convs and products {}, group norm + SiLU and attention {}, median of {} after {} warm-up:",
        args.precision,
        if fuse { "fused" } else { "op by op" },
        args.reps,
        args.warmup.unwrap_or(3)
    );
    for &b in &args.unet_batches {
        for with_grad in [false, true] {
            let (t, mut ex) = time_unet(
                be.clone(),
                &cfg,
                &weights,
                b,
                512,
                with_grad,
                args.warmup.unwrap_or(3).min(2),
                args.reps.min(5),
                fuse,
            )?;
            println!(
                "  batch {b} {:<22} {:>9.1} ms (min {:.1})  {:>7.2} img/s  arena {:.2} GB",
                if with_grad {
                    "forward + grad x"
                } else {
                    "forward"
                },
                t.ms,
                t.min_ms,
                t.images_per_s,
                t.peak_bytes as f64 / 1e9
            );
            unet.push(t);
            if with_grad {
                match ex.capture() {
                    Ok(()) => {
                        let mut times = vec![];
                        for _ in 0..args.reps.clamp(1, 5) {
                            let t0 = Instant::now();
                            ex.replay()?;
                            ex.backend.synchronize()?;
                            times.push(t0.elapsed().as_secs_f64() * 1e3);
                        }
                        times.sort_by(f64::total_cmp);
                        let ms = times[times.len() / 2];
                        println!("  batch {b} forward + grad x, CUDA graph replay {ms:>9.1} ms");
                        replay.push((b, ms));
                    }
                    Err(e) => println!("  batch {b}: graph capture failed: {e}"),
                }
                let traced = args.trace.is_some() && b == args.unet_batches[0];
                if (args.profile || traced) && b == args.unet_batches[0] {
                    if traced {
                        crate::trace::start(crate::trace::DEFAULT_LIMIT);
                    }
                    be.start_profiling();
                    let t_run = Instant::now();
                    ex.run()?;
                    ex.backend.synchronize()?;
                    let (stats, launches) = be.finish_profiling_with_timeline()?;
                    if let Some(path) = args.trace.as_ref().filter(|_| traced) {
                        // Device slices from the CUDA events, anchored at the host time the
                        // run started (the first launch follows it by the launch latency).
                        let t0 = crate::trace::micros_since_start(t_run);
                        for l in &launches {
                            crate::trace::track_span(
                                "cuda stream 0 (CUDA events)",
                                l.kernel,
                                "kernel",
                                t0 + l.start_ms * 1e3,
                                l.ms * 1e3,
                                serde_json::json!({ "op": l.op }),
                            );
                        }
                        let meta = serde_json::json!({
                            "what": format!("one FFHQ 512 UNet forward + input gradient at batch {b}"),
                            "device": device,
                        });
                        let t = crate::trace::finish(path, meta)?;
                        println!("trace: {} ({} slices)", path.display(), t.slices);
                    }
                    let table = profile::format_table(&stats);
                    if args.profile {
                        println!("per-kernel profile, one forward + grad x at batch {b}:\n{table}");
                    }
                    prof = table.lines().map(str::to_string).collect();
                }
            }
        }
    }
    Ok(CudaBenchReport {
        device,
        precision: args.precision,
        fused_norm_silu: fuse,
        conv,
        unet,
        unet_graph_replay: replay,
        profile: prof,
    })
}
