//! Unusual and hostile input images through `load_rgb8`, the decoder shared by
//! `dynface restore`, `dynface degrade` and `dynface metrics`: each is either
//! converted with a note or refused with an error that names the file.

use dynface::degrade::load::load_rgb8;
use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dynface-inputs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

#[test]
fn crc32_matches_the_standard_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}

/// A PNG whose header claims `side`² 8-bit RGB pixels but holds one tiny IDAT chunk.
fn lying_png(side: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    png_chunk(&mut png, b"IHDR", &ihdr);
    png_chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    png_chunk(&mut png, b"IEND", &[]);
    png
}

#[test]
fn a_small_file_claiming_more_than_compression_allows_is_refused_before_decoding() {
    // 8000² RGB = 192 MB: under the side and byte caps, but no 100-byte file can hold it.
    let dir = scratch("expansion");
    let f = dir.join("liar.png");
    std::fs::write(&f, lying_png(8000)).unwrap();
    let t = Instant::now();
    let err = format!("{:#}", load_rgb8(&f).err().expect("must be refused"));
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "took {:?}: the decoder allocated before refusing",
        t.elapsed()
    );
    assert!(
        err.contains("liar.png") && err.contains("8000x8000"),
        "{err}"
    );
    assert!(err.contains("compression can expand"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_real_extremely_compressible_image_is_still_accepted() {
    // A flat 3000² PNG compresses far better than photos do (27 MB decoded from a few
    // tens of kB): the expansion bound must not refuse it.
    let dir = scratch("flat");
    let f = dir.join("flat.png");
    let img = ImageBuffer::from_pixel(3000, 3000, Rgb([17u8, 200, 90]));
    img.save(&f).unwrap();
    let len = std::fs::metadata(&f).unwrap().len();
    let loaded = load_rgb8(&f).expect("a real flat image must load");
    assert_eq!((loaded.rgb.width(), loaded.rgb.height()), (3000, 3000));
    assert_eq!(loaded.rgb.get_pixel(1234, 2345).0, [17, 200, 90]);
    assert!(
        3000 * 3000 * 3 > 100 * len,
        "the test image should compress over 100:1 (file {len} bytes)"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_png_claiming_50000_squared_is_refused_before_decoding() {
    let dir = scratch("huge");
    let png = lying_png(50_000);
    let f = dir.join("bomb.png");
    std::fs::write(&f, &png).unwrap();
    let t = Instant::now();
    let err = format!(
        "{:#}",
        load_rgb8(&f).err().expect("a 50000² claim must be refused")
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    assert!(err.contains("bomb.png"), "{err}");
    assert!(err.contains("50000x50000"), "{err}");
    assert!(err.contains("before decoding"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A 24×16 JPEG whose top-left 8×8 is red and the rest blue.
fn quadrant_jpeg() -> Vec<u8> {
    let img = ImageBuffer::from_fn(24, 16, |x, y| {
        if x < 8 && y < 8 {
            Rgb([230u8, 20, 20])
        } else {
            Rgb([20u8, 20, 230])
        }
    });
    let mut buf = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut buf, image::ImageFormat::Jpeg)
        .unwrap();
    buf.into_inner()
}

/// APP1 "Exif" with a big-endian TIFF header and one IFD0 entry: Orientation.
fn exif_app1(orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]); // value padding
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut body = b"Exif\x00\x00".to_vec();
    body.extend_from_slice(&tiff);
    let mut seg = vec![0xFF, 0xE1];
    seg.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
    seg.extend_from_slice(&body);
    seg
}

#[test]
fn exif_orientation_6_is_applied_to_a_jpeg() {
    let dir = scratch("exif");
    let plain = quadrant_jpeg();
    assert_eq!(&plain[..2], &[0xFF, 0xD8]);
    let mut rotated = plain[..2].to_vec();
    rotated.extend_from_slice(&exif_app1(6));
    rotated.extend_from_slice(&plain[2..]);
    let (fp, fr) = (dir.join("plain.jpg"), dir.join("rot6.jpg"));
    std::fs::write(&fp, &plain).unwrap();
    std::fs::write(&fr, &rotated).unwrap();

    let p = load_rgb8(&fp).unwrap();
    assert_eq!(p.rgb.dimensions(), (24, 16));
    assert!(
        !p.notes.iter().any(|n| n.contains("orientation")),
        "{:?}",
        p.notes
    );

    let r = load_rgb8(&fr).unwrap();
    assert_eq!(r.rgb.dimensions(), (16, 24), "90° turn swaps the sides");
    assert!(
        r.notes.iter().any(|n| n.contains("EXIF orientation")),
        "{:?}",
        r.notes
    );
    // Turned 90° clockwise, the stored top-left corner becomes the top-right.
    let red = |px: &Rgb<u8>| px[0] > 150 && px[2] < 100;
    assert!(red(r.rgb.get_pixel(12, 3)), "{:?}", r.rgb.get_pixel(12, 3));
    assert!(!red(r.rgb.get_pixel(3, 3)), "{:?}", r.rgb.get_pixel(3, 3));
    assert!(
        !red(r.rgb.get_pixel(12, 20)),
        "{:?}",
        r.rgb.get_pixel(12, 20)
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// MSB-first bit packer for a JPEG entropy-coded segment (with 0xFF stuffing).
struct Bits {
    out: Vec<u8>,
    acc: u32,
    n: u32,
}

impl Bits {
    fn put(&mut self, s: &str) {
        for c in s.chars() {
            self.acc = (self.acc << 1) | (c == '1') as u32;
            self.n += 1;
            if self.n == 8 {
                self.out.push(self.acc as u8);
                if self.acc == 0xFF {
                    self.out.push(0);
                }
                (self.acc, self.n) = (0, 0);
            }
        }
    }
    fn finish(mut self) -> Vec<u8> {
        while self.n != 0 {
            self.put("1");
        }
        self.out
    }
}

fn segment(out: &mut Vec<u8>, marker: u8, body: &[u8]) {
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(body);
}

/// A 16×8 baseline CMYK JPEG (Adobe, no transform), built by hand since the
/// image crate's encoder writes no CMYK: two MCUs of flat blocks with stored
/// levels C = 132, M = 124, Y = 128, K = 132.
fn cmyk_jpeg() -> Vec<u8> {
    let mut j = vec![0xFF, 0xD8];
    let mut adobe = b"Adobe".to_vec();
    adobe.extend_from_slice(&[0, 100, 0, 0, 0, 0, 0]); // version, flags, transform 0
    segment(&mut j, 0xEE, &adobe);
    let mut dqt = vec![0u8];
    dqt.extend_from_slice(&[1u8; 64]); // quantiser 1: coefficients as stored
    segment(&mut j, 0xDB, &dqt);
    let mut sof = vec![8, 0, 8, 0, 16, 4];
    for id in 1..=4 {
        sof.extend_from_slice(&[id, 0x11, 0]);
    }
    segment(&mut j, 0xC0, &sof);
    // DC table: two 2-bit codes, 00 → category 0, 01 → category 6.
    let mut dht = vec![0x00, 0, 2];
    dht.extend_from_slice(&[0u8; 14]);
    dht.extend_from_slice(&[0, 6]);
    // AC table: one 1-bit code, 0 → end of block.
    dht.extend_from_slice(&[0x10, 1]);
    dht.extend_from_slice(&[0u8; 15]);
    dht.push(0x00);
    segment(&mut j, 0xC4, &dht);
    let mut sos = vec![4];
    for id in 1..=4 {
        sos.extend_from_slice(&[id, 0x00]);
    }
    sos.extend_from_slice(&[0, 63, 0]);
    segment(&mut j, 0xDA, &sos);
    // DC of a flat block is 8·(level − 128): +32, −32 (ones' complement 011111), 0, +32.
    let mut b = Bits {
        out: Vec::new(),
        acc: 0,
        n: 0,
    };
    for dc in ["01100000", "01011111", "00", "01100000"] {
        b.put(dc);
        b.put("0");
    }
    for _ in 0..4 {
        b.put("000"); // second MCU: no DC change, end of block
    }
    j.extend_from_slice(&b.finish());
    j.extend_from_slice(&[0xFF, 0xD9]);
    j
}

#[test]
fn a_cmyk_jpeg_is_converted_with_a_note() {
    let dir = scratch("cmyk");
    let f = dir.join("cmyk.jpg");
    std::fs::write(&f, cmyk_jpeg()).unwrap();
    let l = load_rgb8(&f).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(l.rgb.dimensions(), (16, 8));
    assert!(l.notes.iter().any(|n| n.contains("CMYK")), "{:?}", l.notes);
    // Each channel is its ink level scaled by K (as stored by Adobe): c·k/255.
    let expect = [
        132.0 * 132.0 / 255.0,
        124.0 * 132.0 / 255.0,
        128.0 * 132.0 / 255.0,
    ];
    for px in l.rgb.pixels() {
        for c in 0..3 {
            assert!(
                (px[c] as f32 - expect[c]).abs() <= 2.0,
                "{px:?} vs {expect:?}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn deep_gray_and_alpha_pngs_are_converted_with_notes() {
    let dir = scratch("kinds");
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (w, h) = (13u32, 9u32);
    let rgb16: ImageBuffer<Rgb<u16>, Vec<u16>> =
        ImageBuffer::from_fn(w, h, |_, _| Rgb([rng.gen(), rng.gen(), rng.gen()]));
    let gray8: ImageBuffer<Luma<u8>, Vec<u8>> =
        ImageBuffer::from_fn(w, h, |_, _| Luma([rng.gen()]));
    let graya8: ImageBuffer<LumaA<u8>, Vec<u8>> =
        ImageBuffer::from_fn(w, h, |_, _| LumaA([rng.gen(), rng.gen()]));
    let rgba8: ImageBuffer<Rgba<u8>, Vec<u8>> = ImageBuffer::from_fn(w, h, |_, _| {
        Rgba([rng.gen(), rng.gen(), rng.gen(), rng.gen()])
    });
    let rgba16: ImageBuffer<Rgba<u16>, Vec<u16>> = ImageBuffer::from_fn(w, h, |_, _| {
        Rgba([rng.gen(), rng.gen(), rng.gen(), rng.gen()])
    });
    rgb16.save(dir.join("rgb16.png")).unwrap();
    gray8.save(dir.join("gray8.png")).unwrap();
    graya8.save(dir.join("graya8.png")).unwrap();
    rgba8.save(dir.join("rgba8.png")).unwrap();
    rgba16.save(dir.join("rgba16.png")).unwrap();
    let load = |name: &str| {
        let l = load_rgb8(&dir.join(name)).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(l.rgb.dimensions(), (w, h), "{name}");
        (l.rgb, l.notes.join("; "))
    };
    let to8 = |v: u16| ((v as u32 * 255 + 32767) / 65535) as i32;
    let close = |a: u8, b: i32| (a as i32 - b).abs() <= 1;

    let (img, notes) = load("rgb16.png");
    assert!(
        notes.contains("16-bit") && !notes.contains("alpha"),
        "{notes}"
    );
    for (p, q) in img.pixels().zip(rgb16.pixels()) {
        assert!((0..3).all(|c| close(p[c], to8(q[c]))), "{p:?} from {q:?}");
    }
    let (img, notes) = load("gray8.png");
    assert!(notes.contains("grayscale"), "{notes}");
    for (p, q) in img.pixels().zip(gray8.pixels()) {
        assert_eq!(p.0, [q[0]; 3]);
    }
    let (img, notes) = load("graya8.png");
    assert!(
        notes.contains("grayscale") && notes.contains("alpha"),
        "{notes}"
    );
    for (p, q) in img.pixels().zip(graya8.pixels()) {
        assert_eq!(p.0, [q[0]; 3], "alpha is dropped, not composited");
    }
    let (img, notes) = load("rgba8.png");
    assert!(
        notes.contains("alpha") && !notes.contains("16-bit"),
        "{notes}"
    );
    for (p, q) in img.pixels().zip(rgba8.pixels()) {
        assert_eq!(p.0, [q[0], q[1], q[2]]);
    }
    let (img, notes) = load("rgba16.png");
    assert!(
        notes.contains("alpha") && notes.contains("16-bit"),
        "{notes}"
    );
    for (p, q) in img.pixels().zip(rgba16.pixels()) {
        assert!((0..3).all(|c| close(p[c], to8(q[c]))), "{p:?} from {q:?}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn any_aspect_ratio_loads_at_its_own_size() {
    let dir = scratch("sizes");
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    for (w, h) in [(1, 1), (1, 40), (40, 1), (37, 23), (64, 64), (300, 7)] {
        let img: ImageBuffer<Rgb<u8>, Vec<u8>> =
            ImageBuffer::from_fn(w, h, |_, _| Rgb([rng.gen(), rng.gen(), rng.gen()]));
        let f = dir.join(format!("{w}x{h}.png"));
        img.save(&f).unwrap();
        let l = load_rgb8(&f).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(l.rgb, img, "{w}x{h}");
        assert_eq!(
            l.notes.iter().any(|n| n.contains("not square")),
            w != h,
            "{w}x{h}: {:?}",
            l.notes
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn non_images_and_cut_files_name_the_file() {
    let dir = scratch("bad");
    let text = dir.join("notes.png");
    std::fs::write(&text, b"plain text, not an image").unwrap();
    let jpeg = quadrant_jpeg();
    let cut = dir.join("cut.jpg");
    std::fs::write(&cut, &jpeg[..jpeg.len() / 3]).unwrap();
    for f in [&text, &cut, &dir.join("missing.png")] {
        let err = format!("{:#}", load_rgb8(f).err().expect("must fail"));
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(err.contains(name), "{err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
