//! The image path of `restore` and `degrade`: decode by content (PNG/JPEG, EXIF, CMYK,
//! 16-bit, gray, alpha) and resize to the networks' size, on arbitrary bytes.
#![no_main]
use dynface::degrade::load::decode_rgb8;
use dynface::restore::images::prepare_input;
use libfuzzer_sys::fuzz_target;
use std::io::Cursor;

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = decode_rgb8(Cursor::new(data), data.len() as u64, "fuzz.img") {
        let p = prepare_input(img, 16);
        assert_eq!(p.planes.shape, vec![3, 16, 16]);
        assert!(p.planes.data.iter().all(|v| (0.0..=1.0).contains(v)));
    }
});
