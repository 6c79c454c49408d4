//! Reading input images as 8-bit RGB, converting what can be converted and
//! saying so, and failing with the file name for what cannot be read.

use anyhow::{Context, Result};
use image::metadata::Orientation;
use image::{ColorType, DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Widest and tallest input accepted. Checked from the header, before any pixel
/// buffer exists, so a file that merely claims a huge size costs nothing.
pub const MAX_SIDE: u32 = 16384;
/// Most bytes the decoder may allocate for one image (a 16384² 8-bit RGB face fits).
pub const MAX_DECODE_BYTES: u64 = 1 << 30;
/// Most decoded bytes per file byte. Deflate cannot expand beyond ~1032:1 and a baseline
/// JPEG needs at least ~2 bits per 8×8 block and component (under 1000:1 for RGB), so a
/// header claiming more than this is a lie; refusing it stops a tiny file from making
/// the decoder allocate up to [`MAX_DECODE_BYTES`].
pub const MAX_EXPANSION: u64 = 4096;
/// Decoded bytes always allowed, whatever the file size (a 2048² RGBA image).
pub const EXPANSION_SLACK: u64 = 16 << 20;

/// An input image in 8-bit RGB and the conversions applied to get it there.
pub struct LoadedImage {
    pub rgb: RgbImage,
    pub notes: Vec<String>,
}

/// Decodes `path` by content (not by extension) and converts it to 8-bit RGB:
/// the header's size is checked against [`MAX_SIDE`] and [`MAX_DECODE_BYTES`]
/// before decoding, the EXIF orientation is applied, CMYK JPEGs are converted,
/// 16-bit and float samples are scaled to 8 bit, gray is replicated to RGB, and
/// alpha is dropped (not composited). Each conversion adds a note.
pub fn load_rgb8(path: &Path) -> Result<LoadedImage> {
    let f =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let len = f
        .metadata()
        .with_context(|| format!("{}: cannot read", path.display()))?
        .len();
    decode_rgb8(BufReader::new(f), len, &path.display().to_string())
}

/// [`load_rgb8`] on any seekable source of `len` bytes (an in-memory buffer, for the fuzz
/// targets); `name` names it in errors.
pub fn decode_rgb8<R: BufRead + Seek>(mut src: R, len: u64, name: &str) -> Result<LoadedImage> {
    let four_components = jpeg_has_four_components(&mut src);
    src.seek(SeekFrom::Start(0))
        .with_context(|| format!("{name}: cannot read"))?;
    let mut reader = ImageReader::new(src)
        .with_guessed_format()
        .with_context(|| format!("{name}: cannot read"))?;
    let format = reader.format();
    // Sides are checked by hand below, so the error can name the claimed size.
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let mut decoder = reader
        .into_decoder()
        .with_context(|| format!("{name}: not a readable PNG/JPEG image"))?;
    let (w, h) = decoder.dimensions();
    if w > MAX_SIDE || h > MAX_SIDE {
        anyhow::bail!(
            "{name}: the header claims {w}x{h} pixels; refused before decoding (at most {MAX_SIDE} per side)"
        );
    }
    let bytes = decoder.total_bytes();
    if bytes > MAX_DECODE_BYTES {
        anyhow::bail!(
            "{name}: the header claims {w}x{h} pixels of {:?} ({bytes} bytes); refused before decoding (at most {MAX_DECODE_BYTES} bytes)",
            decoder.color_type()
        );
    }
    if bytes
        > MAX_EXPANSION
            .saturating_mul(len)
            .saturating_add(EXPANSION_SLACK)
    {
        anyhow::bail!(
            "{name}: the header claims {w}x{h} pixels ({bytes} bytes decoded) but the file holds only {len} bytes, \
             more than PNG or JPEG compression can expand to; truncated or corrupt, refused before decoding"
        );
    }
    let mut notes = Vec::new();
    if format == Some(ImageFormat::Jpeg) && four_components {
        notes.push("CMYK JPEG converted to RGB".to_string());
    }
    // A broken EXIF block must not cost the picture: it is read as upright.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder)
        .with_context(|| format!("{name}: not a readable PNG/JPEG image"))?;
    if orientation != Orientation::NoTransforms {
        img.apply_orientation(orientation);
        notes.push(format!(
            "EXIF orientation {orientation:?} applied ({w}x{h} stored, {}x{} upright)",
            img.width(),
            img.height()
        ));
    }
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
        anyhow::bail!("{name}: image is empty ({}x{})", rgb.width(), rgb.height());
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

/// True when the JPEG's frame header (SOFn) lists four components, i.e. CMYK or
/// YCCK; the decoder converts those to RGB without saying so. Any read problem
/// answers false: the decoder itself reports broken files.
fn jpeg_has_four_components(f: &mut (impl Read + Seek)) -> bool {
    let mut soi = [0u8; 2];
    if f.read_exact(&mut soi).is_err() || soi != [0xFF, 0xD8] {
        return false;
    }
    // Walk the marker segments up to the frame header; each carries its length.
    loop {
        let mut m = [0u8; 4];
        if f.read_exact(&mut m).is_err() || m[0] != 0xFF {
            return false;
        }
        let len = u16::from_be_bytes([m[2], m[3]]) as i64;
        let is_sof = matches!(m[1], 0xC0..=0xCF) && !matches!(m[1], 0xC4 | 0xC8 | 0xCC);
        if is_sof {
            // precision (1), height (2), width (2), component count (1)
            let mut sof = [0u8; 6];
            return f.read_exact(&mut sof).is_ok() && sof[5] == 4;
        }
        if m[1] == 0xDA || len < 2 || f.seek(SeekFrom::Current(len - 2)).is_err() {
            return false;
        }
    }
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
