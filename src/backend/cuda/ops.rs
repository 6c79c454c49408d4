//! Launch configuration of every graph op: which kernel(s), grid, block and arguments.
//! The semantics are those of `backend::cpu::run_op`; each arm names the kernel family.

use super::variant::{forced_split, Variant};
use super::{Arg, Precision};
use crate::backend::{BResult, BackendError, Operand};
use crate::graph::{BinaryOp, Conv2dParams, Op, ReduceOp, UnaryOp};
use crate::tensor::{broadcast_strides, numel, strides};

/// Mirror of `struct Strided` in kernels/common.cuh.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Strided {
    rank: i32,
    pad_: i32,
    dims: [i64; 8],
    sa: [i64; 8],
    sb: [i64; 8],
}

const MAXR: usize = 8;

impl Strided {
    fn new(dims: &[usize], sa: &[usize], sb: &[usize]) -> BResult<Self> {
        if dims.len() > MAXR {
            return Err(BackendError::Unsupported(format!(
                "rank {} exceeds the CUDA kernels' limit of {MAXR} (shape {dims:?})",
                dims.len()
            )));
        }
        let mut s = Strided {
            rank: dims.len() as i32,
            ..Default::default()
        };
        for i in 0..dims.len() {
            s.dims[i] = dims[i] as i64;
            s.sa[i] = sa[i] as i64;
            s.sb[i] = sb[i] as i64;
        }
        Ok(s)
    }
}

/// Mirror of `struct ConvGeo` in kernels/conv.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ConvGeo {
    n: i64,
    c: i64,
    h: i64,
    w: i64,
    o: i64,
    kh: i64,
    kw: i64,
    oh: i64,
    ow: i64,
    stride: i64,
    pad: i64,
    groups: i64,
}

impl ConvGeo {
    pub(super) fn new(x: &[usize], w: &[usize], p: &Conv2dParams) -> Self {
        let oh = (x[2] + 2 * p.pad - w[2]) / p.stride + 1;
        let ow = (x[3] + 2 * p.pad - w[3]) / p.stride + 1;
        ConvGeo {
            n: x[0] as i64,
            c: x[1] as i64,
            h: x[2] as i64,
            w: x[3] as i64,
            o: w[0] as i64,
            kh: w[2] as i64,
            kw: w[3] as i64,
            oh: oh as i64,
            ow: ow as i64,
            stride: p.stride as i64,
            pad: p.pad as i64,
            groups: p.groups as i64,
        }
    }
}

/// What the launch code needs from an executor of kernels: the CUDA backend, or the CPU
/// emulator of the same kernel sources used to test this code without a GPU.
pub(crate) trait Launcher {
    fn launch(
        &self,
        name: &'static str,
        grid: (u32, u32, u32),
        block: u32,
        args: Vec<Arg>,
    ) -> BResult<()>;
    /// Device address of a scratch area of at least `bytes` bytes.
    fn workspace(&self, bytes: usize) -> BResult<u64>;
    /// Multiprocessor count (for tile-size and split-K choices).
    fn sms(&self) -> usize;
    /// Operand precision of the convolutions (forward and input gradient) and matrix products.
    fn precision(&self) -> Precision;
    /// A forced tile shape / split count (tests); the default keeps the heuristics.
    fn variant(&self) -> Variant {
        Variant::default()
    }
}

/// The tile of a product: the forced one, else [`pick_tile`]'s.
fn tile_for(be: &dyn Launcher, m: usize, n: usize, batch: usize) -> (usize, usize) {
    be.variant()
        .tile
        .unwrap_or_else(|| pick_tile(m, n, batch, be.sms()))
}

const THREADS: u32 = 256;
const MAX_BLOCKS: usize = 1 << 20;

/// Grid for a grid-stride loop over n elements.
fn grid1(n: usize) -> (u32, u32, u32) {
    (
        n.div_ceil(THREADS as usize).clamp(1, MAX_BLOCKS) as u32,
        1,
        1,
    )
}

fn i64a(v: usize) -> Arg {
    Arg::I64(v as i64)
}

fn unary_code(u: UnaryOp) -> (i32, f32, f32) {
    match u {
        UnaryOp::Neg => (0, 0.0, 0.0),
        UnaryOp::Exp => (1, 0.0, 0.0),
        UnaryOp::Sqrt => (2, 0.0, 0.0),
        UnaryOp::Square => (3, 0.0, 0.0),
        UnaryOp::Silu => (4, 0.0, 0.0),
        UnaryOp::Gelu => (5, 0.0, 0.0),
        UnaryOp::Elu(a) => (6, a, 0.0),
        UnaryOp::LeakyRelu(a) => (7, a, 0.0),
        UnaryOp::Clamp(lo, hi) => (8, lo, hi),
        UnaryOp::Affine(a, b) => (9, a, b),
        UnaryOp::Tanh => (10, 0.0, 0.0),
        UnaryOp::Sigmoid => (11, 0.0, 0.0),
    }
}

fn binary_code(b: BinaryOp) -> i32 {
    match b {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
        BinaryOp::Div => 3,
    }
}

pub(crate) fn fill(be: &dyn Launcher, addr: u64, len: usize, value: f32) -> BResult<()> {
    if len == 0 {
        return Ok(());
    }
    be.launch(
        "fill_value",
        grid1(len),
        THREADS,
        vec![Arg::Ptr(addr), i64a(len), Arg::F32(value)],
    )
}

