//! Data movement: concat, slice, pad, permute, roll, pixel (un)shuffle. Every op is split
//! into row copies that rayon spreads over the threads (each row a contiguous run of the
//! output), so memory bandwidth, not one core, bounds them; permutes that move the
//! innermost axis go through cache-sized tiles instead of strided gathers.

use super::elementwise::PAR_MIN;
use crate::tensor::{numel, strides, Scalar};
use rayon::prelude::*;

/// Elements per parallel task of a plain copy (below this, a task is not worth its cost).
const CHUNK: usize = 1 << 14;

/// Side of the square tiles of a transpose: 32×32 f32 tiles of source and destination
/// (4 KiB each) stay in L1 while they are read and written.
const TILE: usize = 32;

/// `dst.copy_from_slice(src)` on all threads for large copies.
fn par_copy<T: Scalar>(dst: &mut [T], src: &[T]) {
    if dst.len() >= PAR_MIN {
        dst.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(d, s)| d.copy_from_slice(s));
    } else {
        dst.copy_from_slice(src);
    }
}

/// Fills output rows `y.chunks_mut(row)` with `f(row index, row)`, in parallel when large.
/// Long rows are cut into `CHUNK`-sized pieces so one row never holds a thread alone:
/// `f` gets the piece's start within its row.
fn par_rows<T: Scalar>(y: &mut [T], row: usize, f: impl Fn(usize, usize, &mut [T]) + Sync) {
    if row == 0 {
        return;
    }
    let piece = row.min(CHUNK);
    let per_row = row.div_ceil(piece);
    let run = |(i, out): (usize, &mut [T])| f(i / per_row, (i % per_row) * piece, out);
    if y.len() >= PAR_MIN {
        // Pieces of a row are `piece` long except the row's last.
        y.par_chunks_mut(row)
            .with_min_len((4096 / row).max(1))
            .enumerate()
            .flat_map_iter(|(r, out)| {
                out.chunks_mut(piece)
                    .enumerate()
                    .map(move |(k, o)| (r * per_row + k, o))
            })
            .for_each(run);
    } else {
        y.chunks_mut(row)
            .enumerate()
            .flat_map(|(r, out)| {
                out.chunks_mut(piece)
                    .enumerate()
                    .map(move |(k, o)| (r * per_row + k, o))
            })
            .for_each(run);
    }
}

pub fn concat<T: Scalar>(xs: &[&[T]], s: &[&[usize]], axis: usize, y: &mut [T], ys: &[usize]) {
    let outer: usize = ys[..axis].iter().product();
    let inner: usize = ys[axis + 1..].iter().product();
    let row = ys[axis] * inner;
    if outer == 1 {
        // One contiguous block per input (the UNet's skip concatenation at batch 1).
        let mut at = 0;
        for (x, sx) in xs.iter().zip(s) {
            let len = sx[axis] * inner;
            par_copy(&mut y[at..at + len], &x[..len]);
            at += len;
        }
        return;
    }
    // Where each output position of a row comes from: (input, start in that input's row).
    let mut starts = Vec::with_capacity(xs.len());
    let mut at = 0;
    for sx in s {
        starts.push(at);
        at += sx[axis] * inner;
    }
    par_rows(y, row, |o, off, out| {
        let mut j = 0;
        while j < out.len() {
            let p = off + j;
            let i = starts.partition_point(|&st| st <= p) - 1;
            let len = s[i][axis] * inner;
            let within = p - starts[i];
            let n = (len - within).min(out.len() - j);
            out[j..j + n].copy_from_slice(&xs[i][o * len + within..o * len + within + n]);
            j += n;
        }
    });
}

pub fn slice<T: Scalar>(
    x: &[T],
    sx: &[usize],
    axis: usize,
    start: usize,
    y: &mut [T],
    ys: &[usize],
) {
    let inner: usize = sx[axis + 1..].iter().product();
    let (full, len) = (sx[axis] * inner, ys[axis] * inner);
    par_rows(y, len, |o, off, out| {
        let at = o * full + start * inner + off;
        out.copy_from_slice(&x[at..at + out.len()]);
    });
}

