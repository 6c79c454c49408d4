//! Area resampling (PyTorch's `interpolate(mode="area")`, i.e. adaptive average pooling)
//! of a window of a planar RGB image: output sample i averages input samples
//! `floor(i·n/m) .. ceil((i+1)·n/m)`. Separable, so rows then columns.

/// Planar `[3, h, w]` samples of a window `(x0, y0, x1, y1)` (half-open) of `src`
/// (`[3, src_h, src_w]`) resized to `oh`×`ow`.
pub fn area_resize(
    src: &[f32],
    src_w: usize,
    src_h: usize,
    window: (usize, usize, usize, usize),
    ow: usize,
    oh: usize,
) -> Vec<f32> {
    let (x0, y0, x1, y1) = window;
    assert!(x1 > x0 && y1 > y0 && x1 <= src_w && y1 <= src_h && src.len() == 3 * src_w * src_h);
    let (iw, ih) = (x1 - x0, y1 - y0);
    let spans = |n: usize, m: usize| -> Vec<(usize, usize)> {
        (0..m)
            .map(|i| ((i * n) / m, ((i + 1) * n).div_ceil(m)))
            .collect()
    };
    let (cols, rows) = (spans(iw, ow), spans(ih, oh));
    let mut out = vec![0.0f32; 3 * ow * oh];
    let mut rowbuf = vec![0.0f32; iw];
    for c in 0..3 {
        let plane = &src[c * src_w * src_h..(c + 1) * src_w * src_h];
        for (oy, &(r0, r1)) in rows.iter().enumerate() {
            rowbuf.iter_mut().for_each(|v| *v = 0.0);
            for r in r0..r1 {
                let line = &plane[(y0 + r) * src_w + x0..(y0 + r) * src_w + x1];
                for (acc, &v) in rowbuf.iter_mut().zip(line) {
                    *acc += v;
                }
            }
            let inv_r = 1.0 / (r1 - r0) as f32;
            let dst = &mut out[c * ow * oh + oy * ow..c * ow * oh + (oy + 1) * ow];
            for (d, &(c0, c1)) in dst.iter_mut().zip(&cols) {
                let s: f32 = rowbuf[c0..c1].iter().sum();
                *d = s * inv_r / (c1 - c0) as f32;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the definition (mean over each output's input rectangle), on random data
    /// for shrinking, stretching and uneven ratios.
    #[test]
    fn matches_the_rectangle_mean() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let (w, h) = (13, 9);
        let src: Vec<f32> = (0..3 * w * h).map(|_| rng.gen_range(0.0..255.0)).collect();
        for (win, ow, oh) in [
            ((0, 0, 13, 9), 5, 4),
            ((2, 1, 11, 8), 12, 12),
            ((3, 3, 4, 5), 3, 2),
        ] {
            let got = area_resize(&src, w, h, win, ow, oh);
            let (iw, ih) = (win.2 - win.0, win.3 - win.1);
            for c in 0..3 {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let (r0, r1) = (oy * ih / oh, ((oy + 1) * ih).div_ceil(oh));
                        let (c0, c1) = (ox * iw / ow, ((ox + 1) * iw).div_ceil(ow));
                        let mut s = 0.0f64;
                        for r in r0..r1 {
                            for q in c0..c1 {
                                s += src[c * w * h + (win.1 + r) * w + win.0 + q] as f64;
                            }
                        }
                        let want = s / ((r1 - r0) * (c1 - c0)) as f64;
                        let g = got[c * ow * oh + oy * ow + ox] as f64;
                        // f32 sums of ≤ 13 samples below 255: measured error < 1e-4.
                        assert!(
                            (g - want).abs() < 1e-3,
                            "{win:?} {c} {oy} {ox}: {g} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