/// y[0..len] = x[0..len] between two disjoint device regions (the sampler's state feedback).
pub(crate) fn copy(be: &dyn Launcher, src: u64, dst: u64, len: usize) -> BResult<()> {
    if len == 0 {
        return Ok(());
    }
    be.launch(
        "copy_values",
        grid1(len),
        THREADS,
        vec![Arg::Ptr(src), Arg::Ptr(dst), i64a(len)],
    )
}

/// y[offB(i)] = x[offA(i)] over `dims`.
fn strided_copy(
    be: &dyn Launcher,
    x: u64,
    y: u64,
    dims: &[usize],
    sa: &[usize],
    sb: &[usize],
) -> BResult<()> {
    let n = numel(dims);
    if n == 0 {
        return Ok(());
    }
    let s = Strided::new(dims, sa, sb)?;
    be.launch(
        "strided_copy",
        grid1(n),
        THREADS,
        vec![Arg::Ptr(x), Arg::Ptr(y), i64a(n), Arg::Strided(s)],
    )
}

/// Sum (times `scale`) over `axes` of x with shape `sx` into y (kept axes in order).
fn reduce(
    be: &dyn Launcher,
    x: u64,
    y: u64,
    sx: &[usize],
    axes: &[usize],
    scale_mean: bool,
) -> BResult<()> {
    let st = strides(sx);
    let kept: Vec<usize> = (0..sx.len()).filter(|a| !axes.contains(a)).collect();
    let red: Vec<usize> = (0..sx.len()).filter(|a| axes.contains(a)).collect();
    let kd: Vec<usize> = kept.iter().map(|&a| sx[a]).collect();
    let ks: Vec<usize> = kept.iter().map(|&a| st[a]).collect();
    let rd: Vec<usize> = red.iter().map(|&a| sx[a]).collect();
    let rs: Vec<usize> = red.iter().map(|&a| st[a]).collect();
    let nout = numel(&kd);
    let count = numel(&rd);
    let scale = if scale_mean {
        1.0 / count.max(1) as f64
    } else {
        1.0
    };
    if nout == 0 {
        return Ok(());
    }
    let zeros = [0usize; MAXR];
    let kept_s = Strided::new(&kd, &ks, &zeros[..kd.len()])?;
    let red_s = Strided::new(&rd, &rs, &zeros[..rd.len()])?;
    let args = vec![
        Arg::Ptr(x),
        Arg::Ptr(y),
        i64a(nout),
        Arg::Strided(kept_s),
        Arg::Strided(red_s),
        i64a(count),
        Arg::F64(scale),
    ];
    if count >= 256 || nout < 2048 {
        be.launch(
            "reduce_block",
            (nout.min(MAX_BLOCKS) as u32, 1, 1),
            THREADS,
            args,
        )
    } else {
        be.launch("reduce_thread", grid1(nout), THREADS, args)
    }
}

/// Tile shape for a product of M rows and N columns, smaller tiles when the grid would not
/// fill the device.
fn pick_tile(m: usize, n: usize, batch: usize, sms: usize) -> (usize, usize) {
    let tiles = |bm: usize, bn: usize| m.div_ceil(bm) * n.div_ceil(bn) * batch;
    let mut t = if m > 64 && n > 64 {
        (128, 128)
    } else if n > 64 {
        (64, 128)
    } else {
        (64, 64)
    };
    if t == (128, 128) && tiles(128, 128) < sms {
        t = (64, 128);
    }
    if t == (64, 128) && tiles(64, 128) < sms {
        t = (64, 64);
    }
    t
}

fn tile_name(prefix: &str, t: (usize, usize)) -> &'static str {
    match (prefix, t) {
        ("conv_fwd", (128, 128)) => "conv_fwd_128x128",
        ("conv_fwd", (64, 128)) => "conv_fwd_64x128",
        ("conv_fwd", _) => "conv_fwd_64x64",
        ("conv_bwd_input", (128, 128)) => "conv_bwd_input_128x128",
        ("conv_bwd_input", (64, 128)) => "conv_bwd_input_64x128",
        ("conv_bwd_input", _) => "conv_bwd_input_64x64",
        ("conv_fwd_tc", (128, 128)) => "conv_fwd_tc_v1_128x128",
        ("conv_fwd_tc", (64, 128)) => "conv_fwd_tc_v1_64x128",
        ("conv_fwd_tc", _) => "conv_fwd_tc_v1_64x64",
        ("conv_bwd_input_tc", (128, 128)) => "conv_bwd_input_tc_v1_128x128",
        ("conv_bwd_input_tc", (64, 128)) => "conv_bwd_input_tc_v1_64x128",
        ("conv_bwd_input_tc", _) => "conv_bwd_input_tc_v1_64x64",
        ("conv_bwd_weight", (128, 128)) => "conv_bwd_weight_128x128",
        ("conv_bwd_weight", (64, 128)) => "conv_bwd_weight_64x128",
        (_, _) => "conv_bwd_weight_64x64",
    }
}

