//! CPU benchmark of 3×3 convolution (forward and input gradient) at UNet-like shapes,
//! set against the `gemm` crate's f32 matrix-product rate measured in the same run.

use super::timing::{interleaved, median_seconds};
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

/// Times of one shape and direction. The gemm rates are timed in alternation with the
/// convolution (see `interleaved_medians`), so the ratio holds on a busy machine.
#[derive(Clone, Debug, Serialize)]
pub struct ConvResult {
    pub shape: ConvShape,
    pub direction: Direction,
    pub ms: f64,
    pub gflops: f64,
    /// f32 gemm at 1024³, the reference rate.
    pub gemm_1024_gflops: f64,
    pub pct_of_gemm: f64,
    /// The same ratio from FLOP per CPU-second (time spent waiting for a core left out).
    pub cpu_pct_of_gemm: Option<f64>,
    /// f32 gemm at the convolution's own im2col (M, N, K).
    pub same_dims_gemm_gflops: f64,
}

/// Operands of one f32 product `C[m,n] = A[m,k]·B[k,n]`.
pub struct GemmCase {
    m: usize,
    n: usize,
    k: usize,
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
}

impl GemmCase {
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        let mut rng = random::rng(11);
        GemmCase {
            m,
            n,
            k,
            a: random::normal::<f32>(&mut rng, &[m, k], 1.0).data,
            b: random::normal::<f32>(&mut rng, &[k, n], 1.0).data,
            c: vec![0f32; m * n],
        }
    }
    pub fn flops(&self) -> f64 {
        2.0 * (self.m * self.n * self.k) as f64
    }
    /// One product on all rayon threads.
    pub fn run(&mut self) {
        let (m, n, k) = (self.m, self.n, self.k);
        let threads = rayon::current_num_threads();
        gemm_into(
            m,
            n,
            k,
            &self.a,
            k,
            1,
            &self.b,
            n,
            1,
            &mut self.c,
            n,
            1,
            false,
            threads,
        );
    }
}

/// Operands of one convolution pass in f32.
pub struct ConvCase {
    geom: ConvGeom,
    dir: Direction,
    x: Vec<f32>,
    w: Vec<f32>,
    out: Vec<f32>,
}

impl ConvCase {
    pub fn new(shape: ConvShape, dir: Direction) -> Self {
        let mut rng = random::rng(12);
        let (c, s) = (shape.channels, shape.size);
        ConvCase {
            geom: shape.geom(),
            dir,
            x: random::normal::<f32>(&mut rng, &[1, c, s, s], 1.0).data,
            w: random::normal::<f32>(&mut rng, &[c, c, 3, 3], 0.05).data,
            out: vec![0f32; c * s * s],
        }
    }
    pub fn run(&mut self) {
        match self.dir {
            Direction::Forward => conv2d_forward(&self.geom, &self.x, &self.w, None, &mut self.out),
            // `x` stands in for dy: at stride 1, pad 1 the shapes agree.
            Direction::InputGrad => {
                conv2d_backward_input(&self.geom, &self.x, &self.w, &mut self.out)
            }
        }
    }
}

/// Median seconds of one gemm on its own.
pub fn time_gemm(m: usize, n: usize, k: usize, warmup: usize, reps: usize) -> f64 {
    let mut g = GemmCase::new(m, n, k);
    median_seconds(warmup, reps, || g.run())
}

/// Median seconds of one convolution pass on its own.
pub fn time_conv(shape: ConvShape, dir: Direction, warmup: usize, reps: usize) -> f64 {
    let mut c = ConvCase::new(shape, dir);
    median_seconds(warmup, reps, || c.run())
}

/// Times the convolution, the 1024³ gemm and the same-dimension gemm in alternation.
pub fn bench_shape(shape: ConvShape, dir: Direction, warmup: usize, reps: usize) -> ConvResult {
    let mut conv = ConvCase::new(shape, dir);
    let mut big = GemmCase::new(1024, 1024, 1024);
    let (m, n, k) = shape.gemm_dims();
    let mut same = GemmCase::new(m, n, k);
    let (fb, fs) = (big.flops(), same.flops());
    let t = interleaved(
        warmup,
        reps,
        &mut [&mut || conv.run(), &mut || big.run(), &mut || same.run()],
    );
    let gflops = shape.flops() / t[0].wall / 1e9;
    let gemm_1024_gflops = fb / t[1].wall / 1e9;
    let cpu_pct_of_gemm = match (t[0].cpu, t[1].cpu) {
        (Some(cc), Some(cg)) if cc > 0.0 && cg > 0.0 => {
            Some(100.0 * (shape.flops() / cc) / (fb / cg))
        }
        _ => None,
    };
    ConvResult {
        shape,
        direction: dir,
        ms: t[0].wall * 1e3,
        gflops,
        gemm_1024_gflops,
        pct_of_gemm: 100.0 * gflops / gemm_1024_gflops,
        cpu_pct_of_gemm,
        same_dims_gemm_gflops: fs / t[2].wall / 1e9,
    }
}
