//! SSIM as scikit-image computes it with gaussian_weights=True, sigma=1.5,
//! use_sample_covariance=False, data_range=255, per RGB channel then averaged:
//! Gaussian-weighted local statistics from an 11-tap window (radius
//! int(3.5·1.5 + 0.5) = 5, taps exp(−x²/(2·1.5²)) normalised), the SSIM map, and
//! its mean after cropping (11−1)/2 = 5 pixels from every side. Only that
//! cropped region is computed, so no border rule is involved.

use anyhow::{bail, Result};
use image::RgbImage;

const SIGMA: f64 = 1.5;
const RADIUS: usize = 5;
const WIN: usize = 2 * RADIUS + 1;
const K1: f64 = 0.01;
const K2: f64 = 0.03;
const L: f64 = 255.0;

fn taps() -> [f64; WIN] {
    let mut t = [0.0; WIN];
    for (k, v) in t.iter_mut().enumerate() {
        let x = k as f64 - RADIUS as f64;
        *v = (-0.5 * x * x / (SIGMA * SIGMA)).exp();
    }
    let s: f64 = t.iter().sum();
    t.map(|v| v / s)
}

/// Gaussian-weighted local mean of `f(a, b)` at every valid position
/// (rows RADIUS..h−RADIUS, cols RADIUS..w−RADIUS), as a (h−2R)×(w−2R) map.
fn local_mean(a: &[f64], b: &[f64], h: usize, w: usize, f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    let t = taps();
    let (vh, vw) = (h - 2 * RADIUS, w - 2 * RADIUS);
    // Horizontal pass over every row, valid columns only.
    let mut mid = vec![0.0; h * vw];
    for y in 0..h {
        let row: Vec<f64> = (0..w).map(|x| f(a[y * w + x], b[y * w + x])).collect();
        for x in 0..vw {
            mid[y * vw + x] = t.iter().zip(&row[x..x + WIN]).map(|(p, q)| p * q).sum();
        }
    }
    let mut out = vec![0.0; vh * vw];
    for y in 0..vh {
        for x in 0..vw {
            out[y * vw + x] = (0..WIN).map(|k| t[k] * mid[(y + k) * vw + x]).sum();
        }
    }
    out
}

/// Mean SSIM of one channel given as f64 planes.
fn ssim_plane(a: &[f64], b: &[f64], h: usize, w: usize) -> f64 {
    let ux = local_mean(a, b, h, w, |p, _| p);
    let uy = local_mean(a, b, h, w, |_, q| q);
    let uxx = local_mean(a, b, h, w, |p, _| p * p);
    let uyy = local_mean(a, b, h, w, |_, q| q * q);
    let uxy = local_mean(a, b, h, w, |p, q| p * q);
    let (c1, c2) = ((K1 * L).powi(2), (K2 * L).powi(2));
    let mut sum = 0.0;
    for i in 0..ux.len() {
        let (mx, my) = (ux[i], uy[i]);
        let vx = uxx[i] - mx * mx;
        let vy = uyy[i] - my * my;
        let vxy = uxy[i] - mx * my;
        let num = (2.0 * mx * my + c1) * (2.0 * vxy + c2);
        let den = (mx * mx + my * my + c1) * (vx + vy + c2);
        sum += num / den;
    }
    sum / ux.len() as f64
}

/// Mean SSIM over the three channels. Both sides must be at least 11 pixels,
/// as scikit-image requires for this window.
pub fn ssim(reference: &RgbImage, test: &RgbImage) -> Result<f64> {
    if reference.dimensions() != test.dimensions() {
        bail!(
            "image sizes differ: {:?} vs {:?}",
            reference.dimensions(),
            test.dimensions()
        );
    }
    let (w, h) = (reference.width() as usize, reference.height() as usize);
    if w < WIN || h < WIN {
        bail!("SSIM needs images of at least {WIN}x{WIN} pixels, got {w}x{h}");
    }
    let plane = |img: &RgbImage, c: usize| -> Vec<f64> {
        img.as_raw()
            .iter()
            .skip(c)
            .step_by(3)
            .map(|&v| v as f64)
            .collect()
    };
    let total: f64 = (0..3)
        .map(|c| ssim_plane(&plane(reference, c), &plane(test, c), h, w))
        .sum();
    Ok(total / 3.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn taps_match_scipy_window() {
        let t = taps();
        assert!((t.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        // centre tap of scipy.ndimage.gaussian_filter1d(sigma=1.5, truncate=3.5), from numpy
        assert!((t[5] - 0.26601172486179436).abs() < 1e-12, "{}", t[5]);
    }

    #[test]
    fn identical_is_one_and_distortion_lowers_it() {
        let a = RgbImage::from_fn(32, 24, |x, y| {
            Rgb([(x * 7) as u8, (y * 9) as u8, ((x * y) % 256) as u8])
        });
        assert!((ssim(&a, &a).unwrap() - 1.0).abs() < 1e-12);
        let b = RgbImage::from_fn(32, 24, |x, y| {
            let p = a.get_pixel(x, y).0;
            let n = ((x * 31 + y * 17) % 21) as u8;
            Rgb([p[0].saturating_add(n), p[1].saturating_sub(n), p[2]])
        });
        let s = ssim(&a, &b).unwrap();
        assert!(s < 0.99 && s > 0.0, "{s}");
        assert!(ssim(&a, &RgbImage::new(10, 10)).is_err());
        assert!(ssim(&RgbImage::new(10, 10), &RgbImage::new(10, 10)).is_err());
    }
}
