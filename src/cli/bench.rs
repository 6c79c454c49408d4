//! `dynface bench`'s flags; the benchmarks themselves are `crate::bench`.

use super::values::{NetArg, PrecisionArg};
use crate::bench::BenchOptions;
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Device to benchmark: `cpu` (conv2d against the gemm crate's rate) or `cuda` (convs,
    /// the UNet's forward and DPS step, graph replay, per-kernel profile; needs a GPU).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Untimed runs before timing each case (default 3; 1 with --net).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Timed runs per case; the median is reported.
    #[arg(long, default_value_t = 11)]
    pub reps: usize,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// cuda: UNet batch sizes to time (forward and forward + input gradient).
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 8])]
    pub unet_batches: Vec<usize>,
    /// Skip the convolution table.
    #[arg(long)]
    pub skip_conv: bool,
    /// Write a Chrome trace-event JSON (Perfetto, chrome://tracing): cpu: one forward of the
    /// tiny random UNet, a slice per op; cuda: the profiled forward + input gradient, a slice
    /// per op (host, synchronised) and per kernel (CUDA events).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// cuda: print the per-kernel profile of one forward + input gradient; cpu --net: the
    /// per-op profile of one more run.
    #[arg(long)]
    pub profile: bool,
    /// cuda: convolution and matrix-product operands, fp32 or bf16 (tensor cores, fp32
    /// accumulation). The CPU
    /// bench is fp32 only (bf16 there is an error).
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: PrecisionArg,
    /// cpu: time one whole network at its real size instead of the convolution table:
    /// DifFace's FFHQ 512 UNet or its SwinIR restorer, random weights, f32.
    #[arg(long, value_enum)]
    pub net: Option<NetArg>,
    /// --net: time the forward + input gradient (one DPS step's network cost).
    #[arg(long)]
    pub grad: bool,
    /// --net: timed runs; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// --net: batch size.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// --net: input size in pixels (square).
    #[arg(long, default_value_t = 512)]
    pub size: usize,
    /// cuda: plan the UNet op by op as built, without the rewrite passes that fuse
    /// GroupNorm → (scale-shift) → SiLU and attention, to time what fusion saves in the
    /// same run.
    #[arg(long)]
    pub unfused_norm: bool,
}

impl BenchArgs {
    pub fn options(&self) -> BenchOptions {
        BenchOptions {
            device: self.device.clone(),
            warmup: self.warmup,
            reps: self.reps,
            json: self.json.clone(),
            unet_batches: self.unet_batches.clone(),
            skip_conv: self.skip_conv,
            trace: self.trace.clone(),
            profile: self.profile,
            precision: self.precision.into(),
            net: self.net.map(Into::into),
            grad: self.grad,
            iters: self.iters,
            batch: self.batch,
            size: self.size,
            unfused_norm: self.unfused_norm,
        }
    }
}
