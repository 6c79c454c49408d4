//! Input images to the networks' working size and back.

use crate::degrade::load::{load_rgb8, LoadedImage};
use crate::tensor::Tensor;
use anyhow::{Context, Result};
use image::imageops::FilterType;
use image::RgbImage;
use std::path::Path;

pub struct InputImage {
    /// `[3, S, S]` in [0, 1].
    pub planes: Tensor<f32>,
    /// The input's own size, restored on output.
    pub width: u32,
    pub height: u32,
    pub notes: Vec<String>,
}

pub fn load_input(path: &Path, size: usize) -> Result<InputImage> {
    Ok(prepare_input(load_rgb8(path)?, size))
}

/// A decoded image to the networks' `[3, size, size]` planes (resized when needed, with a note).
pub fn prepare_input(loaded: LoadedImage, size: usize) -> InputImage {
    let mut notes = loaded.notes;
    let (w, h) = (loaded.rgb.width(), loaded.rgb.height());
    let rgb = if (w as usize, h as usize) != (size, size) {
        notes.push(format!("resized from {w}×{h} to {size}×{size} (the networks work on aligned {size}² faces) and back"));
        image::imageops::resize(&loaded.rgb, size as u32, size as u32, FilterType::Lanczos3)
    } else {
        loaded.rgb
    };
    let s = size;
    let mut data = vec![0.0f32; 3 * s * s];
    for (x, y, p) in rgb.enumerate_pixels() {
        for c in 0..3 {
            data[c * s * s + y as usize * s + x as usize] = p[c] as f32 / 255.0;
        }
    }
    InputImage {
        planes: Tensor::new(vec![3, s, s], data),
        width: w,
        height: h,
        notes,
    }
}

/// `[3, S, S]` in [0, 1] → 8-bit RGB.
pub fn to_rgb8(planes: &Tensor<f32>) -> RgbImage {
    let (h, w) = (planes.shape[1], planes.shape[2]);
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let px = |c: usize| {
            (planes.data[c * h * w + y as usize * w + x as usize].clamp(0.0, 1.0) * 255.0).round()
                as u8
        };
        image::Rgb([px(0), px(1), px(2)])
    })
}

pub fn png_bytes(img: &RgbImage) -> Result<Vec<u8>> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)
        .context("PNG encoding")?;
    Ok(buf.into_inner())
}

/// Writes the restored image at the input's size, atomically (temporary file + rename).
pub fn save_output(planes: &Tensor<f32>, input: &InputImage, path: &Path) -> Result<()> {
    let mut img = to_rgb8(planes);
    if (img.width(), img.height()) != (input.width, input.height) {
        img = image::imageops::resize(&img, input.width, input.height, FilterType::Lanczos3);
    }
    crate::atomic_file::write_atomic(path, &png_bytes(&img)?)
}
