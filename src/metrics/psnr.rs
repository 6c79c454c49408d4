//! PSNR on 8-bit RGB images, peak 255, MSE over all pixels and channels
//! (scikit-image's `peak_signal_noise_ratio(ref, test, data_range=255)`).

use anyhow::{bail, Result};
use image::RgbImage;

/// Mean squared error over all samples, in f64.
pub fn mse(a: &RgbImage, b: &RgbImage) -> Result<f64> {
    if a.dimensions() != b.dimensions() {
        bail!(
            "image sizes differ: {:?} vs {:?}",
            a.dimensions(),
            b.dimensions()
        );
    }
    let sum: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&p, &q)| {
            let d = p as f64 - q as f64;
            d * d
        })
        .sum();
    Ok(sum / a.as_raw().len() as f64)
}

/// PSNR in dB; +∞ for identical images.
pub fn psnr(reference: &RgbImage, test: &RgbImage) -> Result<f64> {
    let m = mse(reference, test)?;
    Ok(10.0 * (255.0f64 * 255.0 / m).log10())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn known_offset_and_identity() {
        let a = RgbImage::from_fn(9, 7, |x, y| Rgb([(x * 20) as u8, (y * 30) as u8, 100]));
        let b = RgbImage::from_fn(9, 7, |x, y| {
            Rgb([(x * 20) as u8 + 5, (y * 30) as u8 + 5, 105])
        });
        let want = 10.0 * (255.0f64 * 255.0 / 25.0).log10();
        assert!((psnr(&a, &b).unwrap() - want).abs() < 1e-12);
        assert!(psnr(&a, &a).unwrap().is_infinite());
        assert!(psnr(&a, &RgbImage::new(9, 8)).is_err());
    }
}
