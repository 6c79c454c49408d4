//! Stride-1 convolution as kh·kw shifted matrix products, with no im2col.
//!
//! The input is copied once into a zero-padded layout whose rows are `w + pw` long: `pw`
//! zeros then the `w` pixels. The right padding of a row is then the left padding of the
//! next, so for kernel tap (ki, kj) the input pixels every output needs form one
//! contiguous run of the padded plane starting at `ki·wp + kj`. Outputs are computed on a
//! "wide" grid of `oh × wp` positions (the `wp − ow` extra columns per row are discarded),
//! and each tap is a plain product `Y_wide += W_tap · Xpad[.., shift..]` that the gemm
//! crate runs at its full rate. The work is split into output tiles small enough that a
//! tile's accumulator and input panel stay in L2 across all taps, one tile per task.
//!
//! The input gradient at stride 1 is the same computation on dy with the kernel flipped
//! and its in/out axes swapped, which the strided weight view expresses without a copy.

use super::matmul::gemm_into;
use super::scratch::{scratch, Scratch};
use crate::tensor::Scalar;
use rayon::prelude::*;

/// Bytes of accumulator + input panel per tile: a quarter of a 2 MiB L2, leaving room for
/// the gemm crate's packed panels (0.25–1 MiB measured within noise; 0.5 MiB best).
const TILE_BYTES: usize = 1 << 19;

/// One image (one group) of a stride-1 convolution in the shifted formulation.
#[derive(Clone, Copy, Debug)]
pub struct Shifted {
    /// Input channels (the product's inner dimension per tap).
    pub c: usize,
    /// Output channels.
    pub m: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub ph: usize,
    pub pw: usize,
}

/// Where the weight matrix of each tap lies: element (out, in) of tap t is
/// `w[base(t) + out·rs + in·cs]`.
#[derive(Clone, Copy, Debug)]
pub struct TapWeights {
    /// Offset of tap (ki, kj) is `ki·tap_i + kj·tap_j + origin` (taps may run backwards).
    pub origin: usize,
    pub tap_i: isize,
    pub tap_j: isize,
    pub rs: usize,
    pub cs: usize,
}

impl TapWeights {
    fn offset(&self, ki: usize, kj: usize) -> usize {
        (self.origin as isize + ki as isize * self.tap_i + kj as isize * self.tap_j) as usize
    }
}

impl Shifted {
    /// The shifted layout needs every wrapped read to land in padding: `pw < kw`, and the
    /// output must be non-empty.
    pub fn applies(kh: usize, kw: usize, ph: usize, pw: usize, h: usize, w: usize) -> bool {
        ph < kh && pw < kw && h + 2 * ph >= kh && w + 2 * pw >= kw
    }
    pub fn oh(&self) -> usize {
        self.h + 2 * self.ph - self.kh + 1
    }
    pub fn ow(&self) -> usize {
        self.w + 2 * self.pw - self.kw + 1
    }
    /// Row stride of the padded input and of the wide output grid.
    fn wp(&self) -> usize {
        self.w + self.pw
    }
    /// Padded plane length: `h + 2ph` rows plus the reads of the last tap past the end.
    fn plane(&self) -> usize {
        (self.h + 2 * self.ph) * self.wp() + self.kw - 1
    }
    /// Wide output positions.
    fn n_wide(&self) -> usize {
        self.oh() * self.wp()
    }

    /// Copies `x` (c planes of h×w) into the padded layout, writing every element (the
    /// scratch buffer holds stale values).
    fn pad_input<T: Scalar>(&self, x: &[T]) -> Scratch<T> {
        let (h, w, wp, pw, ph) = (self.h, self.w, self.wp(), self.pw, self.ph);
        let plane = self.plane();
        let mut xp = scratch::<T>(self.c * plane);
        xp.par_chunks_mut(plane)
            .zip(x.par_chunks(h * w))
            .for_each(|(dst, src)| {
                let (top, rest) = dst.split_at_mut(ph * wp);
                top.fill(T::zero());
                let (body, bottom) = rest.split_at_mut(h * wp);
                for (drow, srow) in body.chunks_exact_mut(wp).zip(src.chunks_exact(w)) {
                    drow[..pw].fill(T::zero());
                    drow[pw..].copy_from_slice(srow);
                }
                bottom.fill(T::zero());
            });
        xp
    }

