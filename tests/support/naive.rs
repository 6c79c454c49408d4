//! Independent reference definitions written as plain nested loops straight from the
//! mathematical (PyTorch) definitions, sharing no code with the engine. Finite differences
//! only check that VJPs agree with forwards, so forwards are checked against these.
//! Index loops are deliberate: these are the textbook definitions.
#![allow(clippy::needless_range_loop)]

use dynface::tensor::{numel, Tensor};

/// Row-major offset of multi-index `at` (Horner form: no allocation in the inner loops).
fn idx(shape: &[usize], at: &[usize]) -> usize {
    shape.iter().zip(at).fold(0, |o, (d, a)| o * d + a)
}

/// Every multi-index of `shape` in row-major order.
fn indices(shape: &[usize]) -> Vec<Vec<usize>> {
    let mut out = Vec::with_capacity(numel(shape));
    let mut at = vec![0; shape.len()];
    for _ in 0..numel(shape) {
        out.push(at.clone());
        for k in (0..shape.len()).rev() {
            at[k] += 1;
            if at[k] < shape[k] {
                break;
            }
            at[k] = 0;
        }
    }
    out
}

/// PyTorch conv2d: out[n,o,i,j] = b[o] + Σ w[o,c,ki,kj]·x[n, g·C/G + c, i·s+ki−p, j·s+kj−p].
pub fn conv2d(
    x: &Tensor<f64>,
    w: &Tensor<f64>,
    b: Option<&Tensor<f64>>,
    stride: usize,
    pad: usize,
    groups: usize,
) -> Tensor<f64> {
    let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (o, cg, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3]);
    assert_eq!(cg * groups, c);
    let oh = (h + 2 * pad - kh) / stride + 1;
    let ow = (wd + 2 * pad - kw) / stride + 1;
    let og = o / groups;
    let mut y = Tensor::zeros(&[n, o, oh, ow]);
    for ni in 0..n {
        for oi in 0..o {
            let gi = oi / og;
            for i in 0..oh {
                for j in 0..ow {
                    let mut acc = b.map_or(0.0, |b| b.data[oi]);
                    for ci in 0..cg {
                        for ki in 0..kh {
                            for kj in 0..kw {
                                let yy = (i * stride + ki) as isize - pad as isize;
                                let xx = (j * stride + kj) as isize - pad as isize;
                                if yy < 0 || xx < 0 || yy >= h as isize || xx >= wd as isize {
                                    continue;
                                }
                                let xv = x.data
                                    [idx(&x.shape, &[ni, gi * cg + ci, yy as usize, xx as usize])];
                                acc += w.data[idx(&w.shape, &[oi, ci, ki, kj])] * xv;
                            }
                        }
                    }
                    y.data[idx(&[n, o, oh, ow], &[ni, oi, i, j])] = acc;
                }
            }
        }
    }
    y
}

/// op(a)·op(b) over the last two axes, batch axes broadcast numpy-style.
pub fn matmul(a: &Tensor<f64>, b: &Tensor<f64>, ta: bool, tb: bool) -> Tensor<f64> {
    let (ra, rb) = (a.shape.len(), b.shape.len());
    let (m, k) = if ta {
        (a.shape[ra - 1], a.shape[ra - 2])
    } else {
        (a.shape[ra - 2], a.shape[ra - 1])
    };
    let nn = if tb { b.shape[rb - 2] } else { b.shape[rb - 1] };
    let (ba, bb) = (&a.shape[..ra - 2], &b.shape[..rb - 2]);
    let r = ba.len().max(bb.len());
    let pad = |s: &[usize]| [vec![1; r - s.len()], s.to_vec()].concat();
    let (pa, pb) = (pad(ba), pad(bb));
    let batch: Vec<usize> = pa.iter().zip(&pb).map(|(x, y)| *x.max(y)).collect();
    let mut out_shape = batch.clone();
    out_shape.extend([m, nn]);
    let mut y = Tensor::zeros(&out_shape);
    for bi in indices(&batch) {
        let ia: Vec<usize> = bi.iter().zip(&pa).map(|(i, d)| i % d).collect();
        let ib: Vec<usize> = bi.iter().zip(&pb).map(|(i, d)| i % d).collect();
        for i in 0..m {
            for j in 0..nn {
                let mut acc = 0.0;
                for kk in 0..k {
                    let (ar, ac) = if ta { (kk, i) } else { (i, kk) };
                    let (br, bc) = if tb { (j, kk) } else { (kk, j) };
                    let mut at_a = ia[r - ba.len()..].to_vec();
                    at_a.extend([ar, ac]);
                    let mut at_b = ib[r - bb.len()..].to_vec();
                    at_b.extend([br, bc]);
                    acc += a.data[idx(&a.shape, &at_a)] * b.data[idx(&b.shape, &at_b)];
                }
                let mut at = bi.clone();
                at.extend([i, j]);
                y.data[idx(&out_shape, &at)] = acc;
            }
        }
    }
    y
}

