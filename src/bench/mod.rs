//! `dynface bench`: throughput of the compute kernels against a reference rate measured in
//! the same run, so the ratio stays meaningful on a shared or throttled machine.

pub mod cpu_conv;
pub mod cpu_net;
pub mod cuda;
pub mod timing;
pub mod trace_cpu;
pub mod unet;

use anyhow::{bail, Context};
use cpu_conv::{bench_shape, ConvResult, Direction, UNET_SHAPES};
use serde::Serialize;
use std::path::PathBuf;

/// What `dynface bench` is asked to time (the command line's flags: `cli::bench`).
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Device to benchmark: `cpu` (conv2d against the gemm crate's rate) or `cuda` (convs,
    /// the UNet's forward and DPS step, graph replay, per-kernel profile; needs a GPU).
    pub device: String,
    /// Untimed runs before timing each case (default 3; 1 with --net).
    pub warmup: Option<usize>,
    /// Timed runs per case; the median is reported.
    pub reps: usize,
    /// Also write the figures as JSON to this file.
    pub json: Option<PathBuf>,
    /// cuda: UNet batch sizes to time (forward and forward + input gradient).
    pub unet_batches: Vec<usize>,
    /// Skip the convolution table.
    pub skip_conv: bool,
    /// Write a Chrome trace-event JSON (Perfetto, chrome://tracing): cpu: one forward of the
    /// tiny random UNet, a slice per op; cuda: the profiled forward + input gradient, a slice
    /// per op (host, synchronised) and per kernel (CUDA events).
    pub trace: Option<PathBuf>,
    /// cuda: print the per-kernel profile of one forward + input gradient; cpu --net: the
    /// per-op profile of one more run.
    pub profile: bool,
    /// cuda: convolution and matrix-product operands, fp32 or bf16 (tensor cores, fp32
    /// accumulation). The CPU
    /// bench is fp32 only (bf16 there is an error).
    pub precision: crate::graph::Precision,
    /// cpu: time one whole network at its real size instead of the convolution table:
    /// DifFace's FFHQ 512 UNet or its SwinIR restorer, random weights, f32.
    pub net: Option<cpu_net::Net>,
    /// --net: time the forward + input gradient (one DPS step's network cost).
    pub grad: bool,
    /// --net: timed runs; the median is reported.
    pub iters: usize,
    /// --net: batch size.
    pub batch: usize,
    /// --net: input size in pixels (square).
    pub size: usize,
    /// cuda: plan the UNet op by op as built, without the rewrite passes that fuse
    /// GroupNorm → (scale-shift) → SiLU and attention, to time what fusion saves in the
    /// same run.
    pub unfused_norm: bool,
}

/// Everything one CPU bench run measured.
#[derive(Debug, Clone, Serialize)]
pub struct CpuBenchReport {
    pub threads: usize,
    pub warmup: usize,
    pub reps: usize,
    pub conv: Vec<ConvResult>,
    /// The `--net` run, when asked for.
    pub net: Option<cpu_net::NetBenchReport>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "device", rename_all = "snake_case")]
pub enum BenchReport {
    Cpu(CpuBenchReport),
    Cuda(cuda::CudaBenchReport),
}

/// Runs the benchmark for `args.device`, prints a table and optionally writes JSON.
pub fn run_bench(args: &BenchOptions) -> anyhow::Result<BenchReport> {
    if args.device == "cpu" && args.precision != crate::graph::Precision::Fp32 {
        bail!(
            "--precision {} needs --device cuda: the CPU backend computes in fp32 only",
            args.precision
        );
    }
    if args.net.is_some() && args.device != "cpu" {
        bail!("--net needs --device cpu (the cuda bench times the UNet on its own)");
    }
    let report = match args.device.as_str() {
        "cpu" if args.net.is_some() => {
            let net = args.net.expect("checked");
            let r = cpu_net::run_net(&cpu_net::NetBenchOptions {
                net,
                batch: args.batch,
                size: args.size,
                with_grad: args.grad,
                warmup: args.warmup.unwrap_or(1),
                iters: args.iters,
                profile: args.profile,
            })?;
            BenchReport::Cpu(CpuBenchReport {
                threads: r.threads,
                warmup: r.warmup,
                reps: r.iters,
                conv: vec![],
                net: Some(r),
            })
        }
        "cpu" => {
            let r = BenchReport::Cpu(run_cpu(args));
            if let Some(p) = &args.trace {
                trace_cpu::trace_cpu_unet(p)?;
            }
            r
        }
        "cuda" => BenchReport::Cuda(cuda::run_cuda(args)?),
        other => bail!("unknown bench device '{other}' (expected cpu or cuda)"),
    };
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text)
            .with_context(|| format!("cannot write bench JSON to {}", path.display()))?;
    }
    Ok(report)
}

