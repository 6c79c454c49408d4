//! Reading input images as 8-bit RGB, converting what can be converted and
//! saying so, and failing with the file name for what cannot be read.

use anyhow::{Context, Result};
use image::{ColorType, ImageReader, RgbImage};
use std::path::{Path, PathBuf};

/// An input image in 8-bit RGB and the conversions applied to get it there.
pub struct LoadedImage {
    pub rgb: RgbImage,
    pub notes: Vec<String>,
}

/// Decodes `path` by content (not by extension) and converts it to 8-bit RGB:
/// 16-bit and float samples are scaled to 8 bit, gray is replicated to RGB, and
/// alpha is dropped (not composited). Each conversion adds a note.
pub fn load_rgb8(path: &Path) -> Result<LoadedImage> {
    let reader = ImageReader::open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let img = reader
        .decode()
        .with_context(|| format!("{}: not a readable PNG/JPEG image", path.display()))?;
    let mut notes = Vec::new();
    let color = img.color();
    match color {
        ColorType::L16 | ColorType::La16 | ColorType::Rgb16 | ColorType::Rgba16 => {
            notes.push("16-bit samples converted to 8-bit".to_string())
        }
        ColorType::Rgb32F | ColorType::Rgba32F => {
            notes.push("float samples converted to 8-bit".to_string())
        }
        _ => {}
    }
    if matches!(
        color,
        ColorType::L8 | ColorType::La8 | ColorType::L16 | ColorType::La16
    ) {
        notes.push("grayscale replicated to RGB".to_string());
    }
    if color.has_alpha() {
        notes.push("alpha channel dropped".to_string());
    }
    let rgb = img.to_rgb8();
    if rgb.width() == 0 || rgb.height() == 0 {
        anyhow::bail!(
            "{}: image is empty ({}x{})",
            path.display(),
            rgb.width(),
            rgb.height()
        );
    }
    if rgb.width() != rgb.height() {
        notes.push(format!(
            "not square ({}x{}); processed as is",
            rgb.width(),
            rgb.height()
        ));
    }
    Ok(LoadedImage { rgb, notes })
}

/// True for the extensions collected from folders.
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
        .unwrap_or(false)
}

/// Expands files and folders into a list of files: folders contribute their
/// PNG/JPEG files (not recursively), sorted by name; files are taken as given.
pub fn collect_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("{}: cannot list folder", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && has_image_extension(f))
                .collect();
            files.sort();
            out.extend(files);
        } else if p.exists() {
            out.push(p.clone());
        } else {
            anyhow::bail!("{}: no such file or folder", p.display());
        }
    }
    Ok(out)
}

/// The file stem as text (lossy for non-UTF-8 names).
pub fn stem_of(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}