/// PyTorch GroupNorm: statistics over (channels of the group × spatial), biased variance.
pub fn group_norm(
    x: &Tensor<f64>,
    gamma: &Tensor<f64>,
    beta: &Tensor<f64>,
    groups: usize,
    eps: f64,
) -> Tensor<f64> {
    let (n, c) = (x.shape[0], x.shape[1]);
    let sp: usize = x.shape[2..].iter().product();
    let cg = c / groups;
    let mut y = x.clone();
    for ni in 0..n {
        for gi in 0..groups {
            let vals: Vec<f64> = (gi * cg..(gi + 1) * cg)
                .flat_map(|ci| (0..sp).map(move |s| (ni * c + ci) * sp + s))
                .map(|k| x.data[k])
                .collect();
            let mean = vals.iter().sum::<f64>() / vals.len() as f64;
            let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
            for ci in gi * cg..(gi + 1) * cg {
                for s in 0..sp {
                    let k = (ni * c + ci) * sp + s;
                    y.data[k] =
                        (x.data[k] - mean) / (var + eps).sqrt() * gamma.data[ci] + beta.data[ci];
                }
            }
        }
    }
    y
}

/// ADM's `out_layers` with use_scale_shift_norm: SiLU(GroupNorm(x)·(1 + scale) + shift),
/// scale and shift `[N, C]` per image and channel (absent: plain SiLU(GroupNorm(x))).
pub fn group_norm_silu(
    x: &Tensor<f64>,
    gamma: &Tensor<f64>,
    beta: &Tensor<f64>,
    film: Option<(&Tensor<f64>, &Tensor<f64>)>,
    groups: usize,
    eps: f64,
) -> Tensor<f64> {
    let h = group_norm(x, gamma, beta, groups, eps);
    let (n, c) = (x.shape[0], x.shape[1]);
    let sp: usize = x.shape[2..].iter().product();
    let mut y = h.clone();
    for ni in 0..n {
        for ci in 0..c {
            let (a, b) = match film {
                Some((scale, shift)) => (1.0 + scale.data[ni * c + ci], shift.data[ni * c + ci]),
                None => (1.0, 0.0),
            };
            for s in 0..sp {
                let k = (ni * c + ci) * sp + s;
                let v = h.data[k] * a + b;
                y.data[k] = v / (1.0 + (-v).exp());
            }
        }
    }
    y
}

/// PyTorch LayerNorm over the last axis.
pub fn layer_norm(
    x: &Tensor<f64>,
    gamma: &Tensor<f64>,
    beta: &Tensor<f64>,
    eps: f64,
) -> Tensor<f64> {
    let d = *x.shape.last().unwrap();
    let mut y = x.clone();
    for row in 0..x.numel() / d {
        let r = &x.data[row * d..(row + 1) * d];
        let mean = r.iter().sum::<f64>() / d as f64;
        let var = r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
        for k in 0..d {
            y.data[row * d + k] = (r[k] - mean) / (var + eps).sqrt() * gamma.data[k] + beta.data[k];
        }
    }
    y
}

/// Exact GELU, x·Φ(x) = x/2·(1 + erf(x/√2)).
pub fn gelu(x: &Tensor<f64>) -> Tensor<f64> {
    let data = x
        .data
        .iter()
        .map(|&v| 0.5 * v * (1.0 + libm::erf(v / std::f64::consts::SQRT_2)))
        .collect();
    Tensor::new(x.shape.clone(), data)
}

/// Softmax over the last axis.
pub fn softmax(x: &Tensor<f64>) -> Tensor<f64> {
    let d = *x.shape.last().unwrap();
    let mut y = x.clone();
    for row in 0..x.numel() / d {
        let r = &x.data[row * d..(row + 1) * d];
        let m = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = r.iter().map(|v| (v - m).exp()).sum();
        for k in 0..d {
            y.data[row * d + k] = (r[k] - m).exp() / s;
        }
    }
    y
}

