//! Eq. 16 on one image: y = { [ (x ⊛ k_σ)↓_r + n_δ ]_JPEG_q }↑_r.

use super::kernel2d::{blur_planes, BlurShape};
use super::params::DegradeParams;
use super::resize::resize_bilinear;
use anyhow::{Context, Result};
use image::codecs::jpeg::JpegEncoder;
use image::{ImageFormat, RgbImage};
use rand::Rng;
use rand_distr::StandardNormal;

/// Interleaved RGB u8 → channel-major f32 planes.
fn to_planes(img: &RgbImage) -> Vec<f32> {
    let n = (img.width() * img.height()) as usize;
    let mut p = vec![0.0f32; 3 * n];
    for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
        for c in 0..3 {
            p[c * n + i] = px[c] as f32;
        }
    }
    p
}

/// Channel-major f32 planes → interleaved RGB u8, rounded and clamped.
fn from_planes(p: &[f32], w: u32, h: u32) -> RgbImage {
    let n = (w * h) as usize;
    let mut raw = vec![0u8; 3 * n];
    for (i, px) in raw.chunks_exact_mut(3).enumerate() {
        for c in 0..3 {
            px[c] = p[c * n + i].round().clamp(0.0, 255.0) as u8;
        }
    }
    RgbImage::from_raw(w, h, raw).expect("buffer sized for the image")
}

/// The size after ↓_r: floor(n / r) as in cv2.resize(img, (w // r, h // r)), at least 1.
pub fn down_size(n: u32, r: f64) -> u32 {
    ((n as f64 / r).floor() as u32).max(1)
}

/// Applies the drawn degradation; `noise_rng` feeds the noise field only.
/// Returns the degraded image (same size as the input) and the size it was
/// reduced to.
pub fn degrade_image<R: Rng>(
    img: &RgbImage,
    p: &DegradeParams,
    noise_rng: &mut R,
) -> Result<(RgbImage, (u32, u32))> {
    let (w, h) = (img.width(), img.height());
    let mut x = to_planes(img);

    if let Some(s) = p.sigma {
        let shape = match (p.sigma_y, p.theta) {
            (Some(sy), Some(t)) => BlurShape::Aniso {
                sigma_x: s,
                sigma_y: sy,
                theta: t,
            },
            _ => BlurShape::Iso(s),
        };
        blur_planes(&mut x, h as usize, w as usize, shape);
    }

    let (dw, dh) = match p.scale {
        Some(r) => (down_size(w, r), down_size(h, r)),
        None => (w, h),
    };
    if (dw, dh) != (w, h) {
        x = resize_bilinear(&x, 3, h as usize, w as usize, dh as usize, dw as usize);
    }

    if let Some(d) = p.noise {
        let d = d as f32;
        for v in x.iter_mut() {
            let n: f32 = noise_rng.sample(StandardNormal);
            *v += d * n;
        }
    }
    // Pixel values are clipped after the noise, as an 8-bit image would be.
    for v in x.iter_mut() {
        *v = v.clamp(0.0, 255.0);
    }

    if let Some(q) = p.jpeg_quality {
        let small = from_planes(&x, dw, dh);
        let mut buf = Vec::new();
        JpegEncoder::new_with_quality(&mut buf, q)
            .encode_image(&small)
            .context("JPEG encoding")?;
        let back = image::load_from_memory_with_format(&buf, ImageFormat::Jpeg)
            .context("JPEG decoding")?
            .to_rgb8();
        x = to_planes(&back);
    }

    if (dw, dh) != (w, h) {
        x = resize_bilinear(&x, 3, dh as usize, dw as usize, h as usize, w as usize);
    }
    Ok((from_planes(&x, w, h), (dw, dh)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::random::rng;

    fn random_image(seed: u64, w: u32, h: u32) -> RgbImage {
        let mut r = rng(seed);
        // Smooth gradient plus texture, so blur and JPEG both have work to do.
        RgbImage::from_fn(w, h, |x, y| {
            let t: u8 = r.gen_range(0..40);
            image::Rgb([
                (x * 3 % 200) as u8 + t,
                (y * 2 % 200) as u8 + t,
                ((x + y) % 200) as u8 + t,
            ])
        })
    }

    fn none() -> DegradeParams {
        DegradeParams {
            sigma: None,
            sigma_y: None,
            theta: None,
            scale: None,
            noise: None,
            jpeg_quality: None,
        }
    }

    fn mse(a: &RgbImage, b: &RgbImage) -> f64 {
        a.as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(&p, &q)| (p as f64 - q as f64).powi(2))
            .sum::<f64>()
            / a.as_raw().len() as f64
    }

    #[test]
    fn all_stages_off_is_identity() {
        let img = random_image(1, 40, 40);
        let (out, size) = degrade_image(&img, &none(), &mut rng(0)).unwrap();
        assert_eq!(size, (40, 40));
        assert_eq!(out, img);
    }

    #[test]
    fn each_stage_changes_the_image_and_more_blur_changes_it_more() {
        let img = random_image(2, 64, 64);
        let run = |p: DegradeParams| degrade_image(&img, &p, &mut rng(3)).unwrap().0;
        let b1 = run(DegradeParams {
            sigma: Some(1.0),
            ..none()
        });
        let b5 = run(DegradeParams {
            sigma: Some(5.0),
            ..none()
        });
        assert!(mse(&img, &b1) > 1.0);
        assert!(mse(&img, &b5) > mse(&img, &b1));
        assert!(
            mse(
                &img,
                &run(DegradeParams {
                    scale: Some(4.0),
                    ..none()
                })
            ) > 1.0
        );
        let n = run(DegradeParams {
            noise: Some(10.0),
            ..none()
        });
        let m = mse(&img, &n);
        assert!((60.0..140.0).contains(&m), "noise δ=10 gave MSE {m}");
        let j = run(DegradeParams {
            jpeg_quality: Some(30),
            ..none()
        });
        assert!(mse(&img, &j) > 1.0);
        let jq = run(DegradeParams {
            jpeg_quality: Some(95),
            ..none()
        });
        assert!(mse(&img, &jq) < mse(&img, &j));
    }

    #[test]
    fn downscale_size_and_output_size() {
        assert_eq!(down_size(512, 32.0), 16);
        assert_eq!(down_size(512, 0.8), 640);
        assert_eq!(down_size(10, 100.0), 1);
        let img = random_image(3, 50, 30);
        let p = DegradeParams {
            scale: Some(7.3),
            jpeg_quality: Some(50),
            ..none()
        };
        let (out, size) = degrade_image(&img, &p, &mut rng(0)).unwrap();
        assert_eq!(size, (6, 4));
        assert_eq!(out.dimensions(), (50, 30));
    }
}
