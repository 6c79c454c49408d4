//! `kernels/conv.cu` (fp32) and `kernels/conv_tc.cu` (bf16 tensor cores): implicit-GEMM
//! convolutions in three directions, the split-K reduction, and the tensor-core probes.

use super::tile::{splits_for, tile_for};
use super::{grid1, i64of, DevScratch, OpArgs, THREADS};
use crate::backend::cuda::abi::{
    select, Bf16Round, ConvBwdInput, ConvBwdWeight, ConvFwd, ConvGeo, DevMut, DevPtr, Grid,
    KernelFamily, LaunchState, Launcher, MmaProbe, SplitkReduce,
};
use crate::backend::cuda::Precision;
use crate::backend::BResult;
use crate::graph::Conv2dParams;

impl ConvGeo {
    pub fn new(x: &[usize], w: &[usize], p: &Conv2dParams) -> Self {
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

/// The three directions of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Forward,
    BackwardInput,
    BackwardWeight,
}

/// The implicit GEMM of one conv direction: an `m × n` output per group reduced over `k`,
/// in tiles of `t`; `eager`: split K whenever there are fewer than two tiles per SM.
struct ConvGemm {
    t: (usize, usize),
    m: usize,
    n: usize,
    k: usize,
    groups: usize,
    eager: bool,
}

impl ConvGemm {
    /// `tile` forces the tile shape (the benchmark's sweep; the weight gradient has none).
    fn new(cfg: &LaunchState, g: &ConvGeo, dir: Direction, tile: Option<(usize, usize)>) -> Self {
        let groups = g.groups as usize;
        let (og, cg) = ((g.o / g.groups) as usize, (g.c / g.groups) as usize);
        let khkw = (g.kh * g.kw) as usize;
        let (m, n, k, eager) = match dir {
            Direction::Forward => (og, (g.n * g.oh * g.ow) as usize, cg * khkw, false),
            Direction::BackwardInput => (cg, (g.n * g.h * g.w) as usize, og * khkw, false),
            Direction::BackwardWeight => (og, cg * khkw, (g.n * g.oh * g.ow) as usize, true),
        };
        let t = tile.unwrap_or_else(|| tile_for(cfg, m, n, groups));
        ConvGemm {
            t,
            m,
            n,
            k,
            groups,
            eager,
        }
    }