/// softmax(q·kᵀ·scale + bias)·v; bias broadcast to the logits.
pub fn attention(
    q: &Tensor<f64>,
    k: &Tensor<f64>,
    v: &Tensor<f64>,
    scale: f64,
    bias: Option<&Tensor<f64>>,
) -> Tensor<f64> {
    let mut logits = matmul(q, k, false, true);
    let ls = logits.shape.clone();
    for at in indices(&ls) {
        let i = idx(&ls, &at);
        logits.data[i] *= scale;
        if let Some(b) = bias {
            let off = ls.len() - b.shape.len();
            let bi: Vec<usize> = b
                .shape
                .iter()
                .enumerate()
                .map(|(j, &d)| if d == 1 { 0 } else { at[off + j] })
                .collect();
            logits.data[i] += b.data[idx(&b.shape, &bi)];
        }
    }
    matmul(&softmax(&logits), v, false, false)
}

/// torch.nn.PixelShuffle: out[n,c,h·r+i,w·r+j] = in[n,c·r²+i·r+j,h,w].
pub fn pixel_shuffle(x: &Tensor<f64>, r: usize) -> Tensor<f64> {
    let (n, cr, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let c = cr / (r * r);
    let os = [n, c, h * r, w * r];
    let mut y = Tensor::zeros(&os);
    for ni in 0..n {
        for ci in 0..c {
            for hi in 0..h {
                for wi in 0..w {
                    for i in 0..r {
                        for j in 0..r {
                            y.data[idx(&os, &[ni, ci, hi * r + i, wi * r + j])] =
                                x.data[idx(&x.shape, &[ni, ci * r * r + i * r + j, hi, wi])];
                        }
                    }
                }
            }
        }
    }
    y
}

/// torch.nn.PixelUnshuffle, the inverse: out[n,c·r²+i·r+j,h,w] = in[n,c,h·r+i,w·r+j].
pub fn pixel_unshuffle(x: &Tensor<f64>, r: usize) -> Tensor<f64> {
    let (n, c, hr, wr) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let os = [n, c * r * r, hr / r, wr / r];
    let mut y = Tensor::zeros(&os);
    for at in indices(&os) {
        let (ni, cc, hi, wi) = (at[0], at[1], at[2], at[3]);
        let (ci, i, j) = (cc / (r * r), (cc % (r * r)) / r, cc % r);
        y.data[idx(&os, &at)] = x.data[idx(&x.shape, &[ni, ci, hi * r + i, wi * r + j])];
    }
    y
}

/// torch.roll: the element at index i moves to (i + shift) mod n, shifts of one axis add.
pub fn roll(x: &Tensor<f64>, shifts: &[(usize, isize)]) -> Tensor<f64> {
    let mut y = x.clone();
    for at in indices(&x.shape) {
        let mut to = at.clone();
        for &(a, s) in shifts {
            let n = x.shape[a] as isize;
            to[a] = ((to[a] as isize + s).rem_euclid(n)) as usize;
        }
        y.data[idx(&x.shape, &to)] = x.data[idx(&x.shape, &at)];
    }
    y
}

/// Nearest ×2: out[n,c,i,j] = in[n,c,⌊i/2⌋,⌊j/2⌋].
pub fn upsample2x(x: &Tensor<f64>) -> Tensor<f64> {
    let os = [x.shape[0], x.shape[1], 2 * x.shape[2], 2 * x.shape[3]];
    let mut y = Tensor::zeros(&os);
    for at in indices(&os) {
        y.data[idx(&os, &at)] = x.data[idx(&x.shape, &[at[0], at[1], at[2] / 2, at[3] / 2])];
    }
    y
}

/// 2×2 average pooling, stride 2.
pub fn avg_pool2x(x: &Tensor<f64>) -> Tensor<f64> {
    let os = [x.shape[0], x.shape[1], x.shape[2] / 2, x.shape[3] / 2];
    let mut y = Tensor::zeros(&os);
    for at in indices(&os) {
        let mut s = 0.0;
        for (di, dj) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            s += x.data[idx(&x.shape, &[at[0], at[1], 2 * at[2] + di, 2 * at[3] + dj])];
        }
        y.data[idx(&os, &at)] = s / 4.0;
    }
    y
}

