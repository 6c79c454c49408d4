//! Whole photos in and out: decoded upright with the project's checked loader, the alpha
//! channel of RGBA inputs kept aside, and written back in the input's format (PNG stays
//! PNG with its alpha, JPEG stays JPEG at a chosen quality) at the input's size.

use crate::degrade::load::{load_rgb8, MAX_DECODE_BYTES};
use anyhow::{Context, Result};
use image::{GrayImage, ImageFormat, RgbImage};
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PhotoFormat {
    Png,
    Jpeg,
}

impl PhotoFormat {
    pub fn extension(self) -> &'static str {
        match self {
            PhotoFormat::Png => "png",
            PhotoFormat::Jpeg => "jpg",
        }
    }
}

/// The format by the file's first bytes (what the decoder will see), JPEG or else PNG.
pub fn sniff_format(path: &Path) -> PhotoFormat {
    let mut head = [0u8; 3];
    let ok = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok();
    if ok && head == [0xFF, 0xD8, 0xFF] {
        PhotoFormat::Jpeg
    } else {
        PhotoFormat::Png
    }
}

/// The output file of `input` in `dir`: the same stem, the input's format's extension.
pub fn output_path(dir: &Path, input: &Path) -> PathBuf {
    let stem = crate::degrade::load::stem_of(input);
    dir.join(format!("{stem}.{}", sniff_format(input).extension()))
}

pub struct Photo {
    /// Upright (EXIF orientation applied) 8-bit RGB.
    pub rgb: RgbImage,
    /// The alpha channel of an RGBA (or gray+alpha) input, upright.
    pub alpha: Option<GrayImage>,
    pub format: PhotoFormat,
    /// Conversions applied while loading (orientation, bit depth, ...).
    pub notes: Vec<String>,
}

/// Loads a photo with the checked loader (size caps before decoding, EXIF orientation,
/// CMYK, 16 bit, gray); an alpha channel it drops is decoded once more and kept.
pub fn load_photo(path: &Path) -> Result<Photo> {
    let loaded = load_rgb8(path)?;
    // Photos come in any shape; only aligned crops need to be square.
    let mut notes: Vec<String> = loaded
        .notes
        .into_iter()
        .filter(|n| !n.starts_with("not square"))
        .collect();
    let mut alpha = None;
    if let Some(i) = notes.iter().position(|n| n == "alpha channel dropped") {
        let mut reader = image::ImageReader::open(path)
            .with_context(|| format!("{}: cannot open", path.display()))?
            .with_guessed_format()?;
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(MAX_DECODE_BYTES);
        reader.limits(limits);
        let img = reader
            .decode()
            .with_context(|| format!("{}: decoding its alpha channel", path.display()))?;
        let a = GrayImage::from_fn(img.width(), img.height(), |x, y| {
            image::Luma([image::GenericImageView::get_pixel(&img, x, y)[3]])
        });
        if a.dimensions() == loaded.rgb.dimensions() {
            alpha = Some(a);
            notes[i] = "alpha channel kept unchanged".into();
        }
    }
    Ok(Photo {
        format: sniff_format(path),
        rgb: loaded.rgb,
        alpha,
        notes,
    })
}

/// The encoded output: PNG (RGBA when the input had alpha) or JPEG at `jpeg_quality`.
pub fn encode_photo(
    rgb: &RgbImage,
    alpha: Option<&GrayImage>,
    format: PhotoFormat,
    jpeg_quality: u8,
) -> Result<Vec<u8>> {
    let mut buf = std::io::Cursor::new(Vec::new());
    match (format, alpha) {
        (PhotoFormat::Png, Some(a)) => {
            let rgba = image::RgbaImage::from_fn(rgb.width(), rgb.height(), |x, y| {
                let p = rgb.get_pixel(x, y);
                image::Rgba([p[0], p[1], p[2], a.get_pixel(x, y)[0]])
            });
            rgba.write_to(&mut buf, ImageFormat::Png)
                .context("PNG encoding")?;
        }
        (PhotoFormat::Png, None) => rgb
            .write_to(&mut buf, ImageFormat::Png)
            .context("PNG encoding")?,
        (PhotoFormat::Jpeg, _) => {
            let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, jpeg_quality);
            rgb.write_with_encoder(enc).context("JPEG encoding")?;
        }
    }
    Ok(buf.into_inner())
}