    /// Gathers the weights into `[out][tap][in]` order: each tap's matrix then has
    /// contiguous rows (row stride taps·in), and the gather reads each source cache line
    /// once instead of once per tap. Returns the packed weights and the row stride.
    fn pack_weights<T: Scalar>(&self, w: &[T], tw: TapWeights) -> (Scratch<T>, usize) {
        let (c, taps) = (self.c, self.kh * self.kw);
        let offs: Vec<usize> = (0..taps)
            .map(|t| tw.offset(t / self.kw, t % self.kw))
            .collect();
        let mut wt = scratch::<T>(taps * self.m * c);
        wt.par_chunks_mut(taps * c)
            .enumerate()
            .for_each(|(o, dst)| {
                for ci in 0..c {
                    let src = o * tw.rs + ci * tw.cs;
                    for (t, &off) in offs.iter().enumerate() {
                        dst[t * c + ci] = w[off + src];
                    }
                }
            });
        (wt, taps * c)
    }

    /// Output tiles as (m0, mb, n0, nb), a multiple of `threads` of them when possible.
    fn tiles(&self, threads: usize, elem: usize) -> Vec<(usize, usize, usize, usize)> {
        let n = self.n_wide();
        let mut m_tiles = 1;
        let per_col = |mb: usize| (self.c + mb) * elem;
        let mut n_tiles = (n * per_col(self.m)).div_ceil(TILE_BYTES).max(1);
        if n_tiles < threads && self.m >= 64 * threads {
            // Few output positions and many channels: split the channels instead, so each
            // task reads only its share of the weights.
            m_tiles = threads.div_ceil(n_tiles);
            n_tiles = (n * per_col(self.m.div_ceil(m_tiles)))
                .div_ceil(TILE_BYTES)
                .max(1);
        }
        if threads > 1 && !(m_tiles * n_tiles).is_multiple_of(threads) {
            let per = threads / gcd(threads, m_tiles);
            n_tiles = n_tiles.div_ceil(per) * per;
        }
        // Equal shares matter more than aligned ones: 2 tasks on 2 cores finish together.
        let nb = n.div_ceil(n_tiles);
        let mb = self.m.div_ceil(m_tiles);
        let mut out = Vec::new();
        for m0 in (0..self.m).step_by(mb) {
            for n0 in (0..n).step_by(nb) {
                out.push((m0, mb.min(self.m - m0), n0, nb.min(n - n0)));
            }
        }
        out
    }

    /// `y[m, oh, ow] = Σ_taps W_tap · shifted(x)`, plus `bias[m]` when given.
    /// `x` holds c planes of h×w; `y` is fully overwritten.
    pub fn run<T: Scalar>(
        &self,
        x: &[T],
        w: &[T],
        tw: TapWeights,
        bias: Option<&[T]>,
        y: &mut [T],
    ) {
        let (oh, ow) = (self.oh(), self.ow());
        if self.m == 0 || oh * ow == 0 {
            return;
        }
        if self.c == 0 {
            // No inputs: each output plane is its bias.
            for (o, plane) in y[..self.m * oh * ow].chunks_exact_mut(oh * ow).enumerate() {
                plane.fill(bias.map_or(T::zero(), |b| b[o]));
            }
            return;
        }
        let threads = rayon::current_num_threads();
        let xp = self.pad_input(x);
        let (wt, wrs) = self.pack_weights(w, tw);
        let (plane, wp) = (self.plane(), self.wp());
        let tiles = self.tiles(threads, std::mem::size_of::<T>());
        // Tile-major wide output, so each task owns one contiguous chunk.
        let mut starts = Vec::with_capacity(tiles.len() + 1);
        let mut acc = 0;
        for t in &tiles {
            starts.push(acc);
            acc += t.1 * t.3;
        }
        // Each tile's first product overwrites its chunk, so stale contents are harmless.
        let mut wide = scratch::<T>(acc);
        let mut chunks: Vec<&mut [T]> = Vec::with_capacity(tiles.len());
        let mut rest: &mut [T] = &mut wide;
        for t in &tiles {
            let (head, tail) = rest.split_at_mut(t.1 * t.3);
            chunks.push(head);
            rest = tail;
        }
        chunks
            .into_par_iter()
            .zip(tiles.par_iter())
            .for_each(|(ct, &(m0, mb, n0, nb))| {
                let mut first = true;
                for ki in 0..self.kh {
                    for kj in 0..self.kw {
                        let wo = m0 * wrs + (ki * self.kw + kj) * self.c;
                        let xo = ki * wp + kj + n0;
                        gemm_into(
                            mb,
                            nb,
                            self.c,
                            &wt[wo..],
                            wrs,
                            1,
                            &xp[xo..],
                            plane,
                            1,
                            ct,
                            nb,
                            1,
                            !first,
                            1,
                        );
                        first = false;
                    }
                }
            });
        // Gather the valid columns of the wide grid into y, adding the bias.
        let tiles = &tiles;
        let starts = &starts;
        let wide: &[T] = &wide;
        y[..self.m * oh * ow]
            .par_chunks_mut(oh * ow)
            .enumerate()
            .for_each(|(o, yplane)| {
                let b = bias.map_or(T::zero(), |b| b[o]);
                for (ti, &(m0, mb, n0, nb)) in tiles.iter().enumerate() {
                    if o < m0 || o >= m0 + mb {
                        continue;
                    }
                    let row = &wide[starts[ti] + (o - m0) * nb..starts[ti] + (o - m0 + 1) * nb];
                    // Walk the wide positions n0..n0+nb one output row segment at a time.
                    let mut n = n0;
                    while n < n0 + nb {
                        let (r, q) = (n / wp, n % wp);
                        let end = ((r + 1) * wp).min(n0 + nb);
                        if q < ow {
                            let take = (end - n).min(ow - q);
                            let dst = &mut yplane[r * ow + q..r * ow + q + take];
                            let src = &row[n - n0..n - n0 + take];
                            for (d, &s) in dst.iter_mut().zip(src) {
                                *d = s + b;
                            }
                        }
                        n = end;
                    }
                }
            });
    }
}