/// Guided-diffusion timestep embedding: [cos(t·f), sin(t·f)], f_i = exp(−ln(10000)·i/half).
pub fn timestep_embedding(t: &Tensor<f64>, dim: usize) -> Tensor<f64> {
    let half = dim / 2;
    let mut y = Tensor::zeros(&[t.shape[0], dim]);
    for b in 0..t.shape[0] {
        for i in 0..half {
            let f = (-(10000f64).ln() * i as f64 / half as f64).exp();
            y.data[b * dim + i] = (t.data[b] * f).cos();
            y.data[b * dim + half + i] = (t.data[b] * f).sin();
        }
    }
    y
}

/// Swin window partition: [B,H,W,C] → [B·(H/w)·(W/w), w·w, C], windows row-major.
pub fn window_partition(x: &Tensor<f64>, w: usize) -> Tensor<f64> {
    let (b, h, wd, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (nh, nw) = (h / w, wd / w);
    let os = [b * nh * nw, w * w, c];
    let mut y = Tensor::zeros(&os);
    for bi in 0..b {
        for hi in 0..nh {
            for wi in 0..nw {
                for r in 0..w {
                    for q in 0..w {
                        for ch in 0..c {
                            y.data[idx(&os, &[(bi * nh + hi) * nw + wi, r * w + q, ch])] =
                                x.data[idx(&x.shape, &[bi, hi * w + r, wi * w + q, ch])];
                        }
                    }
                }
            }
        }
    }
    y
}

/// Axis permutation: out axis i is input axis perm[i].
pub fn permute(x: &Tensor<f64>, perm: &[usize]) -> Tensor<f64> {
    let os: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let mut y = Tensor::zeros(&os);
    for at in indices(&os) {
        let mut src = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            src[p] = at[i];
        }
        y.data[idx(&os, &at)] = x.data[idx(&x.shape, &src)];
    }
    y
}

/// Sum (or mean) over `axes`, keeping them as size 1 when `keep`.
pub fn reduce(x: &Tensor<f64>, axes: &[usize], keep: bool, mean: bool) -> Tensor<f64> {
    let kept: Vec<usize> = x
        .shape
        .iter()
        .enumerate()
        .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
        .collect();
    let mut y = Tensor::zeros(&kept);
    for at in indices(&x.shape) {
        let to: Vec<usize> = at
            .iter()
            .enumerate()
            .map(|(i, &a)| if axes.contains(&i) { 0 } else { a })
            .collect();
        y.data[idx(&kept, &to)] += x.data[idx(&x.shape, &at)];
    }
    if mean {
        let count: usize = axes.iter().map(|&a| x.shape[a]).product();
        y.data.iter_mut().for_each(|v| *v /= count as f64);
    }
    if !keep {
        let s: Vec<usize> = x
            .shape
            .iter()
            .enumerate()
            .filter(|(i, _)| !axes.contains(i))
            .map(|(_, &d)| d)
            .collect();
        y = y.reshape(&s);
    }
    y
}

/// Concatenation along `axis`.
pub fn concat(xs: &[&Tensor<f64>], axis: usize) -> Tensor<f64> {
    let mut os = xs[0].shape.clone();
    os[axis] = xs.iter().map(|x| x.shape[axis]).sum();
    let mut y = Tensor::zeros(&os);
    let mut start = 0;
    for x in xs {
        for at in indices(&x.shape) {
            let mut to = at.clone();
            to[axis] += start;
            y.data[idx(&os, &to)] = x.data[idx(&x.shape, &at)];
        }
        start += x.shape[axis];
    }
    y
}

/// Numpy-broadcast element-wise op.
pub fn broadcast_op(a: &Tensor<f64>, b: &Tensor<f64>, f: impl Fn(f64, f64) -> f64) -> Tensor<f64> {
    let r = a.shape.len().max(b.shape.len());
    let pad = |s: &[usize]| [vec![1; r - s.len()], s.to_vec()].concat();
    let (pa, pb) = (pad(&a.shape), pad(&b.shape));
    let os: Vec<usize> = pa.iter().zip(&pb).map(|(x, y)| *x.max(y)).collect();
    let mut y = Tensor::zeros(&os);
    for at in indices(&os) {
        let ia: Vec<usize> = at.iter().zip(&pa).map(|(i, d)| i % d).collect();
        let ib: Vec<usize> = at.iter().zip(&pb).map(|(i, d)| i % d).collect();
        y.data[idx(&os, &at)] = f(a.data[idx(&pa, &ia)], b.data[idx(&pb, &ib)]);
    }
    y
}