    fn plan(&self, cfg: &LaunchState) -> ConvLaunch {
        let (t, m, n, groups) = (self.t, self.m, self.n, self.groups);
        let tiles = m.div_ceil(t.0) * n.div_ceil(t.1) * groups;
        let total = m * n * groups;
        let (splits, chunk) = splits_for(cfg, tiles, self.k, total, groups, self.eager);
        ConvLaunch {
            grid: Grid {
                blocks: (
                    n.div_ceil(t.1) as u32,
                    m.div_ceil(t.0) as u32,
                    (groups * splits) as u32,
                ),
                threads: THREADS,
            },
            splits,
            chunk,
            total,
        }
    }
}

/// Scratch elements of one conv launch (the split-K partials).
pub(crate) fn conv_scratch_len(
    cfg: &LaunchState,
    g: &ConvGeo,
    dir: Direction,
    tile: Option<(usize, usize)>,
) -> usize {
    ConvGemm::new(cfg, g, dir, tile).plan(cfg).scratch_len()
}

pub(super) fn fwd_scratch_len(
    cfg: &LaunchState,
    ins: &[&[usize]],
    p: &Conv2dParams,
    n: usize,
) -> usize {
    if n == 0 {
        return 0;
    }
    conv_scratch_len(
        cfg,
        &ConvGeo::new(ins[0], ins[1], p),
        Direction::Forward,
        None,
    )
}

/// The geometry of an input gradient from dy and w (and the input's size).
fn bwd_input_geo(dy: &[usize], w: &[usize], p: &Conv2dParams, in_hw: (usize, usize)) -> ConvGeo {
    ConvGeo::new(&[dy[0], w[1] * p.groups, in_hw.0, in_hw.1], w, p)
}

pub(super) fn bwd_input_scratch_len(
    cfg: &LaunchState,
    ins: &[&[usize]],
    p: &Conv2dParams,
    in_hw: (usize, usize),
    n: usize,
) -> usize {
    if n == 0 {
        return 0;
    }
    let g = bwd_input_geo(ins[0], ins[1], p, in_hw);
    conv_scratch_len(cfg, &g, Direction::BackwardInput, None)
}

pub(super) fn bwd_weight_scratch_len(
    cfg: &LaunchState,
    ins: &[&[usize]],
    p: &Conv2dParams,
    w_shape: &[usize],
    n: usize,
) -> usize {
    let g = ConvGeo::new(ins[0], w_shape, p);
    if n == 0 || g.n * g.oh * g.ow == 0 {
        return 0;
    }
    conv_scratch_len(cfg, &g, Direction::BackwardWeight, None)
}

pub(super) fn conv2d(a: &OpArgs, p: &Conv2dParams) -> BResult<()> {
    let g = ConvGeo::new(a.s(0), a.s(1), p);
    let bias = (a.ins.len() > 2).then(|| a.x(2));
    if a.n() == 0 {
        return Ok(());
    }
    let p = a.precision()?;
    conv_fwd(a.be, a.scratch, g, a.x(0), a.x(1), bias, a.y(), None, p)
}

pub(super) fn conv2d_backward_input(
    a: &OpArgs,
    p: &Conv2dParams,
    in_hw: (usize, usize),
) -> BResult<()> {
    let g = bwd_input_geo(a.s(0), a.s(1), p, in_hw);
    if a.n() == 0 {
        return Ok(());
    }
    let p = a.precision()?;
    conv_bwd_input(a.be, a.scratch, g, a.x(0), a.x(1), a.y(), None, p)
}

pub(super) fn conv2d_backward_weight(
    a: &OpArgs,
    p: &Conv2dParams,
    w_shape: &[usize],
) -> BResult<()> {
    let g = ConvGeo::new(a.s(0), w_shape, p);
    let n = a.n();
    if n == 0 {
        return Ok(());
    }
    if g.n * g.oh * g.ow == 0 {
        return super::fill(a.be, a.y(), n, 0.0);
    }
    conv_bwd_weight(a.be, a.scratch, g, a.x(0), a.x(1), a.y())
}

/// The grid and K split of one conv implicit-GEMM launch.
struct ConvLaunch {
    grid: Grid,
    splits: usize,
    chunk: usize,
    /// Elements of the whole output (all groups).
    total: usize,
}

impl ConvLaunch {
    fn scratch_len(&self) -> usize {
        if self.splits > 1 {
            self.splits * self.total
        } else {
            0
        }
    }

    /// Where the kernel writes: `dest`, or the scratch for the partials when split.
    fn target(&self, scratch: DevScratch, dest: DevMut<f32>) -> BResult<DevMut<f32>> {
        if self.splits > 1 {
            scratch.take(self.scratch_len())
        } else {
            Ok(dest)
        }
    }

    /// Sums the split partials at `out` into `dest` in a fixed order (plus `bias`, if any:
    /// split partials get the bias once, here).
    fn finish(
        &self,
        be: &dyn Launcher,
        out: DevMut<f32>,
        dest: DevMut<f32>,
        bias: Option<(DevPtr<f32>, usize, usize)>,
    ) -> BResult<()> {
        if self.splits == 1 {
            return Ok(());
        }
        let (b, channels, plane) = bias.unwrap_or((DevPtr::null(), 1, 1));
        SplitkReduce {
            ws: out.input(),
            out: dest,
            total: i64of(self.total),
            splits: self.splits as i32,
            bias: b,
            channels: i64of(channels),
            plane: i64of(plane),
        }
        .launch(be, grid1(self.total))
    }

    fn splits(&self) -> i32 {
        self.splits as i32
    }

