//! Paste-back of a restored aligned face into its photo, as facexlib's
//! `paste_faces_to_input_image` does without a face-parsing net: the face is warped back
//! with the inverse transform; an all-ones crop warped the same way and eroded by 2 px
//! drops the border pixels; its feathered copy (eroded by 2w, Gaussian-blurred with a
//! (2w+1)² kernel, w = ⌊√area⌋ / 20) blends `m·face + (1 − m)·photo`.
//!
//! Everything is computed in the face's bounding rectangle plus a margin wider than
//! any kernel, so the result equals a whole-photo computation while the cost follows the
//! face's size; pixels where the mask is exactly 0 are never written, so the rest of the
//! photo stays bit-identical.

use super::align::{Affine, Planes};

/// The feathered mask of one pasted face, over `width`×`height` pixels at `(x0, y0)`.
#[derive(Clone, Debug)]
pub struct SoftMask {
    pub x0: usize,
    pub y0: usize,
    pub width: usize,
    pub height: usize,
    /// In [0, 1].
    pub values: Vec<f32>,
}

impl SoftMask {
    /// The mask at photo pixel (x, y) (0 outside the rectangle).
    pub fn at(&self, x: usize, y: usize) -> f32 {
        if x < self.x0 || y < self.y0 || x >= self.x0 + self.width || y >= self.y0 + self.height {
            return 0.0;
        }
        self.values[(y - self.y0) * self.width + (x - self.x0)]
    }
}

/// Minimum over a `k`×`k` window anchored at (k/2, k/2) (OpenCV's `erode` with a box
/// kernel); samples outside the rectangle do not erode (OpenCV's default border).
fn erode(v: &[f32], w: usize, h: usize, k: usize) -> Vec<f32> {
    if k <= 1 {
        return v.to_vec();
    }
    let a = k / 2;
    let window = |i: usize, n: usize| (i.saturating_sub(a), (i + k - a).min(n));
    let mut rows = vec![0.0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            let (lo, hi) = window(x, w);
            rows[y * w + x] = v[y * w + lo..y * w + hi]
                .iter()
                .copied()
                .fold(f32::INFINITY, f32::min);
        }
    }
    let mut out = vec![0.0f32; w * h];
    for y in 0..h {
        let (lo, hi) = window(y, h);
        for x in 0..w {
            out[y * w + x] = (lo..hi)
                .map(|r| rows[r * w + x])
                .fold(f32::INFINITY, f32::min);
        }
    }
    out
}

/// OpenCV's `getGaussianKernel(k, 0)`: its fixed tables for k ≤ 7, else σ = 0.3·((k−1)/2 − 1) + 0.8.
pub fn gaussian_kernel(k: usize) -> Vec<f32> {
    match k {
        1 => vec![1.0],
        3 => vec![0.25, 0.5, 0.25],
        5 => vec![0.0625, 0.25, 0.375, 0.25, 0.0625],
        7 => vec![
            0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125,
        ],
        _ => {
            let sigma = 0.3 * ((k as f64 - 1.0) * 0.5 - 1.0) + 0.8;
            let c = (k / 2) as f64;
            let g: Vec<f64> = (0..k)
                .map(|i| (-(i as f64 - c).powi(2) / (2.0 * sigma * sigma)).exp())
                .collect();
            let s: f64 = g.iter().sum();
            g.iter().map(|v| (v / s) as f32).collect()
        }
    }
}

/// Index reflected into 0..n without repeating the edge (OpenCV's BORDER_REFLECT_101).
fn reflect101(i: i64, n: i64) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * n - 2;
    let m = i.rem_euclid(period);
    (if m < n { m } else { period - m }) as usize
}

/// Separable Gaussian blur with a `k`-tap kernel ([`gaussian_kernel`]), reflect-101 border.
fn blur(v: &[f32], w: usize, h: usize, k: usize) -> Vec<f32> {
    if k <= 1 {
        return v.to_vec();
    }
    let g = gaussian_kernel(k);
    let r = (k / 2) as i64;
    let mut rows = vec![0.0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            rows[y * w + x] = (0..k)
                .map(|t| g[t] * v[y * w + reflect101(x as i64 + t as i64 - r, w as i64)])
                .sum();
        }
    }
    let mut out = vec![0.0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            out[y * w + x] = (0..k)
                .map(|t| g[t] * rows[reflect101(y as i64 + t as i64 - r, h as i64) * w + x])
                .sum();
        }
    }
    out
}

/// Bilinear sample of `src` channel `c` at (sx, sy), 0 outside (OpenCV's default border).
fn sample(src: &Planes, c: usize, sx: f64, sy: f64) -> f32 {
    let (x0, y0) = (sx.floor(), sy.floor());
    let (fx, fy) = ((sx - x0) as f32, (sy - y0) as f32);
    let (x0, y0) = (x0 as i64, y0 as i64);
    let (w, h) = (src.width as i64, src.height as i64);
    let p = src.plane(c);
    let at = |x: i64, y: i64| {
        if x >= 0 && y >= 0 && x < w && y < h {
            p[(y * w + x) as usize]
        } else {
            0.0
        }
    };
    let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1, y0) * fx;
    let bot = at(x0, y0 + 1) * (1.0 - fx) + at(x0 + 1, y0 + 1) * fx;
    top * (1.0 - fy) + bot * fy
}

