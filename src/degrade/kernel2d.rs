//! The degradation model's own blur (Eq. 16): a 41×41 Gaussian kernel, truncated
//! and normalised, applied with reflect borders (mirror without repeating the edge,
//! OpenCV's default BORDER_REFLECT_101). This is the data-generation kernel, kept
//! apart from the graph blur of `crate::blur` whose radius follows ceil(3σ).

use crate::blur::reflect::padded_map;
use rayon::prelude::*;

/// Kernel side length (the GFPGAN / DifFace convention).
pub const KSIZE: usize = 41;
const HALF: usize = KSIZE / 2;

/// Shape of the Gaussian: isotropic σ, or σ_x, σ_y rotated by θ (radians).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BlurShape {
    Iso(f64),
    Aniso {
        sigma_x: f64,
        sigma_y: f64,
        theta: f64,
    },
}

/// The 1-D taps whose outer product is the isotropic 41×41 kernel. Because the
/// truncation window is a square, the normalised 2-D kernel factors exactly.
pub fn iso_taps(sigma: f64) -> Vec<f32> {
    let w: Vec<f64> = (0..KSIZE)
        .map(|k| {
            let i = k as f64 - HALF as f64;
            (-i * i / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let s: f64 = w.iter().sum();
    w.iter().map(|v| (v / s) as f32).collect()
}

/// Dense 41×41 kernel (row-major, row = y) of a rotated bivariate Gaussian with
/// covariance R(θ)·diag(σ_x², σ_y²)·R(θ)ᵀ, normalised to sum 1.
pub fn aniso_kernel(sigma_x: f64, sigma_y: f64, theta: f64) -> Vec<f32> {
    let (c, s) = (theta.cos(), theta.sin());
    let (vx, vy) = (sigma_x * sigma_x, sigma_y * sigma_y);
    // Σ = [[a, b], [b, d]]
    let a = c * c * vx + s * s * vy;
    let d = s * s * vx + c * c * vy;
    let b = c * s * (vx - vy);
    let det = a * d - b * b;
    let (ia, ib, id) = (d / det, -b / det, a / det);
    let mut k = Vec::with_capacity(KSIZE * KSIZE);
    for yi in 0..KSIZE {
        let y = yi as f64 - HALF as f64;
        for xi in 0..KSIZE {
            let x = xi as f64 - HALF as f64;
            k.push((-0.5 * (ia * x * x + 2.0 * ib * x * y + id * y * y)).exp());
        }
    }
    let sum: f64 = k.iter().sum();
    k.iter().map(|v| (v / sum) as f32).collect()
}

/// Builds the reflect-padded copy of one [h, w] plane (pad HALF on all sides).
fn pad_plane(x: &[f32], h: usize, w: usize) -> (Vec<f32>, usize) {
    let (rm, cm) = (padded_map(w, HALF), padded_map(h, HALF));
    let pw = w + 2 * HALF;
    let mut p = Vec::with_capacity(pw * (h + 2 * HALF));
    for &r in &cm {
        let row = &x[r * w..(r + 1) * w];
        p.extend(rm.iter().map(|&m| row[m]));
    }
    (p, pw)
}

/// Blurs each [h, w] plane of `planes` (channel-major) in place.
pub fn blur_planes(planes: &mut [f32], h: usize, w: usize, shape: BlurShape) {
    let kernel: Vec<f32> = match shape {
        BlurShape::Iso(s) => {
            let t = iso_taps(s);
            t.iter()
                .flat_map(|&ty| t.iter().map(move |&tx| ty * tx))
                .collect()
        }
        BlurShape::Aniso {
            sigma_x,
            sigma_y,
            theta,
        } => aniso_kernel(sigma_x, sigma_y, theta),
    };
    let separable = match shape {
        BlurShape::Iso(s) => Some(iso_taps(s)),
        BlurShape::Aniso { .. } => None,
    };
    planes.par_chunks_mut(h * w).for_each(|plane| {
        let (p, pw) = pad_plane(plane, h, w);
        match &separable {
            Some(t) => separable_pass(&p, pw, h, w, t, plane),
            None => dense_pass(&p, pw, h, w, &kernel, plane),
        }
    });
}

/// out[y, x] = Σ_{dy,dx} k[dy][dx] · p[y+dy, x+dx], as row axpys.
fn dense_pass(p: &[f32], pw: usize, h: usize, w: usize, k: &[f32], out: &mut [f32]) {
    for (y, orow) in out.chunks_exact_mut(w).enumerate().take(h) {
        orow.fill(0.0);
        for dy in 0..KSIZE {
            let src = &p[(y + dy) * pw..(y + dy + 1) * pw];
            for dx in 0..KSIZE {
                let kv = k[dy * KSIZE + dx];
                for (o, &v) in orow.iter_mut().zip(&src[dx..dx + w]) {
                    *o += kv * v;
                }
            }
        }
    }
}

/// Same result as `dense_pass` with the outer-product kernel, in two 1-D passes.
fn separable_pass(p: &[f32], pw: usize, h: usize, w: usize, t: &[f32], out: &mut [f32]) {
    // Horizontal pass over every padded row, then vertical over the valid rows.
    let ph = h + 2 * HALF;
    let mut mid = vec![0.0f32; ph * w];
    for (r, mrow) in mid.chunks_exact_mut(w).enumerate().take(ph) {
        let src = &p[r * pw..(r + 1) * pw];
        for (dx, &tv) in t.iter().enumerate() {
            for (o, &v) in mrow.iter_mut().zip(&src[dx..dx + w]) {
                *o += tv * v;
            }
        }
    }
    for (y, orow) in out.chunks_exact_mut(w).enumerate().take(h) {
        orow.fill(0.0);
        for (dy, &tv) in t.iter().enumerate() {
            let src = &mid[(y + dy) * w..(y + dy + 1) * w];
            for (o, &v) in orow.iter_mut().zip(src) {
                *o += tv * v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::random::{rng, uniform};

    #[test]
    fn kernels_are_normalised() {
        for s in [0.1, 2.0, 15.0] {
            let t: f64 = iso_taps(s).iter().map(|&v| v as f64).sum();
            assert!((t - 1.0).abs() < 1e-6);
            let k: f64 = aniso_kernel(s, 0.5 * s + 0.2, 0.7)
                .iter()
                .map(|&v| v as f64)
                .sum();
            assert!((k - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn aniso_with_equal_sigmas_is_iso_whatever_the_angle() {
        let (h, w) = (23, 30);
        let x = uniform::<f32>(&mut rng(1), &[2, h, w], 0.0, 255.0).data;
        let mut a = x.clone();
        let mut b = x.clone();
        blur_planes(&mut a, h, w, BlurShape::Iso(2.5));
        blur_planes(
            &mut b,
            h,
            w,
            BlurShape::Aniso {
                sigma_x: 2.5,
                sigma_y: 2.5,
                theta: 1.1,
            },
        );
        let d = a
            .iter()
            .zip(&b)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-3, "max diff {d}");
    }

    #[test]
    fn aniso_rotation_by_quarter_turn_swaps_axes() {
        let k1 = aniso_kernel(4.0, 1.0, 0.0);
        let k2 = aniso_kernel(1.0, 4.0, std::f64::consts::FRAC_PI_2);
        let d = k1
            .iter()
            .zip(&k2)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-6);
        // Elongated along x: the kernel's spread in x exceeds that in y.
        let (mut mx, mut my) = (0.0, 0.0);
        for yi in 0..KSIZE {
            for xi in 0..KSIZE {
                let v = k1[yi * KSIZE + xi] as f64;
                mx += v * (xi as f64 - 20.0).powi(2);
                my += v * (yi as f64 - 20.0).powi(2);
            }
        }
        assert!(mx > 10.0 * my, "{mx} {my}");
    }

    #[test]
    fn constant_plane_stays_constant_even_when_smaller_than_the_kernel() {
        for (h, w) in [(64, 64), (9, 13)] {
            let mut x = vec![77.0f32; 3 * h * w];
            blur_planes(&mut x, h, w, BlurShape::Iso(15.0));
            assert!(x.iter().all(|v| (v - 77.0).abs() < 1e-3));
        }
    }
}