fn run_cpu(args: &BenchOptions) -> CpuBenchReport {
    let threads = rayon::current_num_threads();
    let warmup = args.warmup.unwrap_or(3);
    println!(
        "cpu bench: f32, {threads} threads, median of {} reps after {} warm-up; each conv is \
         timed in alternation with the gemm crate's f32 product (1024³ and the conv's own \
         im2col MxNxK); '% gemm cpu' compares FLOP per CPU-second instead of per second",
        args.reps, warmup
    );
    if args.skip_conv {
        println!("convolution table skipped (--skip-conv)");
    } else {
        println!(
            "{:<12} {:<11} {:>8} {:>9} {:>14} {:>8} {:>10} {:>16}",
            "shape",
            "direction",
            "ms",
            "GFLOP/s",
            "gemm1024 GF/s",
            "% gemm",
            "% gemm cpu",
            "gemm MxNxK GF/s"
        );
    }
    let mut conv = Vec::new();
    for shape in UNET_SHAPES.iter().filter(|_| !args.skip_conv) {
        for dir in [Direction::Forward, Direction::InputGrad] {
            let r = bench_shape(*shape, dir, warmup, args.reps);
            println!(
                "{:<12} {:<11} {:>8.2} {:>9.1} {:>14.1} {:>7.0}% {:>10} {:>16.1}",
                format!("{}ch {}²", shape.channels, shape.size),
                dir.name(),
                r.ms,
                r.gflops,
                r.gemm_1024_gflops,
                r.pct_of_gemm,
                r.cpu_pct_of_gemm
                    .map_or("n/a".to_string(), |p| format!("{p:.0}%")),
                r.same_dims_gemm_gflops
            );
            conv.push(r);
        }
    }
    CpuBenchReport {
        threads,
        warmup,
        reps: args.reps,
        conv,
        net: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(device: &str) -> BenchOptions {
        BenchOptions {
            device: device.to_string(),
            warmup: Some(0),
            reps: 1,
            json: None,
            net: None,
            grad: false,
            iters: 1,
            batch: 1,
            size: 64,
            unet_batches: vec![1],
            skip_conv: true,
            trace: None,
            profile: false,
            precision: crate::graph::Precision::Fp32,
            unfused_norm: false,
        }
    }

    #[test]
    fn bf16_on_the_cpu_is_a_clear_error() {
        let mut a = args("cpu");
        a.precision = crate::graph::Precision::Bf16;
        let e = run_bench(&a).unwrap_err().to_string();
        assert!(e.contains("--precision bf16 needs --device cuda"), "{e}");
    }

    #[test]
    fn cuda_without_a_gpu_is_a_clear_error_and_unknown_devices_are_refused() {
        if crate::backend::device::select_device("cuda").is_ok() {
            // Not a skip of a GPU check: on a card this test's subject (the no-GPU error) is moot.
            println!("not applicable: a GPU is usable here, so the no-GPU error cannot occur");
        } else {
            let e = run_bench(&args("cuda")).unwrap_err().to_string();
            assert!(e.contains("--device cuda"), "{e}");
        }
        let e = run_bench(&args("tpu")).unwrap_err().to_string();
        assert!(e.contains("unknown bench device 'tpu'"), "{e}");
    }

    #[test]
    fn report_json_names_device_and_figures() {
        let shape = UNET_SHAPES[1];
        let report = BenchReport::Cpu(CpuBenchReport {
            threads: 2,
            warmup: 1,
            reps: 3,
            conv: vec![ConvResult {
                shape,
                direction: Direction::InputGrad,
                ms: 8.0,
                gflops: shape.flops() / 8e-3 / 1e9,
                gemm_1024_gflops: 200.0,
                pct_of_gemm: 75.5,
                cpu_pct_of_gemm: Some(80.0),
                same_dims_gemm_gflops: 190.0,
            }],
            net: None,
        });
        let v: serde_json::Value = serde_json::to_value(&report).unwrap();
        assert_eq!(v["device"], "cpu");
        assert_eq!(v["conv"][0]["direction"], "input_grad");
        assert_eq!(v["conv"][0]["shape"]["channels"], 128);
        assert_eq!(v["conv"][0]["pct_of_gemm"], 75.5);
    }
}