pub fn pad<T: Scalar>(x: &[T], sx: &[usize], axis: usize, start: usize, y: &mut [T], ys: &[usize]) {
    let inner: usize = sx[axis + 1..].iter().product();
    let (len, full) = (sx[axis] * inner, ys[axis] * inner);
    let lo = start * inner;
    par_rows(y, full, |o, off, out| {
        // This piece covers row positions off..off+out.len(); the input sits at lo..lo+len.
        let (a, b) = (off, off + out.len());
        let (s, e) = (lo.clamp(a, b), (lo + len).clamp(a, b));
        out[..s - a].fill(T::zero());
        out[e - a..].fill(T::zero());
        if s < e {
            let src = o * len + (s - lo);
            out[s - a..e - a].copy_from_slice(&x[src..src + (e - s)]);
        }
    });
}

/// Drops unit axes and merges axes that stay adjacent and in order under `perm`, so each
/// permute runs on the fewest, longest axes: returns (source shape, perm) of the same copy.
fn simplify(sx: &[usize], perm: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let keep: Vec<usize> = perm.iter().copied().filter(|&p| sx[p] != 1).collect();
    // Runs of consecutive source axes in output order become one axis.
    let mut runs: Vec<Vec<usize>> = vec![];
    for &p in &keep {
        match runs.last_mut() {
            Some(r) if *r.last().unwrap() + 1 == p => r.push(p),
            _ => runs.push(vec![p]),
        }
    }
    // Source order of the runs gives the merged source shape.
    let mut by_src: Vec<usize> = (0..runs.len()).collect();
    by_src.sort_by_key(|&i| runs[i][0]);
    let shape: Vec<usize> = by_src
        .iter()
        .map(|&i| runs[i].iter().map(|&a| sx[a]).product())
        .collect();
    let mut new_perm = vec![0; runs.len()];
    for (pos, &i) in by_src.iter().enumerate() {
        new_perm[i] = pos;
    }
    (shape, new_perm)
}

/// y = x with axes reordered so that y's axis i is x's axis perm[i].
pub fn permute<T: Scalar>(x: &[T], sx: &[usize], perm: &[usize], y: &mut [T]) {
    let (sx, perm) = simplify(sx, perm);
    let r = sx.len();
    if r <= 1 || numel(&sx) == 0 {
        // The identity once unit axes are gone.
        par_copy(y, &x[..y.len()]);
        return;
    }
    if perm[r - 1] != r - 1 {
        return permute_tiled(x, &sx, &perm, y);
    }
    // The innermost axis stays innermost: contiguous row copies.
    let ys: Vec<usize> = perm.iter().map(|&p| sx[p]).collect();
    let st = strides(&sx);
    let src_st: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
    let inner = ys[r - 1];
    par_rows(y, inner, |row, off, out| {
        let mut rem = row;
        let mut at = off;
        for i in (0..r - 1).rev() {
            at += (rem % ys[i]) * src_st[i];
            rem /= ys[i];
        }
        out.copy_from_slice(&x[at..at + out.len()]);
    });
}

/// A permute that moves the source's innermost axis: for every index of the other axes,
/// the [a, b] plane of (output's last axis b, source's last axis a) is transposed tile by
/// tile, so reads and writes both run along cache lines.
fn permute_tiled<T: Scalar>(x: &[T], sx: &[usize], perm: &[usize], y: &mut [T]) {
    let r = sx.len();
    let ys: Vec<usize> = perm.iter().map(|&p| sx[p]).collect();
    let st = strides(sx);
    let yst = strides(&ys);
    // Output axis holding the source's innermost axis, and the source axis of the output's.
    let oa = perm
        .iter()
        .position(|&p| p == r - 1)
        .expect("a permutation");
    let sb = perm[r - 1];
    let (na, nb) = (ys[oa], ys[r - 1]);
    let (xa, xb) = (1usize, st[sb]); // source strides along a and b
    let ya = yst[oa]; // output stride along a (along b it is 1)
                      // The remaining output axes index the planes.
    let others: Vec<usize> = (0..r - 1).filter(|&i| i != oa).collect();
    let planes: usize = others.iter().map(|&i| ys[i]).product();
    let plane_base = |pi: usize| {
        let (mut rem, mut xo, mut yo) = (pi, 0, 0);
        for &i in others.iter().rev() {
            let k = rem % ys[i];
            rem /= ys[i];
            xo += k * st[perm[i]];
            yo += k * yst[i];
        }
        (xo, yo)
    };
    let ptr = SendPtr(y.as_mut_ptr());
    let tiles_a = na.div_ceil(TILE);
    let tiles_b = nb.div_ceil(TILE);
    let task = |t: usize| {
        let (pi, ta) = (t / tiles_a, t % tiles_a);
        let (xo, yo) = plane_base(pi);
        let ptr = &ptr;
        for tb in 0..tiles_b {
            for a in ta * TILE..((ta + 1) * TILE).min(na) {
                let b0 = tb * TILE;
                let b1 = (b0 + TILE).min(nb);
                for b in b0..b1 {
                    // SAFETY: (plane, a, b) ↦ yo + a·ya + b is one-to-one into y (it is the
                    // output's own row-major offset), and each (plane, a) row belongs to one
                    // task, so no two tasks write the same element.
                    unsafe { *ptr.0.add(yo + a * ya + b) = x[xo + a * xa + b * xb] };
                }
            }
        }
    };
    let tasks = planes * tiles_a;
    if y.len() >= PAR_MIN {
        (0..tasks).into_par_iter().for_each(task);
    } else {
        (0..tasks).for_each(task);
    }
}