    fn chunk(&self) -> i64 {
        i64of(self.chunk)
    }
}

/// The entry point of family `K` for tile `t` (`on_tc`: its tensor-core variant).
fn kernel<K: KernelFamily>(t: (usize, usize), on_tc: bool) -> BResult<K> {
    select(
        |k: K| k.tile() == Some(t) && k.tensor_cores() == on_tc,
        || format!("a {t:?} tile (tensor cores: {on_tc})"),
    )
}

/// Forward convolution at `precision`; `tile` forces the tile shape (the benchmark's sweep).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_fwd(
    be: &dyn Launcher,
    scratch: DevScratch,
    g: ConvGeo,
    x: DevPtr<f32>,
    w: DevPtr<f32>,
    bias: Option<DevPtr<f32>>,
    y: DevMut<f32>,
    tile: Option<(usize, usize)>,
    precision: Precision,
) -> BResult<()> {
    let cfg = be.state();
    let gemm = ConvGemm::new(cfg, &g, Direction::Forward, tile);
    let l = gemm.plan(cfg);
    let out = l.target(scratch, y)?;
    let kernel_bias = if l.splits > 1 { None } else { bias };
    ConvFwd {
        x,
        w,
        bias: kernel_bias.unwrap_or_else(DevPtr::null),
        y: out,
        g,
        splits: l.splits(),
        chunk: l.chunk(),
    }
    .launch(be, kernel(gemm.t, precision == Precision::Bf16)?, l.grid)?;
    let plane = (g.oh * g.ow) as usize;
    l.finish(be, out, y, bias.map(|b| (b, g.o as usize, plane)))
}

/// Input gradient of a convolution at `precision`; `tile` forces the tile shape (the
/// benchmark's sweep).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_bwd_input(
    be: &dyn Launcher,
    scratch: DevScratch,
    g: ConvGeo,
    dy: DevPtr<f32>,
    w: DevPtr<f32>,
    dx: DevMut<f32>,
    tile: Option<(usize, usize)>,
    precision: Precision,
) -> BResult<()> {
    let cfg = be.state();
    let gemm = ConvGemm::new(cfg, &g, Direction::BackwardInput, tile);
    let l = gemm.plan(cfg);
    let out = l.target(scratch, dx)?;
    ConvBwdInput {
        dy,
        w,
        dx: out,
        g,
        splits: l.splits(),
        chunk: l.chunk(),
    }
    .launch(be, kernel(gemm.t, precision == Precision::Bf16)?, l.grid)?;
    l.finish(be, out, dx, None)
}

/// The weight gradient reduces over all N·OH·OW pixels while its output is small, so it is
/// nearly always split. fp32 at either precision.
pub(crate) fn conv_bwd_weight(
    be: &dyn Launcher,
    scratch: DevScratch,
    g: ConvGeo,
    x: DevPtr<f32>,
    dy: DevPtr<f32>,
    dw: DevMut<f32>,
) -> BResult<()> {
    let cfg = be.state();
    let gemm = ConvGemm::new(cfg, &g, Direction::BackwardWeight, None);
    let l = gemm.plan(cfg);
    let out = l.target(scratch, dw)?;
    ConvBwdWeight {
        x,
        dy,
        out,
        g,
        splits: l.splits(),
        chunk: l.chunk(),
    }
    .launch(be, kernel(gemm.t, false)?, l.grid)?;
    l.finish(be, out, dw, None)
}

/// `bf16_round` (conv_tc.cu): y = x rounded to bf16 by the kernels' own rounding helper.
pub(crate) fn bf16_round(
    be: &dyn Launcher,
    x: DevPtr<f32>,
    y: DevMut<f32>,
    n: usize,
) -> BResult<()> {
    if n == 0 {
        return Ok(());
    }
    Bf16Round { x, y, n: i64of(n) }.launch(be, grid1(n))
}

/// `mma_probe` (conv_tc.cu): one warp-wide bf16 mma on 16×16, 16×8 and 16×8 row-major
/// matrices a, b, c; result at d.
pub(crate) fn mma_probe(
    be: &dyn Launcher,
    a: DevPtr<f32>,
    b: DevPtr<f32>,
    c: DevPtr<f32>,
    d: DevMut<f32>,
) -> BResult<()> {
    let grid = Grid {
        blocks: (1, 1, 1),
        threads: 32,
    };
    MmaProbe { a, b, c, d }.launch(be, grid)
}