fn gemm_name(t: (usize, usize), a_n: bool, b_n: bool, precision: Precision) -> &'static str {
    const NAMES: [&str; 12] = [
        "gemm_128x128_nn",
        "gemm_128x128_nt",
        "gemm_128x128_tn",
        "gemm_128x128_tt",
        "gemm_64x128_nn",
        "gemm_64x128_nt",
        "gemm_64x128_tn",
        "gemm_64x128_tt",
        "gemm_64x64_nn",
        "gemm_64x64_nt",
        "gemm_64x64_tn",
        "gemm_64x64_tt",
    ];
    const TC_NAMES: [&str; 12] = [
        "gemm_tc_v1_128x128_nn",
        "gemm_tc_v1_128x128_nt",
        "gemm_tc_v1_128x128_tn",
        "gemm_tc_v1_128x128_tt",
        "gemm_tc_v1_64x128_nn",
        "gemm_tc_v1_64x128_nt",
        "gemm_tc_v1_64x128_tn",
        "gemm_tc_v1_64x128_tt",
        "gemm_tc_v1_64x64_nn",
        "gemm_tc_v1_64x64_nt",
        "gemm_tc_v1_64x64_tn",
        "gemm_tc_v1_64x64_tt",
    ];
    let base = match t {
        (128, 128) => 0,
        (64, 128) => 4,
        _ => 8,
    };
    let i = base + if a_n { 0 } else { 2 } + if b_n { 0 } else { 1 };
    match precision {
        Precision::Fp32 => NAMES[i],
        Precision::Bf16 => TC_NAMES[i],
    }
}

/// How many ways to split a product's K range, aiming at two blocks per SM: when `eager`,
/// whenever there are fewer tiles than that, otherwise only when there are fewer tiles than
/// SMs (late UNet layers: 512 ch at 16²). Each split keeps ≥ 256 of K, partial sums stay
/// ≤ 64 Mi floats, grid.z ≤ 65535. Returns (splits, chunk), chunk a multiple of the K step.
fn split_k(
    tiles: usize,
    k: usize,
    sms: usize,
    out_elems: usize,
    groups: usize,
    eager: bool,
) -> (usize, usize) {
    let mut splits = if !eager && tiles >= sms {
        1
    } else {
        (2 * sms).div_ceil(tiles.max(1))
    };
    splits = splits
        .min(k / 256)
        .min(((64usize << 20) / out_elems.max(1)).max(1))
        .min(65535 / groups.max(1))
        .max(1);
    let chunk = k.div_ceil(splits).div_ceil(16).max(1) * 16;
    (k.div_ceil(chunk).max(1), chunk)
}

/// Sums split partials from `ws` into `out` in a fixed order (plus the bias, if any).
fn splitk_reduce(
    be: &dyn Launcher,
    ws: u64,
    out: u64,
    total: usize,
    splits: usize,
    bias: Option<(u64, usize, usize)>,
) -> BResult<()> {
    let (b, channels, plane) = bias.unwrap_or((0, 1, 1));
    be.launch(
        "splitk_reduce",
        grid1(total),
        THREADS,
        vec![
            Arg::Ptr(ws),
            Arg::Ptr(out),
            i64a(total),
            Arg::I32(splits as i32),
            Arg::Ptr(b),
            i64a(channels),
            i64a(plane),
        ],
    )
}

pub(super) fn conv_fwd(
    be: &dyn Launcher,
    g: ConvGeo,
    x: u64,
    w: u64,
    bias: Option<u64>,
    y: u64,
) -> BResult<()> {
    conv_fwd_tiled(be, g, x, w, bias, y, None)
}

/// One conv implicit-GEMM launch: an `m × n` output per group (`m` rows of `t.0`, `n`
/// columns of `t.1`) reduced over `k`, split over K when the output has too few tiles, the
/// partials summed by `splitk_reduce` (adding `bias` there, when the kernel could not).
/// `args` gets the pointer the kernel writes to (the workspace when split) and the split
/// count and chunk; the three conv directions differ only in their sizes and operands.
#[allow(clippy::too_many_arguments)]
fn launch_conv_gemm(
    be: &dyn Launcher,
    kernel: &'static str,
    t: (usize, usize),
    (m, n, k, groups): (usize, usize, usize, usize),
    eager_split: bool,
    dest: u64,
    bias: Option<(u64, usize, usize)>,
    args: impl FnOnce(u64, usize, usize) -> Vec<Arg>,
) -> BResult<()> {
    let tiles = m.div_ceil(t.0) * n.div_ceil(t.1) * groups;
    let total = m * n * groups;
    let (splits, chunk) = match be.variant().splits {
        Some(s) => forced_split(k, s, groups),
        None => split_k(tiles, k, be.sms(), total, groups, eager_split),
    };
    let out = if splits > 1 {
        be.workspace(splits * total * 4)?
    } else {
        dest
    };
    be.launch(
        kernel,
        (
            n.div_ceil(t.1) as u32,
            m.div_ceil(t.0) as u32,
            (groups * splits) as u32,
        ),
        THREADS,
        args(out, splits, chunk),
    )?;
    if splits > 1 {
        splitk_reduce(be, out, dest, total, splits, bias)?;
    }
    Ok(())
}

/// The kernel family of a conv direction at the backend's precision (same grid, arguments
/// and split-K contract for both).
fn conv_family(be: &dyn Launcher, fp32: &'static str, bf16: &'static str) -> &'static str {
    match be.precision() {
        Precision::Fp32 => fp32,
        Precision::Bf16 => bf16,
    }
}