struct SendPtr<T>(*mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

/// torch.roll: y[i] = x[(i − shift) mod n] along each listed axis.
pub fn roll<T: Scalar>(x: &[T], sx: &[usize], shifts: &[(usize, isize)], y: &mut [T]) {
    let r = sx.len();
    if r == 0 {
        y.copy_from_slice(x);
        return;
    }
    let st = strides(sx);
    let shift_of = |a: usize| {
        let n = sx[a] as isize;
        let sh: isize = shifts.iter().filter(|s| s.0 == a).map(|s| s.1).sum();
        if n == 0 {
            0
        } else {
            (sh % n + n) as usize % n as usize
        }
    };
    // Source index along each outer axis for every destination index.
    let maps: Vec<Vec<usize>> = (0..r - 1)
        .map(|a| {
            let (n, sh) = (sx[a], shift_of(a));
            (0..n).map(|i| (i + n - sh) % n).collect()
        })
        .collect();
    let inner = sx[r - 1];
    let sh = shift_of(r - 1);
    par_rows(y, inner, |row, off, out| {
        let mut rem = row;
        let mut base = 0;
        for a in (0..r - 1).rev() {
            base += maps[a][rem % sx[a]] * st[a];
            rem /= sx[a];
        }
        // Along the last axis the roll is two contiguous runs: positions below `sh` read
        // from the end of the source row, the rest from its start.
        let split = sh.clamp(off, off + out.len()) - off;
        if split > 0 {
            let head = base + off + inner - sh;
            out[..split].copy_from_slice(&x[head..head + split]);
        }
        if split < out.len() {
            let (tail, n) = (base + off + split - sh, out.len() - split);
            out[split..].copy_from_slice(&x[tail..tail + n]);
        }
    });
}

/// [N, C·r², H, W] → [N, C, H·r, W·r]
pub fn pixel_shuffle<T: Scalar>(x: &[T], sx: &[usize], r: usize, y: &mut [T]) {
    let (n, c, h, w) = (sx[0], sx[1] / (r * r), sx[2], sx[3]);
    permute(x, &[n, c, r, r, h, w], &[0, 1, 4, 2, 5, 3], y);
}

/// [N, C, H·r, W·r] → [N, C·r², H, W]
pub fn pixel_unshuffle<T: Scalar>(x: &[T], sx: &[usize], r: usize, y: &mut [T]) {
    let (n, c, h, w) = (sx[0], sx[1], sx[2] / r, sx[3] / r);
    permute(x, &[n, c, h, r, w, r], &[0, 1, 3, 5, 2, 4], y);
}

#[cfg(test)]
mod tests {
    //! The row-piece and tiled paths against index-by-index definitions, on shapes large
    //! enough that rows are cut into pieces and the work is spread over the threads.
    use super::*;
    use crate::tensor::random;

    fn data(n: usize, seed: u64) -> Vec<f32> {
        random::normal::<f32>(&mut random::rng(seed), &[n], 1.0).data
    }

    /// Multi-index of flat offset `i` in `shape`.
    fn index(mut i: usize, shape: &[usize]) -> Vec<usize> {
        let mut ix = vec![0; shape.len()];
        for a in (0..shape.len()).rev() {
            ix[a] = i % shape[a];
            i /= shape[a];
        }
        ix
    }

    fn offset(ix: &[usize], shape: &[usize]) -> usize {
        ix.iter().zip(strides(shape)).map(|(i, s)| i * s).sum()
    }

    #[test]
    fn concat_slice_pad_match_their_definitions() {
        // Rows of 3·40000 elements: longer than a piece, and the middle input straddles pieces.
        let (sa, sb) = ([2, 1, 40000], [2, 2, 40000]);
        let (a, b) = (data(80000, 1), data(160000, 2));
        let ys = [2, 3, 40000];
        let mut y = vec![0.0; 240000];
        concat(&[&a, &b], &[&sa, &sb], 1, &mut y, &ys);
        for (i, &v) in y.iter().enumerate() {
            let ix = index(i, &ys);
            let want = if ix[1] < 1 {
                a[offset(&ix, &sa)]
            } else {
                b[offset(&[ix[0], ix[1] - 1, ix[2]], &sb)]
            };
            assert_eq!(v, want, "concat at {ix:?}");
        }
        // Batch 1 takes the one-block-per-input path.
        let mut y1 = vec![0.0; 120000];
        concat(
            &[&a[..40000], &b[..80000]],
            &[&[1, 1, 40000], &[1, 2, 40000]],
            1,
            &mut y1,
            &[1, 3, 40000],
        );
        assert_eq!(&y1[..40000], &a[..40000]);
        assert_eq!(&y1[40000..], &b[..80000]);
        let mut s = vec![0.0; 2 * 40000];
        slice(&y, &ys, 1, 1, &mut s, &[2, 1, 40000]);
        assert_eq!(&s[..40000], &b[..40000]);
        assert_eq!(&s[40000..], &b[80000..120000]);
        let mut p = vec![f32::NAN; 240000];
        pad(&b, &sb, 1, 1, &mut p, &ys);
        for (i, &v) in p.iter().enumerate() {
            let ix = index(i, &ys);
            let want = if ix[1] == 0 {
                0.0
            } else {
                b[offset(&[ix[0], ix[1] - 1, ix[2]], &sb)]
            };
            assert_eq!(v, want, "pad at {ix:?}");
        }
    }

    #[test]
    fn permutes_match_their_definition() {
        let cases: [(&[usize], &[usize]); 5] = [
            (&[3, 4097, 180], &[0, 2, 1]), // tokens ↔ channels, odd tile edge
            (&[2, 70, 3, 6, 30], &[2, 0, 3, 1, 4]), // SwinIR's qkv split
            (&[1, 5, 8, 8, 8, 9], &[0, 1, 3, 2, 4, 5]),
            (&[4, 1, 300, 41], &[3, 1, 2, 0]), // a unit axis and the innermost moved
            (&[2, 3, 50, 4, 60], &[1, 4, 0, 3, 2]),
        ];
        for (sx, perm) in cases {
            let n = numel(sx);
            let x = data(n, 3);
            let ys: Vec<usize> = perm.iter().map(|&p| sx[p]).collect();
            let mut y = vec![f32::NAN; n];
            permute(&x, sx, perm, &mut y);
            for (i, &v) in y.iter().enumerate() {
                let iy = index(i, &ys);
                let mut ix = vec![0; sx.len()];
                for (k, &p) in perm.iter().enumerate() {
                    ix[p] = iy[k];
                }
                assert_eq!(v, x[offset(&ix, sx)], "{sx:?} {perm:?} at {iy:?}");
            }
        }
    }

    #[test]
    fn roll_matches_its_definition() {
        let sx = [2, 3, 50000];
        let x = data(numel(&sx), 4);
        for shifts in [
            vec![(2, 17)],
            vec![(1, -1), (2, -40001)],
            vec![(0, 1), (1, 2)],
        ] {
            let mut y = vec![f32::NAN; x.len()];
            roll(&x, &sx, &shifts, &mut y);
            for (i, &v) in y.iter().enumerate() {
                let iy = index(i, &sx);
                let ix: Vec<usize> = (0..3)
                    .map(|a| {
                        let n = sx[a] as isize;
                        let sh: isize = shifts.iter().filter(|s| s.0 == a).map(|s| s.1).sum();
                        (((iy[a] as isize - sh) % n + n) % n) as usize
                    })
                    .collect();
                assert_eq!(v, x[offset(&ix, &sx)], "{shifts:?} at {iy:?}");
            }
        }
    }
}