/// The weight gradient in the shifted form: for tap t, dW_t = dy_wide · Xpad_tᵀ, a
/// product over output positions. Positions are split into `chunks` ranges so every
/// (tap, range) pair is an independent task with its own partial sum.
impl Shifted {
    /// Elements of the partial-sum buffer `weight_grad_partial` fills.
    pub fn partial_len(&self, chunks: usize) -> usize {
        chunks * self.kh * self.kw * self.m * self.c
    }

    /// Adds one image's products into `partial`, laid out `[chunk][tap][m][c]`
    /// (overwriting instead when `accumulate` is false). `x` holds c planes of h×w and
    /// `dy` m planes of oh×ow.
    pub fn weight_grad_partial<T: Scalar>(
        &self,
        x: &[T],
        dy: &[T],
        partial: &mut [T],
        chunks: usize,
        accumulate: bool,
    ) {
        let (oh, ow, wp) = (self.oh(), self.ow(), self.wp());
        let (nw, plane, mc) = (self.n_wide(), self.plane(), self.m * self.c);
        if mc == 0 {
            return;
        }
        let xp = self.pad_input(x);
        // dy on the wide grid, zero in the columns the forward pass discards, so those
        // positions add nothing.
        let mut dyw = scratch::<T>(self.m * nw);
        dyw.par_chunks_mut(nw)
            .zip(dy.par_chunks(oh * ow))
            .for_each(|(dst, src)| {
                for (drow, srow) in dst.chunks_exact_mut(wp).zip(src.chunks_exact(ow)) {
                    drow[..ow].copy_from_slice(srow);
                    drow[ow..].fill(T::zero());
                }
            });
        let span = nw.div_ceil(chunks);
        let (xp, dyw): (&[T], &[T]) = (&xp, &dyw);
        partial[..self.partial_len(chunks)]
            .par_chunks_mut(mc)
            .enumerate()
            .for_each(|(task, pt)| {
                let (chunk, tap) = (task / (self.kh * self.kw), task % (self.kh * self.kw));
                let (ki, kj) = (tap / self.kw, tap % self.kw);
                let p0 = (chunk * span).min(nw);
                let len = span.min(nw - p0);
                // B[pos, ci] = xp[ci·plane + ki·wp + kj + pos]
                gemm_into(
                    self.m,
                    self.c,
                    len,
                    &dyw[p0..],
                    nw,
                    1,
                    &xp[ki * wp + kj + p0..],
                    1,
                    plane,
                    pt,
                    self.c,
                    1,
                    accumulate,
                    1,
                );
            });
    }

    /// Sums the chunks of `partial` into `dw` laid out `[m][c][kh][kw]`.
    pub fn weight_grad_reduce<T: Scalar>(&self, partial: &[T], chunks: usize, dw: &mut [T]) {
        let (taps, c, mc) = (self.kh * self.kw, self.c, self.m * self.c);
        if mc == 0 {
            return;
        }
        dw[..mc * taps]
            .par_chunks_mut(c * taps)
            .enumerate()
            .for_each(|(o, row)| {
                for ci in 0..c {
                    for t in 0..taps {
                        let mut acc = T::zero();
                        for ch in 0..chunks {
                            acc += partial[(ch * taps + t) * mc + o * c + ci];
                        }
                        row[ci * taps + t] = acc;
                    }
                }
            });
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
