//! CPU benchmark of 3×3 convolution (forward and input gradient) at UNet-like shapes,
//! set against the `gemm` crate's f32 matrix-product rate measured in the same run.

use super::timing::median_seconds;
use crate::backend::cpu::{conv2d_backward_input, conv2d_forward, gemm_into, ConvGeom};
use crate::graph::Conv2dParams;
use crate::tensor::random;
use serde::Serialize;

/// One benchmarked convolution: `channels` in and out, `size`² spatial, batch 1, 3×3, pad 1.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ConvShape {
    pub channels: usize,
    pub size: usize,
}

/// The UNet-like shapes the project targets: every one is 1.2 GFLOP per pass.
pub const UNET_SHAPES: [ConvShape; 4] = [
    ConvShape {
        channels: 64,
        size: 128,
    },
    ConvShape {
        channels: 128,
        size: 64,
    },
    ConvShape {
        channels: 256,
        size: 32,
    },
    ConvShape {
        channels: 512,
        size: 16,
    },
];

impl ConvShape {
    pub fn geom(&self) -> ConvGeom {
        let p = Conv2dParams {
            stride: 1,
            pad: 1,
            groups: 1,
        };
        ConvGeom::new(
            &[1, self.channels, self.size, self.size],
            &[self.channels, self.channels, 3, 3],
            &p,
        )
    }
    /// Multiply-adds count twice.
    pub fn flops(&self) -> f64 {
        2.0 * (self.channels * self.channels * 9 * self.size * self.size) as f64
    }
    /// The matrix product an im2col convolution performs: (M, N, K).
    pub fn gemm_dims(&self) -> (usize, usize, usize) {
        (self.channels, self.size * self.size, 9 * self.channels)
    }
}

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Forward,
    InputGrad,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Forward => "forward",
            Direction::InputGrad => "input-grad",
        }
    }
}

/// Times of one shape and direction, with the gemm rate at the conv's own (M, N, K).
#[derive(Clone, Debug, Serialize)]
pub struct ConvResult {
    pub shape: ConvShape,
    pub direction: Direction,
    pub ms: f64,
    pub gflops: f64,
    pub same_dims_gemm_gflops: f64,
}

/// Median seconds of one f32 product `C[m,n] = A[m,k]·B[k,n]` on all rayon threads.
pub fn time_gemm(m: usize, n: usize, k: usize, warmup: usize, reps: usize) -> f64 {
    let mut rng = random::rng(11);
    let a = random::normal::<f32>(&mut rng, &[m, k], 1.0).data;
    let b = random::normal::<f32>(&mut rng, &[k, n], 1.0).data;
    let mut c = vec![0f32; m * n];
    let threads = rayon::current_num_threads();
    median_seconds(warmup, reps, || {
        gemm_into(m, n, k, &a, k, 1, &b, n, 1, &mut c, n, 1, false, threads)
    })
}

pub fn gemm_gflops(m: usize, n: usize, k: usize, warmup: usize, reps: usize) -> f64 {
    2.0 * (m * n * k) as f64 / time_gemm(m, n, k, warmup, reps) / 1e9
}

/// Median seconds of one convolution pass in f32.
pub fn time_conv(shape: ConvShape, dir: Direction, warmup: usize, reps: usize) -> f64 {
    let g = shape.geom();
    let mut rng = random::rng(12);
    let (c, s) = (shape.channels, shape.size);
    let x = random::normal::<f32>(&mut rng, &[1, c, s, s], 1.0).data;
    let w = random::normal::<f32>(&mut rng, &[c, c, 3, 3], 0.05).data;
    let mut out = vec![0f32; c * s * s];
    match dir {
        Direction::Forward => {
            median_seconds(warmup, reps, || conv2d_forward(&g, &x, &w, None, &mut out))
        }
        // `x` stands in for dy: the shapes agree at stride 1, pad 1.
        Direction::InputGrad => {
            median_seconds(warmup, reps, || conv2d_backward_input(&g, &x, &w, &mut out))
        }
    }
}

pub fn bench_shape(shape: ConvShape, dir: Direction, warmup: usize, reps: usize) -> ConvResult {
    let t = time_conv(shape, dir, warmup, reps);
    let (m, n, k) = shape.gemm_dims();
    ConvResult {
        shape,
        direction: dir,
        ms: t * 1e3,
        gflops: shape.flops() / t / 1e9,
        same_dims_gemm_gflops: gemm_gflops(m, n, k, warmup, reps),
    }
}
