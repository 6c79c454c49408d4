//! `dynface restore` on whole photos, end to end with the tiny random-weight set and
//! MTCNN's real weights: every shared photo restored at its own size and in its own
//! format, its faces (as many as a person counts) pasted back, the rest of the photo
//! untouched, alpha kept, the report listing the faces; and the bad inputs (no face, 1×1,
//! a header claiming 50000², an RGBA PNG) each handled without stopping the others.

#[path = "support/photos.rs"]
mod photos_support;
#[path = "support/restore_cli.rs"]
mod restore_cli;
use photos_support::{mtcnn_wheel, photos_dir, PHOTO_FACES};
use restore_cli::{restore_cpu, tmp, weights};
use std::path::Path;

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
}

fn entry<'a>(r: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    r["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["input"].as_str().unwrap().ends_with(name))
        .unwrap_or_else(|| panic!("{name} not in the report"))
}

#[test]
fn every_shared_photo_is_restored_at_its_size_with_its_faces_pasted_back() {
    let (Some(wheel), Some(dir)) = (mtcnn_wheel(), photos_dir()) else {
        return;
    };
    let o = tmp("photos");
    let dump = o.join("dump");
    let out = restore_cpu(
        dir.to_str().unwrap(),
        o.to_str().unwrap(),
        weights().to_str().unwrap(),
        &[
            "--sampler",
            "ddim2",
            "--batch",
            "8",
            "--detector-weights",
            wheel.to_str().unwrap(),
            "--dump",
            dump.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let r = report(&o);
    assert_eq!(r["restored"], PHOTO_FACES.len(), "{stderr}");
    for (name, want) in PHOTO_FACES {
        let e = entry(&r, name);
        assert_eq!(e["status"], "restored", "{name}: {e}");
        let faces = e["photo"]["faces"].as_array().unwrap();
        assert_eq!(faces.len(), *want, "{name}");
        let input = dynface::face::photo::load_photo(&dir.join(name)).unwrap();
        let output_path = Path::new(e["output"].as_str().unwrap());
        // Same format (by extension and by content), same size.
        let ext = Path::new(name).extension().unwrap();
        assert_eq!(output_path.extension().unwrap(), ext, "{name}");
        let output = dynface::face::photo::load_photo(output_path).unwrap();
        assert_eq!(output.format, input.format, "{name}");
        assert_eq!(output.rgb.dimensions(), input.rgb.dimensions(), "{name}");
        // RGBA inputs keep their alpha exactly.
        match (&input.alpha, &output.alpha) {
            (None, None) => {}
            (Some(a), Some(b)) => assert_eq!(a, b, "{name}: alpha changed"),
            _ => panic!("{name}: alpha presence changed"),
        }
        let mut masks = vec![];
        for f in faces {
            assert_eq!(f["status"], "restored", "{name}: {f}");
            assert!(f["trace"]["sigma_hat"].as_f64().unwrap() > 0.0);
            assert_eq!(f["trace"]["start_steps"].as_array().unwrap().len(), 3);
            assert!(f["seconds"].as_f64().unwrap() > 0.0);
            for k in ["crop", "restored", "mask"] {
                assert!(
                    Path::new(f[k].as_str().unwrap()).exists(),
                    "{name}: {k} of {f}"
                );
            }
            masks.push(image::open(f["mask"].as_str().unwrap()).unwrap().to_luma8());
        }
        // Outside every face's mask: bit-identical for PNG; JPEG is re-encoded (quality
        // 95), measured 46.6–50.7 dB against the input there, bound 30 dB.
        let (mut n_out, mut n_in_changed, mut se) = (0usize, 0usize, 0f64);
        for (x, y, p) in output.rgb.enumerate_pixels() {
            let q = input.rgb.get_pixel(x, y);
            if masks.iter().all(|m| m.get_pixel(x, y)[0] == 0) {
                n_out += 1;
                if input.format == dynface::face::photo::PhotoFormat::Png {
                    assert_eq!(p, q, "{name}: ({x},{y}) outside the masks changed");
                }
                se += (0..3)
                    .map(|c| (p[c] as f64 - q[c] as f64).powi(2))
                    .sum::<f64>()
                    / 3.0;
            } else if masks.iter().any(|m| m.get_pixel(x, y)[0] == 255) && p != q {
                n_in_changed += 1;
            }
        }
        let total = (output.rgb.width() * output.rgb.height()) as usize;
        assert!(
            n_out > total / 10 && n_out < total,
            "{name}: {n_out} of {total} outside"
        );
        assert!(n_in_changed > 0, "{name}: no face pixel changed");
        let psnr = 10.0 * (255.0f64.powi(2) / (se / n_out as f64).max(1e-12)).log10();
        println!(
            "{name}: {} faces, outside the masks {psnr:.1} dB",
            faces.len()
        );
        assert!(psnr > 30.0, "{name}: {psnr:.1} dB outside the masks");
    }
    // A rerun skips every finished photo.
    let again = restore_cpu(
        dir.to_str().unwrap(),
        o.to_str().unwrap(),
        weights().to_str().unwrap(),
        &[
            "--sampler",
            "ddim2",
            "--detector-weights",
            wheel.to_str().unwrap(),
        ],
    );
    assert!(again.status.success());
    assert_eq!(report(&o)["skipped"], PHOTO_FACES.len());
    std::fs::remove_dir_all(&o).ok();
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A PNG header claiming `side`² RGB pixels with one empty IDAT chunk.
fn lying_png(side: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8; 4], data: &[u8]| {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = png.len();
        png.extend_from_slice(kind);
        png.extend_from_slice(data);
        let crc = crc32(&png[start..]);
        png.extend_from_slice(&crc.to_be_bytes());
    };
    let mut ihdr = side.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
    png
}

#[test]
fn photos_without_faces_are_copied_through_and_bad_ones_reported() {
    let Some(wheel) = mtcnn_wheel() else { return };
    let inp = tmp("photo-bad-in");
    let o = tmp("photo-bad-out");
    // A smooth sky-and-field picture, a 1×1 pixel, an RGBA gradient with varying alpha,
    // and a header claiming 50000² pixels.
    image::RgbImage::from_fn(240, 160, |x, y| {
        if y < 90 {
            image::Rgb([120, 170, 235 - (y / 3) as u8])
        } else {
            image::Rgb([60 + (x % 7) as u8 * 3, 140, 50])
        }
    })
    .save(inp.join("landscape.png"))
    .unwrap();
    image::RgbImage::from_pixel(1, 1, image::Rgb([9, 99, 199]))
        .save(inp.join("dot.png"))
        .unwrap();
    image::RgbaImage::from_fn(90, 70, |x, y| {
        image::Rgba([(x * 2) as u8, (y * 3) as u8, 77, (x + y) as u8])
    })
    .save(inp.join("clear.png"))
    .unwrap();
    std::fs::write(inp.join("bomb.png"), lying_png(50_000)).unwrap();
    let out = restore_cpu(
        inp.to_str().unwrap(),
        o.to_str().unwrap(),
        weights().to_str().unwrap(),
        &[
            "--sampler",
            "ddim2",
            "--detector-weights",
            wheel.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the bomb fails the run: {stderr}"
    );
    assert!(
        stderr.contains("no face found; copied through unchanged"),
        "{stderr}"
    );
    let r = report(&o);
    for name in ["landscape.png", "dot.png", "clear.png"] {
        let e = entry(&r, name);
        assert_eq!(e["status"], "copied (no face)", "{name}: {e}");
        assert!(e["notes"].to_string().contains("copied through"), "{e}");
        assert_eq!(e["photo"]["faces"].as_array().unwrap().len(), 0);
        // Byte for byte: nothing was decoded and re-encoded.
        assert_eq!(
            std::fs::read(o.join(name)).unwrap(),
            std::fs::read(inp.join(name)).unwrap(),
            "{name}"
        );
    }
    let bomb = entry(&r, "bomb.png");
    assert_eq!(bomb["status"], "failed");
    assert!(
        bomb["error"].as_str().unwrap().contains("50000x50000"),
        "{bomb}"
    );
    assert_eq!(r["failed"], 1);
    std::fs::remove_dir_all(&inp).ok();
    std::fs::remove_dir_all(&o).ok();
}

/// Without the detector's weights, `--detect` fails saying where to get them; without
/// `--detect` a photo falls back to the aligned path (resized to the network size and back)
/// with a warning saying the same, and `--aligned` takes that path without the warning.
#[test]
fn missing_detector_weights_say_where_to_get_them_and_aligned_needs_none() {
    let inp = tmp("photo-nodet-in");
    let o = tmp("photo-nodet-out");
    restore_cli::synthetic_png(&inp.join("wide.png"), 90, 60, 1);
    let missing = inp.join("none.safetensors");
    let run = |extra: &[&str]| {
        let mut a = vec!["--sampler", "ddim2", "--overwrite", "--detector-weights"];
        a.push(missing.to_str().unwrap());
        a.extend_from_slice(extra);
        let out = restore_cpu(
            inp.to_str().unwrap(),
            o.to_str().unwrap(),
            weights().to_str().unwrap(),
            &a,
        );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stderr) = run(&["--detect"]);
    assert!(!ok);
    assert!(
        stderr.contains("pip download --no-deps facenet-pytorch==2.6.0"),
        "{stderr}"
    );
    let (ok, stderr) = run(&[]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("treated as aligned crops") && stderr.contains("pip download"),
        "{stderr}"
    );
    assert!(stderr.contains("resized from 90×60"), "{stderr}");
    let (ok, stderr) = run(&["--aligned"]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("resized from 90×60") && !stderr.contains("treated as aligned"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&inp).ok();
    std::fs::remove_dir_all(&o).ok();
}

fn restore_env(
    inputs: &[&Path],
    out: &Path,
    env: &[(&str, &str)],
    extra: &[&str],
) -> std::process::Output {
    let mut c = std::process::Command::new(restore_cli::bin());
    c.arg("restore").args(inputs).arg("-o").arg(out);
    c.args([
        "--weights",
        weights().to_str().unwrap(),
        "--device",
        "cpu",
        "--quiet",
        "--sampler",
        "ddim2",
    ]);
    c.args(extra);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// Faces share the batch faults of aligned crops: out of memory halves the batch of faces
/// and retries them; a lost device stops the run (the photo in the batch failed, the next
/// one not run) and a rerun resumes.
#[test]
fn face_batches_back_off_on_out_of_memory_and_stop_on_a_lost_device() {
    use dynface::backend::cpu::CpuBackend;
    use dynface::restore::{load_models, Pipeline};
    let (Some(wheel), Some(dir)) = (mtcnn_wheel(), photos_dir()) else {
        return;
    };
    let models = load_models(weights()).unwrap();
    let arena = |b: usize| {
        Pipeline::new(
            CpuBackend::<f32>::new(),
            &models,
            models.set.sampler_config(),
            true,
            b,
        )
        .unwrap()
        .largest_arena_bytes()
    };
    let limit = arena(2).to_string();
    let four = dir.join("codeformer_01.jpg");
    let one = dir.join("codeformer_03.jpg");
    let det = [
        "--detector-weights",
        wheel.to_str().unwrap(),
        "--batch",
        "4",
    ];

    let o = tmp("photo-oom");
    let r = restore_env(&[&four], &o, &[("DYNFACE_FAULT_ALLOC_LIMIT", &limit)], &det);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{err}");
    assert!(
        err.contains("out of memory at a batch of 4 faces")
            && err.contains("retrying with batch 2"),
        "{err}"
    );
    let rep = report(&o);
    let faces = entry(&rep, "codeformer_01.jpg")["photo"]["faces"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(faces.len(), 4);
    assert!(faces.iter().all(|f| f["status"] == "restored"), "{faces:?}");

    let o = tmp("photo-lost");
    let r = restore_env(
        &[&four, &one],
        &o,
        &[("DYNFACE_FAULT_BATCH", "1:lost")],
        &det,
    );
    assert_eq!(r.status.code(), Some(1));
    let rep = report(&o);
    assert!(
        rep["stopped"].as_str().unwrap().contains("device was lost"),
        "{rep}"
    );
    assert_eq!(entry(&rep, "codeformer_01.jpg")["status"], "failed");
    assert_eq!(entry(&rep, "codeformer_03.jpg")["status"], "not run");
    let r = restore_env(&[&four, &one], &o, &[], &det);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(report(&o)["restored"], 2);
}

/// A black-and-white photo gets black-and-white faces: the restored faces are turned grey
/// before the paste, so an exactly grey input gives an exactly grey output.
#[test]
fn a_grey_photo_stays_grey() {
    let (Some(wheel), Some(dir)) = (mtcnn_wheel(), photos_dir()) else {
        return;
    };
    let inp = tmp("photo-grey-in");
    let o = tmp("photo-grey-out");
    let src = dynface::degrade::load::load_rgb8(&dir.join("codeformer_01.jpg"))
        .unwrap()
        .rgb;
    let grey = image::RgbImage::from_fn(src.width(), src.height(), |x, y| {
        let p = src.get_pixel(x, y);
        let l = (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32).round() as u8;
        image::Rgb([l, l, l])
    });
    grey.save(inp.join("grey.png")).unwrap();
    let r = restore_env(
        &[&inp.join("grey.png")],
        &o,
        &[],
        &[
            "--detector-weights",
            wheel.to_str().unwrap(),
            "--batch",
            "4",
        ],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let rep = report(&o);
    let e = entry(&rep, "grey.png");
    assert_eq!(e["photo"]["faces"].as_array().unwrap().len(), 4);
    assert!(e["notes"].to_string().contains("grey photo"), "{e}");
    let out = image::open(o.join("grey.png")).unwrap().to_rgb8();
    assert!(
        out.pixels().all(|p| p[0] == p[1] && p[1] == p[2]),
        "colour in the output"
    );
    assert_ne!(out, grey, "the faces were pasted");
    std::fs::remove_dir_all(&inp).ok();
    std::fs::remove_dir_all(&o).ok();
}

/// APP1 "Exif" segment with one IFD0 entry: Orientation.
fn exif_app1(orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes());
    tiff.extend_from_slice(&0x0112u16.to_be_bytes());
    tiff.extend_from_slice(&3u16.to_be_bytes());
    tiff.extend_from_slice(&1u32.to_be_bytes());
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut body = b"Exif\x00\x00".to_vec();
    body.extend_from_slice(&tiff);
    let mut seg = vec![0xFF, 0xE1];
    seg.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
    seg.extend_from_slice(&body);
    seg
}

/// A JPEG stored sideways with EXIF orientation 6 is turned upright before detection and
/// written upright at the upright size: it looks as the input does in a viewer (the tag
/// itself is not copied).
#[test]
fn an_exif_rotated_jpeg_is_restored_upright() {
    let (Some(wheel), Some(dir)) = (mtcnn_wheel(), photos_dir()) else {
        return;
    };
    let inp = tmp("photo-exif-in");
    let o = tmp("photo-exif-out");
    let upright = dynface::degrade::load::load_rgb8(&dir.join("codeformer_03.jpg"))
        .unwrap()
        .rgb;
    // Orientation 6 means "turn 90° clockwise to display", so store it turned the other way.
    let stored = image::imageops::rotate270(&upright);
    let mut jpeg = std::io::Cursor::new(Vec::new());
    stored
        .write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(
            &mut jpeg, 95,
        ))
        .unwrap();
    let jpeg = jpeg.into_inner();
    let mut tagged = jpeg[..2].to_vec();
    tagged.extend_from_slice(&exif_app1(6));
    tagged.extend_from_slice(&jpeg[2..]);
    std::fs::write(inp.join("turned.jpg"), tagged).unwrap();
    let r = restore_env(
        &[&inp.join("turned.jpg")],
        &o,
        &[],
        &["--detector-weights", wheel.to_str().unwrap()],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let rep = report(&o);
    let e = entry(&rep, "turned.jpg");
    assert_eq!(e["status"], "restored", "{e}");
    assert_eq!(e["photo"]["faces"].as_array().unwrap().len(), 1, "{e}");
    assert!(e["notes"].to_string().contains("EXIF orientation"), "{e}");
    let out = dynface::face::photo::load_photo(&o.join("turned.jpg")).unwrap();
    assert_eq!(out.rgb.dimensions(), upright.dimensions());
    assert!(
        !out.notes.iter().any(|n| n.contains("orientation")),
        "{:?}",
        out.notes
    );
    // Upright like the original: far from the face (the right quarter) the two agree to
    // JPEG noise (two encodings at 95): measured 50.6 dB, bound 30 dB.
    let (w, h) = upright.dimensions();
    let mut se = 0.0;
    for y in 0..h {
        for x in w - w / 4..w {
            let (p, q) = (out.rgb.get_pixel(x, y), upright.get_pixel(x, y));
            se += (0..3)
                .map(|c| (p[c] as f64 - q[c] as f64).powi(2))
                .sum::<f64>()
                / 3.0;
        }
    }
    let psnr = 10.0 * (255.0f64.powi(2) / (se / (h * (w / 4)) as f64)).log10();
    println!("right quarter vs the upright original: {psnr:.1} dB");
    assert!(psnr > 30.0, "{psnr:.1} dB");
    std::fs::remove_dir_all(&inp).ok();
    std::fs::remove_dir_all(&o).ok();
}

/// Too little free space fails the photo before anything is written, saying how much is needed.
#[test]
fn a_full_disk_fails_the_photo_before_writing() {
    let (Some(wheel), Some(dir)) = (mtcnn_wheel(), photos_dir()) else {
        return;
    };
    let o = tmp("photo-full");
    let r = restore_env(
        &[&dir.join("codeformer_03.jpg")],
        &o,
        &[("DYNFACE_FAULT_FREE_BYTES", "1000")],
        &["--detector-weights", wheel.to_str().unwrap()],
    );
    assert_eq!(r.status.code(), Some(1));
    let rep = report(&o);
    let e = entry(&rep, "codeformer_03.jpg");
    assert_eq!(e["status"], "failed");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("not enough free disk space"),
        "{e}"
    );
    assert!(!o.join("codeformer_03.jpg").exists() && !o.join("faces").exists());
}

/// `--dry-run` names the files the run would write: a whole JPEG photo stays a JPEG.
#[test]
fn a_dry_run_names_a_jpeg_photo_by_its_own_extension() {
    let (Some(wheel), Some(dir)) = (mtcnn_wheel(), photos_dir()) else {
        return;
    };
    let o = tmp("photos-dry");
    let out = restore_cpu(
        dir.join("codeformer_03.jpg").to_str().unwrap(),
        o.to_str().unwrap(),
        weights().to_str().unwrap(),
        &["--detector-weights", wheel.to_str().unwrap(), "--dry-run"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = format!("\t{}\n", o.join("codeformer_03.jpg").display());
    assert!(
        stdout.starts_with("restore\t") && stdout.ends_with(&want),
        "{stdout}"
    );
    assert!(
        !o.join("codeformer_03.jpg").exists(),
        "a dry run wrote an output"
    );
}