/// `conv_fwd` with the tile shape forced (for the benchmark's tile sweep).
pub(super) fn conv_fwd_tiled(
    be: &dyn Launcher,
    g: ConvGeo,
    x: u64,
    w: u64,
    bias: Option<u64>,
    y: u64,
    tile: Option<(usize, usize)>,
) -> BResult<()> {
    let groups = g.groups as usize;
    let og = (g.o / g.groups) as usize;
    let np = (g.n * g.oh * g.ow) as usize;
    let k = (g.c / g.groups * g.kh * g.kw) as usize;
    let t = tile.unwrap_or_else(|| tile_for(be, og, np, groups));
    let plane = (g.oh * g.ow) as usize;
    let family = conv_family(be, "conv_fwd", "conv_fwd_tc");
    launch_conv_gemm(
        be,
        tile_name(family, t),
        t,
        (og, np, k, groups),
        false,
        y,
        bias.map(|b| (b, g.o as usize, plane)),
        |out, splits, chunk| {
            // Split partials get the bias once, in the reduction.
            let kernel_bias = if splits > 1 { 0 } else { bias.unwrap_or(0) };
            vec![
                Arg::Ptr(x),
                Arg::Ptr(w),
                Arg::Ptr(kernel_bias),
                Arg::Ptr(out),
                Arg::Geo(g),
                Arg::I32(splits as i32),
                i64a(chunk),
            ]
        },
    )
}

pub(super) fn conv_bwd_input(
    be: &dyn Launcher,
    g: ConvGeo,
    dy: u64,
    w: u64,
    dx: u64,
) -> BResult<()> {
    conv_bwd_input_tiled(be, g, dy, w, dx, None)
}

/// `conv_bwd_input` with the tile shape forced (for the benchmark's tile sweep).
pub(super) fn conv_bwd_input_tiled(
    be: &dyn Launcher,
    g: ConvGeo,
    dy: u64,
    w: u64,
    dx: u64,
    tile: Option<(usize, usize)>,
) -> BResult<()> {
    let groups = g.groups as usize;
    let cg = (g.c / g.groups) as usize;
    let np = (g.n * g.h * g.w) as usize;
    let k = (g.o / g.groups * g.kh * g.kw) as usize;
    let t = tile.unwrap_or_else(|| tile_for(be, cg, np, groups));
    let family = conv_family(be, "conv_bwd_input", "conv_bwd_input_tc");
    launch_conv_gemm(
        be,
        tile_name(family, t),
        t,
        (cg, np, k, groups),
        false,
        dx,
        None,
        |out, splits, chunk| {
            vec![
                Arg::Ptr(dy),
                Arg::Ptr(w),
                Arg::Ptr(out),
                Arg::Geo(g),
                Arg::I32(splits as i32),
                i64a(chunk),
            ]
        },
    )
}

/// The weight gradient reduces over all N·OH·OW pixels while its output is small, so it is
/// nearly always split.
pub(super) fn conv_bwd_weight(
    be: &dyn Launcher,
    g: ConvGeo,
    x: u64,
    dy: u64,
    dw: u64,
) -> BResult<()> {
    let og = (g.o / g.groups) as usize;
    let kg = (g.c / g.groups * g.kh * g.kw) as usize;
    let groups = g.groups as usize;
    let k = (g.n * g.oh * g.ow) as usize;
    let t = tile_for(be, og, kg, groups);
    launch_conv_gemm(
        be,
        tile_name("conv_bwd_weight", t),
        t,
        (og, kg, k, groups),
        true,
        dw,
        None,
        |out, splits, chunk| {
            vec![
                Arg::Ptr(x),
                Arg::Ptr(dy),
                Arg::Ptr(out),
                Arg::Geo(g),
                Arg::I32(splits as i32),
                i64a(chunk),
            ]
        },
    )
}

#[allow(clippy::too_many_arguments)]
fn matmul(
    be: &dyn Launcher,
    a: u64,
    sa: &[usize],
    ta: bool,
    b: u64,
    sb: &[usize],
    tb: bool,
    y: u64,
    ys: &[usize],
) -> BResult<()> {
    let r = ys.len();
    let (m, n) = (ys[r - 2], ys[r - 1]);
    let (ar, ac) = (sa[sa.len() - 2], sa[sa.len() - 1]);
    let (_br, bc) = (sb[sb.len() - 2], sb[sb.len() - 1]);
    let k = if ta { ar } else { ac };
    let (a_rs, a_cs) = if ta { (1, ac) } else { (ac, 1) };
    let (b_rs, b_cs) = if tb { (1, bc) } else { (bc, 1) };
    let batch_shape = &ys[..r - 2];
    let nb = numel(batch_shape);
    if nb == 0 || m == 0 || n == 0 {
        return Ok(());
    }
    let a_mat = ar * ac;
    let b_mat = sb[sb.len() - 2] * bc;
    let sta: Vec<usize> = broadcast_strides(&sa[..sa.len() - 2], batch_shape)
        .iter()
        .map(|v| v * a_mat)
        .collect();
    let stb: Vec<usize> = broadcast_strides(&sb[..sb.len() - 2], batch_shape)
        .iter()
        .map(|v| v * b_mat)
        .collect();
    let batch = Strided::new(batch_shape, &sta, &stb)?;
    let t = tile_for(be, m, n, nb);
    let name = gemm_name(t, a_cs == 1, b_cs == 1, be.precision());
    be.launch(
        name,
        (
            n.div_ceil(t.1) as u32,
            m.div_ceil(t.0) as u32,
            nb.min(65535) as u32,
        ),
        THREADS,
        vec![
            Arg::Ptr(a),
            Arg::Ptr(b),
            Arg::Ptr(y),
            i64a(m),
            i64a(n),
            i64a(k),
            i64a(a_rs),
            i64a(a_cs),
            i64a(b_rs),
            i64a(b_cs),
            i64a(nb),
            Arg::Strided(batch),
        ],
    )
}

