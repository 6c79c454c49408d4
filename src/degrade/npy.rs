//! Decoded images as NumPy `.npy` files (`uint8`, `[H, W, 3]`), so reference scripts run
//! third-party code on exactly the pixels our decoder gives: JPEG decoders differ by a few
//! levels per pixel, which would otherwise show up as detector differences.

use image::RgbImage;

/// The `.npy` (format 1.0) bytes of `img`: a C-order `|u1` array `[height, width, 3]`.
pub fn rgb8_npy(img: &RgbImage) -> Vec<u8> {
    let dict = format!(
        "{{'descr': '|u1', 'fortran_order': False, 'shape': ({}, {}, 3), }}",
        img.height(),
        img.width()
    );
    // Magic (6) + version (2) + header length (2) + header, padded with spaces and ended
    // by a newline so the data starts on a 64-byte boundary, as the format asks.
    let unpadded = 10 + dict.len() + 1;
    let header_len = dict.len() + 1 + (64 - unpadded % 64) % 64;
    let mut out = Vec::with_capacity(10 + header_len + img.as_raw().len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header_len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(10 + header_len - 1, b' ');
    out.push(b'\n');
    out.extend_from_slice(img.as_raw());
    out
}
