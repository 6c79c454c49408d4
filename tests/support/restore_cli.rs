//! Shared by the tests that drive `dynface restore` as a user would: the binary, scratch
//! folders, one tiny random-weight model set, synthetic inputs, the report.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_dynface")
}

pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dynface-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One tiny model set shared by the tests of this file.
pub fn weights() -> &'static Path {
    static W: OnceLock<PathBuf> = OnceLock::new();
    W.get_or_init(|| {
        let d = tmp("weights");
        dynface::restore::write_random_set("tiny", &d, 0).unwrap();
        d
    })
}

/// A small synthetic face-like test image (not one of the licensed faces).
pub fn synthetic_png(path: &Path, w: u32, h: u32, seed: u32) {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let v = |k: u32| {
            (((x * (3 + k + seed) + y * (5 + 2 * k)) % 97) as f32 / 97.0 * 200.0 + 30.0) as u8
        };
        image::Rgb([v(0), v(1), v(2)])
    });
    img.save(path).unwrap();
}

/// Every `.png` of `dir` with its bytes, by file name.
pub fn pngs(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".png"))
        .map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            (n, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

pub fn restore(args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("restore")
        .args(args)
        .output()
        .unwrap()
}

/// `dynface restore INPUT -o OUT --weights W --device cpu --quiet EXTRA...`
pub fn restore_cpu(input: &str, out: &str, weights: &str, extra: &[&str]) -> std::process::Output {
    let mut a = vec![
        input,
        "-o",
        out,
        "--weights",
        weights,
        "--device",
        "cpu",
        "--quiet",
    ];
    a.extend_from_slice(extra);
    restore(&a)
}

pub fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}