const MODE_G: i32 = 0;
const MODE_DG: i32 = 1;
const MODE_ADJ: i32 = 2;

#[allow(clippy::too_many_arguments)]
fn blur_pass(
    be: &dyn Launcher,
    src: u64,
    dst: u64,
    sigma: u64,
    s: &[usize],
    axis: i32,
    mode: i32,
    accumulate: bool,
) -> BResult<()> {
    let (b, c, h, w) = (s[0], s[1], s[2], s[3]);
    let planes = b * c;
    if planes == 0 || h * w == 0 {
        return Ok(());
    }
    if planes > 65535 {
        return Err(BackendError::Unsupported(format!(
            "blur over {planes} planes (> 65535) in one launch"
        )));
    }
    be.launch(
        "blur_pass",
        (
            (h * w).div_ceil(256).clamp(1, 1024) as u32,
            planes as u32,
            1,
        ),
        256,
        vec![
            Arg::Ptr(src),
            Arg::Ptr(dst),
            Arg::Ptr(sigma),
            i64a(c),
            i64a(h),
            i64a(w),
            Arg::I32(axis),
            Arg::I32(mode),
            Arg::I32(accumulate as i32),
        ],
    )
}

fn blur_dsigma(be: &dyn Launcher, x: u64, sigma: u64, g: u64, y: u64, s: &[usize]) -> BResult<()> {
    let n = numel(s);
    let b = s[0];
    let per_image = n / b.max(1);
    let chunks = per_image.div_ceil(256 * 16).clamp(1, 1024);
    let ws = be.workspace(2 * n * 4 + b * chunks * 8)?;
    let (t, u, partial) = (ws, ws + 4 * n as u64, ws + 8 * n as u64);
    // ∂/∂σ ⟨C_g R_g x, g⟩ = ⟨C_dg R_g x + C_g R_dg x, g⟩ (rows R, columns C).
    blur_pass(be, x, t, sigma, s, 0, MODE_G, false)?;
    blur_pass(be, t, u, sigma, s, 1, MODE_DG, false)?;
    blur_pass(be, x, t, sigma, s, 0, MODE_DG, false)?;
    blur_pass(be, t, u, sigma, s, 1, MODE_G, true)?;
    be.launch(
        "dot_partials",
        (chunks as u32, b as u32, 1),
        256,
        vec![Arg::Ptr(u), Arg::Ptr(g), Arg::Ptr(partial), i64a(per_image)],
    )?;
    be.launch(
        "dot_finish",
        grid1(b),
        THREADS,
        vec![Arg::Ptr(partial), Arg::Ptr(y), i64a(b), i64a(chunks)],
    )
}