/// Blends `face` (a `[C, S, S]` crop on 0..255 with the photo's channel count, C = 3) back
/// into `photo` (8-bit RGB, changed in place) where `to_crop` maps photo pixels to crop
/// pixels. Returns the soft mask used, or `None` when the face falls outside the photo.
pub fn paste_face(
    photo: &mut image::RgbImage,
    face: &Planes,
    to_crop: &Affine,
) -> Option<SoftMask> {
    let (pw, ph) = (photo.width() as i64, photo.height() as i64);
    let s = face.width as f64;
    let back = to_crop.inverse()?;
    let corners = [
        [0.0, 0.0],
        [s - 1.0, 0.0],
        [0.0, s - 1.0],
        [s - 1.0, s - 1.0],
    ]
    .map(|p| back.apply(p));
    let side = s * back.scale();
    // Wider than the largest kernel reach (2 + 2w with w ≤ side/20) on every side.
    let margin = (2.0 * (side / 20.0).ceil() + 4.0) as i64;
    let fx0 = corners
        .iter()
        .map(|p| p[0])
        .fold(f64::INFINITY, f64::min)
        .floor() as i64
        - margin;
    let fy0 = corners
        .iter()
        .map(|p| p[1])
        .fold(f64::INFINITY, f64::min)
        .floor() as i64
        - margin;
    let fx1 = corners
        .iter()
        .map(|p| p[0])
        .fold(f64::NEG_INFINITY, f64::max)
        .ceil() as i64
        + margin;
    let fy1 = corners
        .iter()
        .map(|p| p[1])
        .fold(f64::NEG_INFINITY, f64::max)
        .ceil() as i64
        + margin;
    let (x0, y0, x1, y1) = (fx0.max(0), fy0.max(0), (fx1 + 1).min(pw), (fy1 + 1).min(ph));
    if x1 <= x0 || y1 <= y0 {
        return None;
    }
    let (rw, rh) = ((x1 - x0) as usize, (y1 - y0) as usize);
    let ones = Planes {
        channels: 1,
        width: face.width,
        height: face.height,
        data: vec![1.0; face.width * face.height],
    };
    let mut mask = vec![0.0f32; rw * rh];
    let mut warped = vec![0.0f32; 3 * rw * rh];
    for y in 0..rh {
        for x in 0..rw {
            let [sx, sy] = to_crop.apply([(x0 as usize + x) as f64, (y0 as usize + y) as f64]);
            mask[y * rw + x] = sample(&ones, 0, sx, sy);
            for c in 0..3 {
                warped[c * rw * rh + y * rw + x] = sample(face, c, sx, sy);
            }
        }
    }
    let eroded = erode(&mask, rw, rh, 2);
    let area: f64 = eroded.iter().map(|&v| v as f64).sum();
    let w_edge = (area.sqrt() as usize) / 20;
    let centre = erode(&eroded, rw, rh, 2 * w_edge);
    let soft = blur(&centre, rw, rh, 2 * w_edge + 1);
    for y in 0..rh {
        for x in 0..rw {
            let i = y * rw + x;
            let m = soft[i];
            if m == 0.0 {
                continue;
            }
            let px = photo.get_pixel_mut(x0 as u32 + x as u32, y0 as u32 + y as u32);
            for c in 0..3 {
                let fg = eroded[i] * warped[c * rw * rh + i];
                let v = m * fg + (1.0 - m) * px[c] as f32;
                px[c] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    Some(SoftMask {
        x0: x0 as usize,
        y0: y0 as usize,
        width: rw,
        height: rh,
        values: soft,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_kernels_are_normalised_and_symmetric() {
        for k in [1, 3, 5, 7, 9, 21] {
            let g = gaussian_kernel(k);
            assert!((g.iter().sum::<f32>() - 1.0).abs() < 1e-6, "{k}");
            for i in 0..k {
                assert_eq!(g[i], g[k - 1 - i]);
            }
        }
        assert_eq!(reflect101(-1, 5), 1);
        assert_eq!(reflect101(5, 5), 3);
        assert_eq!(reflect101(-6, 5), 2);
    }

    /// Erosion against the window-minimum definition on random data, even and odd kernels.
    #[test]
    fn erode_is_the_anchored_window_minimum() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (w, h) = (9, 7);
        let v: Vec<f32> = (0..w * h).map(|_| rng.gen()).collect();
        for k in [2, 3, 4] {
            let got = erode(&v, w, h, k);
            let a = (k / 2) as i64;
            for y in 0..h as i64 {
                for x in 0..w as i64 {
                    let mut m = f32::INFINITY;
                    for dy in -a..(k as i64 - a) {
                        for dx in -a..(k as i64 - a) {
                            let (xx, yy) = (x + dx, y + dy);
                            if xx >= 0 && yy >= 0 && xx < w as i64 && yy < h as i64 {
                                m = m.min(v[(yy * w as i64 + xx) as usize]);
                            }
                        }
                    }
                    assert_eq!(got[(y * w as i64 + x) as usize], m, "k {k} ({x},{y})");
                }
            }
        }
    }
}