/// Computes `op` into `out`; see `backend::cpu::run_op` for the semantics of each op.
/// Launches `op`; `base` is the device address of arena element 0.
pub(crate) fn exec(
    be: &dyn Launcher,
    base: u64,
    op: &Op,
    ins: &[Operand],
    out: Operand,
) -> BResult<()> {
    let addr = |off: usize| base + 4 * off as u64;
    let p = |i: usize| addr(ins[i].offset);
    let s = |i: usize| ins[i].shape;
    let y = addr(out.offset);
    let ys = out.shape;
    let n = numel(ys);
    match op {
        Op::Input { .. } | Op::Const { .. } | Op::Fill { .. } | Op::Reshape { .. } => {
            return Err(BackendError::Unsupported(format!(
                "{} is not executed",
                op.kind()
            )))
        }
        Op::Unary(u) => {
            let (code, a, b) = unary_code(*u);
            if n > 0 {
                be.launch(
                    "unary_fwd",
                    grid1(n),
                    THREADS,
                    vec![
                        Arg::Ptr(p(0)),
                        Arg::Ptr(y),
                        i64a(n),
                        Arg::I32(code),
                        Arg::F32(a),
                        Arg::F32(b),
                    ],
                )?;
            }
        }
        Op::UnaryBackward(u) => {
            let (code, a, b) = unary_code(*u);
            if n > 0 {
                be.launch(
                    "unary_bwd",
                    grid1(n),
                    THREADS,
                    vec![
                        Arg::Ptr(p(0)),
                        Arg::Ptr(p(1)),
                        Arg::Ptr(y),
                        i64a(n),
                        Arg::I32(code),
                        Arg::F32(a),
                        Arg::F32(b),
                    ],
                )?;
            }
        }
        Op::Binary(b) => {
            if n == 0 {
                return Ok(());
            }
            let code = binary_code(*b);
            if s(0) == ys && s(1) == ys {
                be.launch(
                    "binary_same",
                    grid1(n),
                    THREADS,
                    vec![
                        Arg::Ptr(p(0)),
                        Arg::Ptr(p(1)),
                        Arg::Ptr(y),
                        i64a(n),
                        Arg::I32(code),
                    ],
                )?;
            } else {
                let st = Strided::new(
                    ys,
                    &broadcast_strides(s(0), ys),
                    &broadcast_strides(s(1), ys),
                )?;
                be.launch(
                    "binary_bcast",
                    grid1(n),
                    THREADS,
                    vec![
                        Arg::Ptr(p(0)),
                        Arg::Ptr(p(1)),
                        Arg::Ptr(y),
                        i64a(n),
                        Arg::I32(code),
                        Arg::Strided(st),
                    ],
                )?;
            }
        }
        Op::BroadcastTo { .. } => {
            strided_copy(be, p(0), y, ys, &broadcast_strides(s(0), ys), &strides(ys))?
        }
        Op::SumTo { .. } => {
            let sx = s(0);
            let lead = sx.len() - ys.len();
            let axes: Vec<usize> = (0..sx.len())
                .filter(|&a| a < lead || (ys[a - lead] == 1 && sx[a] != 1))
                .collect();
            reduce(be, p(0), y, sx, &axes, false)?;
        }
        Op::Reduce { op, axes, .. } => {
            reduce(be, p(0), y, s(0), axes, matches!(op, ReduceOp::Mean))?;
        }
        Op::Conv2d(cp) => {
            let g = ConvGeo::new(s(0), s(1), cp);
            let bias = (ins.len() > 2).then(|| p(2));
            if n > 0 {
                conv_fwd(be, g, p(0), p(1), bias, y)?;
            }
        }
        Op::Conv2dBackwardInput { p: cp, in_hw } => {
            let xs = [s(0)[0], s(1)[1] * cp.groups, in_hw.0, in_hw.1];
            let g = ConvGeo::new(&xs, s(1), cp);
            if n > 0 {
                conv_bwd_input(be, g, p(0), p(1), y)?;
            }
        }
        Op::Conv2dBackwardWeight { p: cp, w_shape } => {
            let g = ConvGeo::new(s(0), w_shape, cp);
            if n > 0 {
                if g.n * g.oh * g.ow == 0 {
                    fill(be, y, n, 0.0)?;
                } else {
                    conv_bwd_weight(be, g, p(0), p(1), y)?;
                }
            }
        }
        Op::MatMul { trans_a, trans_b } => {
            matmul(be, p(0), s(0), *trans_a, p(1), s(1), *trans_b, y, ys)?
        }
        Op::GroupNorm { groups, eps } | Op::GroupNormBackward { groups, eps } => {
            let sx = s(0);
            let c = sx[1];
            let spatial: usize = sx[2..].iter().product();
            let blocks = sx[0] * groups;
            let cg = c / groups;
            let name = if matches!(op, Op::GroupNorm { .. }) {
                "group_norm_fwd"
            } else {
                "group_norm_bwd"
            };
            be.launch(
                name,
                (blocks as u32, 1, 1),
                512,
                vec![
                    Arg::Ptr(p(0)),
                    Arg::Ptr(p(1)),
                    Arg::Ptr(p(2)),
                    Arg::Ptr(y),
                    i64a(*groups),
                    i64a(cg),
                    i64a(spatial),
                    Arg::F32(*eps),
                ],
            )?;
        }
        Op::GroupNormBackwardGamma { groups, eps } => {
            let sx = s(0);
            let (nimg, c) = (sx[0], sx[1]);
            let spatial: usize = sx[2..].iter().product();
            let rows = nimg * groups;
            let stats = be.workspace(rows * 2 * 4)?;
            be.launch(
                "row_stats_block",
                (rows as u32, 1, 1),
                512,
                vec![
                    Arg::Ptr(p(0)),
                    Arg::Ptr(stats),
                    i64a(c / groups * spatial),
                    Arg::F32(*eps),
                ],
            )?;
            be.launch(
                "group_norm_bwd_gamma",
                (c as u32, 1, 1),
                256,
                vec![
                    Arg::Ptr(p(0)),
                    Arg::Ptr(p(1)),
                    Arg::Ptr(stats),
                    Arg::Ptr(y),
                    i64a(nimg),
                    i64a(c),
                    i64a(*groups),
                    i64a(spatial),
                ],
            )?;
        }
        Op::GroupNormSilu {
            groups,
            eps,
            scale_shift,
        }
        | Op::GroupNormSiluBackward {
            groups,
            eps,
            scale_shift,
        } => {
            // group_norm_silu_{fwd,bwd} (norm.cu): one block per (image, group).
            let sx = s(0);
            let spatial: usize = sx[2..].iter().product();
            let cg = sx[1] / groups;
            if cg * spatial > u32::MAX as usize {
                return Err(BackendError::Unsupported(format!(
                    "group norm + SiLU: a group of {} values exceeds the kernel's 32-bit index",
                    cg * spatial
                )));
            }
            if n > 0 {
                // Without scale-shift the kernel never reads these pointers.
                let (scale, shift) = if *scale_shift { (p(3), p(4)) } else { (0, 0) };
                let mut args = vec![Arg::Ptr(p(0)), Arg::Ptr(p(1)), Arg::Ptr(p(2))];
                args.extend([Arg::Ptr(scale), Arg::Ptr(shift)]);
                let name = if matches!(op, Op::GroupNormSilu { .. }) {
                    "group_norm_silu_fwd"
                } else {
                    args.push(Arg::Ptr(p(if *scale_shift { 5 } else { 3 })));
                    "group_norm_silu_bwd"
                };
                args.extend([
                    Arg::Ptr(y),
                    i64a(*groups),
                    i64a(cg),
                    i64a(spatial),
                    Arg::I32(*scale_shift as i32),
                    Arg::F32(*eps),
                ]);
                be.launch(name, ((sx[0] * groups) as u32, 1, 1), 512, args)?;
            }
        }
        Op::LayerNorm { eps } | Op::LayerNormBackward { eps } => {
            let d = *s(0).last().unwrap();
            let rows = numel(s(0)) / d.max(1);
            let name = if matches!(op, Op::LayerNorm { .. }) {
                "layer_norm_fwd"
            } else {
                "layer_norm_bwd"
            };
            be.launch(
                name,
                (rows.div_ceil(8) as u32, 1, 1),
                256,
                vec![
                    Arg::Ptr(p(0)),
                    Arg::Ptr(p(1)),
                    Arg::Ptr(p(2)),
                    Arg::Ptr(y),
                    i64a(rows),
                    i64a(d),
                    Arg::F32(*eps),
                ],
            )?;
        }
        Op::LayerNormBackwardGamma { eps } => {
            let d = *s(0).last().unwrap();
            let rows = numel(s(0)) / d.max(1);
            let stats = be.workspace(rows * 2 * 4)?;
            be.launch(
                "row_stats_warp",
                (rows.div_ceil(8) as u32, 1, 1),
                256,
                vec![
                    Arg::Ptr(p(0)),
                    Arg::Ptr(stats),
                    i64a(rows),
                    i64a(d),
                    Arg::F32(*eps),
                ],
            )?;
            be.launch(
                "layer_norm_bwd_gamma",
                grid1(d),
                THREADS,
                vec![
                    Arg::Ptr(p(0)),
                    Arg::Ptr(p(1)),
                    Arg::Ptr(stats),
                    Arg::Ptr(y),
                    i64a(rows),
                    i64a(d),
                ],
            )?;
        }
        Op::Attention { scale, layout } => {
            super::attention::forward(be, base, *scale, *layout, ins, out)?
        }
        Op::AttentionBackward { scale, layout, wrt } => {
            super::attention::backward(be, base, *scale, *layout, *wrt, ins, out)?
        }
        Op::Softmax => {
            let d = *s(0).last().unwrap();
            let rows = numel(s(0)) / d.max(1);
            be.launch(
                "softmax_fwd",
                (rows.div_ceil(8) as u32, 1, 1),
                256,
                vec![Arg::Ptr(p(0)), Arg::Ptr(y), i64a(rows), i64a(d)],
            )?;
        }
        Op::SoftmaxBackward => {
            let d = *s(0).last().unwrap();
            let rows = numel(s(0)) / d.max(1);
            be.launch(
                "softmax_bwd",
                (rows.div_ceil(8) as u32, 1, 1),
                256,
                vec![
                    Arg::Ptr(p(0)),
                    Arg::Ptr(p(1)),
                    Arg::Ptr(y),
                    i64a(rows),
                    i64a(d),
                ],
            )?;
        }
        Op::Concat { axis } => {
            let outer: usize = ys[..*axis].iter().product();
            let inner: usize = ys[axis + 1..].iter().product();
            let row = ys[*axis] * inner;
            let mut at = 0usize;
            for (i, o) in ins.iter().enumerate() {
                let len = o.shape[*axis] * inner;
                strided_copy(
                    be,
                    p(i),
                    y + 4 * at as u64,
                    &[outer, len],
                    &[len, 1],
                    &[row, 1],
                )?;
                at += len;
            }
        }
        Op::Slice { axis, start, .. } => {
            let sx = s(0);
            let outer: usize = sx[..*axis].iter().product();
            let inner: usize = sx[axis + 1..].iter().product();
            let (full, len) = (sx[*axis] * inner, ys[*axis] * inner);
            strided_copy(
                be,
                p(0) + 4 * (start * inner) as u64,
                y,
                &[outer, len],
                &[full, 1],
                &[len, 1],
            )?;
        }
        Op::Pad { axis, start, .. } => {
            let sx = s(0);
            let outer: usize = sx[..*axis].iter().product();
            let inner: usize = sx[axis + 1..].iter().product();
            let (len, full) = (sx[*axis] * inner, ys[*axis] * inner);
            if n > 0 {
                be.launch("fill_zero", grid1(n), THREADS, vec![Arg::Ptr(y), i64a(n)])?;
            }
            strided_copy(
                be,
                p(0),
                y + 4 * (start * inner) as u64,
                &[outer, len],
                &[len, 1],
                &[full, 1],
            )?;
        }
        Op::Permute { perm } => {
            let st = strides(s(0));
            let src: Vec<usize> = perm.iter().map(|&a| st[a]).collect();
            strided_copy(be, p(0), y, ys, &src, &strides(ys))?;
        }
        Op::Roll { shifts } => {
            let sx = s(0);
            if n > 0 {
                let sh: Vec<usize> = (0..sx.len())
                    .map(|a| {
                        let len = sx[a] as isize;
                        let t: isize = shifts.iter().filter(|s| s.0 == a).map(|s| s.1).sum();
                        (((t % len) + len) % len) as usize
                    })
                    .collect();
                let st = Strided::new(sx, &strides(sx), &sh)?;
                be.launch(
                    "roll",
                    grid1(n),
                    THREADS,
                    vec![Arg::Ptr(p(0)), Arg::Ptr(y), i64a(n), Arg::Strided(st)],
                )?;
            }
        }
        Op::PixelShuffle { r } => {
            let sx = s(0);
            let (nn, c, h, w) = (sx[0], sx[1] / (r * r), sx[2], sx[3]);
            let view = [nn, c, *r, *r, h, w];
            let st = strides(&view);
            let perm = [0, 1, 4, 2, 5, 3];
            let dims: Vec<usize> = perm.iter().map(|&a| view[a]).collect();
            let src: Vec<usize> = perm.iter().map(|&a| st[a]).collect();
            strided_copy(be, p(0), y, &dims, &src, &strides(&dims))?;
        }
        Op::PixelUnshuffle { r } => {
            let sx = s(0);
            let (nn, c, h, w) = (sx[0], sx[1], sx[2] / r, sx[3] / r);
            let view = [nn, c, h, *r, w, *r];
            let st = strides(&view);
            let perm = [0, 1, 3, 5, 2, 4];
            let dims: Vec<usize> = perm.iter().map(|&a| view[a]).collect();
            let src: Vec<usize> = perm.iter().map(|&a| st[a]).collect();
            strided_copy(be, p(0), y, &dims, &src, &strides(&dims))?;
        }
        Op::Upsample2x | Op::SumPool2x => {
            let sx = s(0);
            let name = if matches!(op, Op::Upsample2x) {
                "upsample2x"
            } else {
                "sum_pool2x"
            };
            if n > 0 {
                be.launch(
                    name,
                    grid1(n),
                    THREADS,
                    vec![
                        Arg::Ptr(p(0)),
                        Arg::Ptr(y),
                        i64a(sx[0] * sx[1]),
                        i64a(sx[2]),
                        i64a(sx[3]),
                    ],
                )?;
            }
        }
        Op::TimestepEmbedding { dim, max_period } => {
            let b = s(0)[0];
            if n > 0 {
                be.launch(
                    "timestep_embedding",
                    grid1(b * dim / 2),
                    THREADS,
                    vec![
                        Arg::Ptr(p(0)),
                        Arg::Ptr(y),
                        i64a(b),
                        i64a(*dim),
                        Arg::F64((*max_period as f64).ln()),
                    ],
                )?;
            }
        }
        Op::GaussianBlur => {
            let t = be.workspace(n * 4)?;
            blur_pass(be, p(0), t, p(1), ys, 0, MODE_G, false)?;
            blur_pass(be, t, y, p(1), ys, 1, MODE_G, false)?;
        }
        Op::GaussianBlurAdjoint => {
            // (C·R)ᵀ = Rᵀ·Cᵀ: columns first.
            let t = be.workspace(n * 4)?;
            blur_pass(be, p(0), t, p(1), ys, 1, MODE_ADJ, false)?;
            blur_pass(be, t, y, p(1), ys, 0, MODE_ADJ, false)?;
        }
        Op::GaussianBlurDSigma => blur_dsigma(be, p(0), p(1), p(2), y, s(0))?,
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn fused_attention(
    be: &dyn Launcher,
    base: u64,
    q: usize,
    k: usize,
    v: usize,
    out: usize,
    b: usize,
    l: usize,
    s: usize,
    scale: f32,
) -> BResult<()> {
    if b > 65535 {
        return Err(BackendError::Unsupported(format!(
            "fused attention over {b} (> 65535) batches"
        )));
    }
    if s == 0 {
        return Err(BackendError::Unsupported(
            "fused attention with no keys".into(),
        ));
    }
    be.launch(
        "attention_fwd_d64",
        (l.div_ceil(64) as u32, b as u32, 1),
        256,
        vec![
            Arg::Ptr(base + 4 * q as u64),
            Arg::Ptr(base + 4 * k as u64),
            Arg::Ptr(base + 4 * v as u64),
            Arg::Ptr(base + 4 * out as u64),
            i64a(l),
            i64a(s),
            Arg::F32(scale),
        ],
    )
}

/// `bf16_round` (conv_tc.cu): y = x rounded to bf16 by the kernels' own rounding helper.
pub(crate) fn bf16_round(
    be: &dyn Launcher,
    base: u64,
    x: usize,
    y: usize,
    n: usize,
) -> BResult<()> {
    if n == 0 {
        return Ok(());
    }
    be.launch(
        "bf16_round",
        grid1(n),
        THREADS,
        vec![
            Arg::Ptr(base + 4 * x as u64),
            Arg::Ptr(base + 4 * y as u64),
            i64a(n),
        ],
    )
}

/// `mma_probe` (conv_tc.cu): one warp-wide bf16 mma on 16×16, 16×8 and 16×8 row-major
/// matrices at arena offsets a, b, c; result at d.
pub(crate) fn mma_probe(
    be: &dyn Launcher,
    base: u64,
    a: usize,
    b: usize,
    c: usize,
    d: usize,
) -> BResult<()> {
    let at = |o: usize| Arg::Ptr(base + 4 * o as u64);
    be.launch("mma_probe", (1, 1, 1), 32, vec![at(a), at(b), at(c), at(d)])
}
