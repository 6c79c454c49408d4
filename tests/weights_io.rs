//! Checkpoint I/O: safetensors round trips and malformed files, the `.pth` reader
//! against files written by real `torch.save` (tools/reference/gen_pth_reader_fixtures.py),
//! hostile and damaged `.pth` files, conversion, and downloads from a loopback server.

#[path = "support/http_server.rs"]
mod http_server;

use dynface::cli::weights::ConvertArgs;
use dynface::tensor::{numel, random, DType};
use dynface::weights::download::{download_entry, part_path, DownloadOptions, Fetched};
use dynface::weights::{
    convert_pth_to_safetensors, load_pth, load_safetensors, save_safetensors, ManifestEntry,
    PthFormat, PthOptions, WeightData, WeightStore, WeightTensor, WeightType, WeightsError,
};
use half::{bf16, f16};
use rand::Rng;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dynface-weights-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn random_store(seed: u64) -> WeightStore {
    let mut rng = random::rng(seed);
    let mut s = WeightStore::new();
    let floats = |shape: &[usize], rng: &mut rand_chacha::ChaCha8Rng| -> Vec<f32> {
        (0..numel(shape))
            .map(|_| rng.gen_range(-3.0f32..3.0))
            .collect()
    };
    let f = floats(&[4, 3, 3, 3], &mut rng);
    s.insert(
        "conv.weight",
        WeightTensor::new(vec![4, 3, 3, 3], WeightData::F32(f)).unwrap(),
    );
    let h = floats(&[5, 2], &mut rng)
        .into_iter()
        .map(f16::from_f32)
        .collect();
    s.insert(
        "half",
        WeightTensor::new(vec![5, 2], WeightData::F16(h)).unwrap(),
    );
    let b = floats(&[7], &mut rng)
        .into_iter()
        .map(bf16::from_f32)
        .collect();
    s.insert(
        "brain",
        WeightTensor::new(vec![7], WeightData::BF16(b)).unwrap(),
    );
    let i = (0..6)
        .map(|_| rng.gen_range(-(1i64 << 50)..(1i64 << 50)))
        .collect();
    s.insert(
        "index",
        WeightTensor::new(vec![2, 3], WeightData::I64(i)).unwrap(),
    );
    s.insert(
        "scalar",
        WeightTensor::new(vec![], WeightData::F32(vec![rng.gen()])).unwrap(),
    );
    s
}

fn assert_same(a: &WeightStore, b: &WeightStore) {
    assert_eq!(a.len(), b.len());
    for (n, t) in a.iter() {
        assert_eq!(b.get(n), Some(t), "tensor {n}");
    }
}

// ---------------------------------------------------------------- safetensors

#[test]
fn safetensors_round_trip_all_types() {
    let dir = temp_dir("st-rt");
    let s = random_store(11);
    let p = dir.join("w.safetensors");
    save_safetensors(&s, &p, None).unwrap();
    assert!(
        !dir.join("w.safetensors.tmp").exists(),
        "temporary file left behind"
    );
    let back = load_safetensors(&p).unwrap();
    assert_same(&s, &back);
    // Overwriting goes through the same atomic path.
    let s2 = random_store(12);
    save_safetensors(&s2, &p, None).unwrap();
    assert_same(&s2, &load_safetensors(&p).unwrap());
    let t = back.tensor_f32("half").unwrap();
    assert_eq!(t.shape, vec![5, 2]);
}

#[test]
fn safetensors_truncated_at_every_length_is_an_error() {
    let dir = temp_dir("st-trunc");
    let p = dir.join("w.safetensors");
    save_safetensors(&random_store(13), &p, None).unwrap();
    let full = std::fs::read(&p).unwrap();
    let cut = dir.join("cut.safetensors");
    for len in 0..full.len() {
        std::fs::write(&cut, &full[..len]).unwrap();
        let e = load_safetensors(&cut).unwrap_err().to_string();
        assert!(e.contains("cut.safetensors"), "len {len}: {e}");
    }
}

fn raw_safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

fn load_raw(dir: &Path, bytes: &[u8]) -> String {
    let p = dir.join("raw.safetensors");
    std::fs::write(&p, bytes).unwrap();
    load_safetensors(&p).unwrap_err().to_string()
}

#[test]
fn safetensors_bad_headers_give_clear_errors() {
    let dir = temp_dir("st-bad");
    let data: Vec<u8> = (0..24u8).map(|i| i.wrapping_mul(37)).collect();
    // The well-formed version loads, so each failure below is due to its one change.
    let ok = r#"{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}"#;
    std::fs::write(dir.join("ok.safetensors"), raw_safetensors(ok, &data)).unwrap();
    assert_eq!(
        load_safetensors(&dir.join("ok.safetensors"))
            .unwrap()
            .get("w")
            .unwrap()
            .shape,
        vec![2, 3]
    );

    // Header length far beyond the file: refused before reading or allocating it.
    let mut huge = (1u64 << 40).to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    let e = load_raw(&dir, &huge);
    assert!(e.contains("header claims 1099511627776 bytes"), "{e}");

    // A tensor claiming 400 GB while the file has 24 data bytes.
    let big = r#"{"w":{"dtype":"F32","shape":[100000,100000,10],"data_offsets":[0,400000000000]}}"#;
    let e = load_raw(&dir, &raw_safetensors(big, &data));
    assert!(e.contains("truncated") && e.contains("`w`"), "{e}");

    let wrong_dtype = r#"{"w":{"dtype":"I32","shape":[2,3],"data_offsets":[0,24]}}"#;
    let e = load_raw(&dir, &raw_safetensors(wrong_dtype, &data));
    assert!(e.contains("`w`") && e.contains("I32"), "{e}");

    let mismatch = r#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,24]}}"#;
    let e = load_raw(&dir, &raw_safetensors(mismatch, &data));
    assert!(
        e.contains("`w`") && e.contains("[2, 2]") && e.contains("16 bytes"),
        "{e}"
    );

    let extra = raw_safetensors(ok, &[data.as_slice(), &[0u8; 8]].concat());
    assert!(load_raw(&dir, &extra).contains("header describes 24 data bytes but the file holds 32"));

    let e = load_raw(&dir, &raw_safetensors("not json at all", &data));
    assert!(e.contains("bad header JSON"), "{e}");
    let e = load_raw(&dir, &raw_safetensors("{\"w\":\u{1}}", &data));
    assert!(e.contains("bad header JSON"), "{e}");
    let mut bad_utf8 = 4u64.to_le_bytes().to_vec();
    bad_utf8.extend_from_slice(&[0xff, 0xfe, 0xfd, 0xfc]);
    assert!(load_raw(&dir, &bad_utf8).contains("UTF-8"));
}

#[test]
fn nan_warning_survives_a_round_trip() {
    let dir = temp_dir("st-nan");
    let mut s = random_store(14);
    let mut v: Vec<f32> = (0..8).map(|i| i as f32 * 0.37 - 1.0).collect();
    v[5] = f32::NAN;
    s.insert(
        "bad.weight",
        WeightTensor::new(vec![2, 4], WeightData::F32(v)).unwrap(),
    );
    let p = dir.join("nan.safetensors");
    save_safetensors(&s, &p, None).unwrap();
    let w = load_safetensors(&p).unwrap().non_finite_warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("`bad.weight`") && w[0].contains("1 NaN"),
        "{w:?}"
    );
}

// ---------------------------------------------------------------- .pth fixtures

fn fixtures() -> Option<(PathBuf, Json)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pth/reader");
    let Ok(text) = std::fs::read_to_string(dir.join("expected.json")) else {
        dynface::check::skip::skip(
            "weights_io pth reader fixtures",
            dynface::check::skip::SkipReason::NoFixture,
            &format!(
                "{} is missing (run tools/reference/gen_pth_reader_fixtures.py)",
                dir.display()
            ),
        );
        return None;
    };
    Some((
        dir,
        serde_json::from_str(&text).expect("expected.json parses"),
    ))
}

/// Checks one loaded tensor against torch's own description of it.
fn check_tensor(file: &str, name: &str, t: &WeightTensor, exp: &Json) {
    let shape: Vec<usize> = exp["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(t.shape, shape, "{file}: {name} shape");
    let values = exp["values"].as_array().unwrap();
    assert_eq!(t.numel(), values.len(), "{file}: {name} numel");
    let want_type = match exp["dtype"].as_str().unwrap() {
        "float32" | "float64" => WeightType::F32,
        "float16" => WeightType::F16,
        "bfloat16" => WeightType::BF16,
        "int64" | "int32" | "uint8" | "bool" => WeightType::I64,
        other => panic!("unexpected dtype {other}"),
    };
    assert_eq!(t.dtype(), want_type, "{file}: {name} dtype");
    match &t.data {
        WeightData::I64(v) => {
            for (a, b) in v.iter().zip(values) {
                assert_eq!(*a, b.as_i64().unwrap(), "{file}: {name}");
            }
        }
        _ => {
            let got = t.to_f32(name).unwrap().data;
            for (a, b) in got.iter().zip(values) {
                // Exact: f32/f16/bf16 values are exactly representable; f64 rounds to nearest f32.
                assert_eq!(*a, b.as_f64().unwrap() as f32, "{file}: {name}");
            }
        }
    }
}

#[test]
fn pth_fixtures_match_torch() {
    let Some((dir, exp)) = fixtures() else { return };
    let mut checked = 0;
    for (file, e) in exp["files"].as_object().unwrap() {
        if e.get("tensors").is_none() {
            continue;
        }
        let opts = PthOptions {
            key: e["key"].as_str().map(str::to_string),
            ..PthOptions::default()
        };
        let got = load_pth(&dir.join(file), &opts).unwrap_or_else(|x| panic!("{file}: {x}"));
        let want_format = if e["format"] == "zip" {
            PthFormat::Zip
        } else {
            PthFormat::Legacy
        };
        assert_eq!(got.format, want_format, "{file}");
        assert_eq!(got.wrapper.as_deref(), e["wrapper"].as_str(), "{file}");
        let order: Vec<&str> = e["order"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            got.store.names().collect::<Vec<_>>(),
            order,
            "{file}: names in file order"
        );
        for (name, te) in e["tensors"].as_object().unwrap() {
            check_tensor(file, name, got.store.require(name).unwrap(), te);
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} fixtures checked");
}

#[test]
fn pth_zip_and_legacy_agree() {
    let Some((dir, _)) = fixtures() else { return };
    for stem in ["basic", "half", "views"] {
        let z = load_pth(&dir.join(format!("{stem}_zip.pth")), &PthOptions::default()).unwrap();
        let l = load_pth(
            &dir.join(format!("{stem}_legacy.pth")),
            &PthOptions::default(),
        )
        .unwrap();
        assert_same(&z.store, &l.store);
    }
}

#[test]
fn pth_wrapper_key_choice() {
    let Some((dir, _)) = fixtures() else { return };
    // Without --key the custom wrapper is flattened with '.', with it the names are bare.
    let flat = load_pth(&dir.join("custom_key.pth"), &PthOptions::default()).unwrap();
    assert!(
        flat.store.contains("net_g.a"),
        "{:?}",
        flat.store.names().collect::<Vec<_>>()
    );
    assert!(
        flat.warnings.iter().any(|w| w.contains("meta.note")),
        "{:?}",
        flat.warnings
    );
    let opts = PthOptions {
        key: Some("nope".into()),
        ..PthOptions::default()
    };
    let e = load_pth(&dir.join("custom_key.pth"), &opts)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no top-level key `nope`") && e.contains("net_g, meta"),
        "{e}"
    );
    let e = load_pth(
        &dir.join("wrapped_state_dict.pth"),
        &PthOptions {
            key: Some("epoch".into()),
            ..PthOptions::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("`epoch` does not hold a dict"), "{e}");
}

#[test]
fn pth_malicious_pickle_is_refused_without_running() {
    let Some((dir, _)) = fixtures() else { return };
    let marker = Path::new("/tmp/dynface_pwned");
    let _ = std::fs::remove_file(marker);
    for file in ["evil_zip.pth", "evil_legacy.pth"] {
        let e = load_pth(&dir.join(file), &PthOptions::default()).unwrap_err();
        match &e {
            WeightsError::ForbiddenGlobal { global, file: f } => {
                assert!(global.ends_with(".system"), "{global}");
                assert!(f.contains(file), "{f}");
            }
            other => panic!("{file}: expected a refused global, got {other}"),
        }
        assert!(e.to_string().contains("system"), "{e}");
    }
    assert!(!marker.exists(), "the payload ran");
}

#[test]
fn pth_truncated_files_are_errors() {
    let Some((dir, _)) = fixtures() else { return };
    let out = temp_dir("pth-trunc");
    for file in ["basic_zip.pth", "basic_legacy.pth", "views_legacy.pth"] {
        let full = std::fs::read(dir.join(file)).unwrap();
        let cut = out.join(file);
        for len in (0..full.len()).step_by(7).chain([full.len() - 1]) {
            std::fs::write(&cut, &full[..len]).unwrap();
            let e = load_pth(&cut, &PthOptions::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains(file), "{file} cut at {len}: {e}");
        }
    }
}

#[test]
fn pth_bit_flips_never_panic_and_never_corrupt_zip_data() {
    let Some((dir, _)) = fixtures() else { return };
    let out = temp_dir("pth-flip");
    let mut rng = random::rng(21);
    for file in ["basic_zip.pth", "views_zip.pth", "basic_legacy.pth"] {
        let full = std::fs::read(dir.join(file)).unwrap();
        let clean = load_pth(&dir.join(file), &PthOptions::default())
            .unwrap()
            .store;
        let p = out.join(file);
        let (mut errors, mut tries) = (0, 0);
        // Every 64th byte plus 300 random positions: the whole file takes too long.
        let positions: Vec<usize> = (0..full.len())
            .step_by(64)
            .chain((0..300).map(|_| rng.gen_range(0..full.len())))
            .collect();
        for pos in positions {
            let mut b = full.clone();
            b[pos] ^= 1 << rng.gen_range(0..8);
            std::fs::write(&p, &b).unwrap();
            tries += 1;
            match load_pth(&p, &PthOptions::default()) {
                Err(_) => errors += 1,
                // The zip container checksums every entry: a flip that loads must not
                // have changed any tensor. The legacy stream has no checksum.
                Ok(l) if file.contains("zip") => {
                    assert_same(&clean, &l.store);
                }
                Ok(_) => {}
            }
        }
        assert!(errors > 0, "{file}: no flip was detected in {tries} tries");
    }
}

// Crafted files for claims that torch itself never writes.

struct Pickle(Vec<u8>);

impl Pickle {
    fn new() -> Self {
        Pickle(b"\x80\x02".to_vec())
    }
    fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.raw(b"X")
            .raw(&(s.len() as u32).to_le_bytes())
            .raw(s.as_bytes())
    }
    fn int(&mut self, v: u64) -> &mut Self {
        self.raw(b"\x8a\x08").raw(&v.to_le_bytes())
    }
    fn global(&mut self, m: &str, n: &str) -> &mut Self {
        self.raw(b"c")
            .raw(m.as_bytes())
            .raw(b"\n")
            .raw(n.as_bytes())
            .raw(b"\n")
    }
    fn ints(&mut self, v: &[u64]) -> &mut Self {
        self.raw(b"(");
        for &x in v {
            self.int(x);
        }
        self.raw(b"t")
    }
    /// `{'w': _rebuild_tensor_v2(FloatStorage '0' of `numel`, offset, shape, stride, False, OrderedDict())}`
    fn state_dict(numel: u64, offset: u64, shape: &[u64], stride: &[u64]) -> Vec<u8> {
        let mut p = Pickle::new();
        p.raw(b"}(")
            .str("w")
            .global("torch._utils", "_rebuild_tensor_v2")
            .raw(b"(");
        p.raw(b"(")
            .str("storage")
            .global("torch", "FloatStorage")
            .str("0")
            .str("cpu")
            .int(numel)
            .raw(b"tQ");
        p.int(offset).ints(shape).ints(stride).raw(b"\x89");
        p.global("collections", "OrderedDict")
            .raw(b")R")
            .raw(b"tR")
            .raw(b"u.");
        p.0
    }
}

fn crafted_zip(pkl: &[u8], storage: &[u8]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in [
        ("archive/data.pkl", pkl),
        ("archive/byteorder", b"little".as_slice()),
        ("archive/data/0", storage),
    ] {
        w.start_file(name, o).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn crafted_legacy(pkl: &[u8], header_numel: u64, storage: &[u8]) -> Vec<u8> {
    let mut v = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.".to_vec();
    v.extend_from_slice(b"\x80\x02M\xe9\x03.");
    v.extend_from_slice(b"\x80\x02}(X\x0d\x00\x00\x00little_endian\x88u.");
    v.extend_from_slice(pkl);
    v.extend_from_slice(b"\x80\x02]X\x01\x00\x00\x000a.");
    v.extend_from_slice(&header_numel.to_le_bytes());
    v.extend_from_slice(storage);
    v
}

#[test]
fn pth_crafted_size_claims_are_refused_before_allocating() {
    let dir = temp_dir("pth-claims");
    let vals: Vec<f32> = (0..6).map(|i| (i as f32 - 2.5) * 0.75).collect();
    let bytes: Vec<u8> = bytemuck::cast_slice(&vals).to_vec();
    let p = dir.join("c.pth");
    let load = |b: &[u8]| {
        std::fs::write(&p, b).unwrap();
        load_pth(&p, &PthOptions::default())
    };
    // Sanity: the crafted files load when consistent (a transposed 3x2 view of 6 values).
    let good = Pickle::state_dict(6, 0, &[3, 2], &[1, 3]);
    for file in [crafted_zip(&good, &bytes), crafted_legacy(&good, 6, &bytes)] {
        let t = load(&file).unwrap().store.tensor_f32("w").unwrap();
        assert_eq!(t.shape, vec![3, 2]);
        assert_eq!(
            t.data,
            vec![vals[0], vals[3], vals[1], vals[4], vals[2], vals[5]]
        );
    }
    // 100 GB storage claimed, 24 bytes present.
    let huge = Pickle::state_dict(25_000_000_000, 0, &[2, 3], &[3, 1]);
    let e = load(&crafted_zip(&huge, &bytes)).unwrap_err().to_string();
    assert!(
        e.contains("archive/data/0") && e.contains("100000000000"),
        "{e}"
    );
    let e = load(&crafted_legacy(&huge, 25_000_000_000, &bytes))
        .unwrap_err()
        .to_string();
    assert!(e.contains("truncated") && e.contains("100000000000"), "{e}");
    // A 100 GB tensor: refused from the pickle alone, before any storage is read.
    let huge_view = Pickle::state_dict(25_000_000_000, 0, &[5, 5_000_000_000], &[5_000_000_000, 1]);
    let e = load(&crafted_zip(&huge_view, &bytes))
        .unwrap_err()
        .to_string();
    assert!(e.contains("would expand to 100000000000 bytes"), "{e}");
    // A view reaching past its storage.
    let oob = Pickle::state_dict(6, 2, &[3, 2], &[2, 1]);
    let e = load(&crafted_zip(&oob, &bytes)).unwrap_err().to_string();
    assert!(e.contains("`w`") && e.contains("reaches element 7"), "{e}");
    // A stride-0 view is legal but must not expand a tiny file into gigabytes.
    let bomb = Pickle::state_dict(6, 0, &[1 << 28, 2], &[0, 1]);
    let e = load(&crafted_zip(&bomb, &bytes)).unwrap_err().to_string();
    assert!(e.contains("would expand to 2147483648 bytes"), "{e}");
    let small = Pickle::state_dict(6, 0, &[4, 2], &[0, 1]);
    let t = load(&crafted_zip(&small, &bytes))
        .unwrap()
        .store
        .tensor_f32("w")
        .unwrap();
    assert_eq!(t.data, [vals[0], vals[1]].repeat(4));
    // Size whose element count overflows u64.
    let ovf = Pickle::state_dict(6, 0, &[1 << 40, 1 << 40], &[1, 1]);
    assert!(load(&crafted_zip(&ovf, &bytes)).is_err());
    // Legacy header and pickle disagree.
    let e = load(&crafted_legacy(&good, 5, &bytes))
        .unwrap_err()
        .to_string();
    assert!(e.contains("header says 5 elements"), "{e}");
    // A dict that contains itself, and dicts nested past the depth limit.
    let mut cyc = Pickle::new();
    cyc.raw(b"}q\x00").str("a").raw(b"h\x00s.");
    let e = load(&crafted_zip(&cyc.0, &bytes)).unwrap_err().to_string();
    assert!(e.contains("dict at `a` contains itself"), "{e}");
    let mut deep = Pickle::new();
    deep.raw(b"}");
    for _ in 0..100 {
        deep.str("d").raw(b"}");
    }
    deep.raw(&b"s".repeat(100)).raw(b".");
    let e = load(&crafted_zip(&deep.0, &bytes)).unwrap_err().to_string();
    assert!(e.contains("nested deeper than 32 levels"), "{e}");
    // Not a checkpoint at all.
    let e = load(b"hello world").unwrap_err().to_string();
    assert!(e.contains("not a PyTorch checkpoint"), "{e}");
}

// ---------------------------------------------------------------- conversion

#[test]
fn convert_keeps_values_i64_buffers_and_strips_module() {
    let Some((dir, exp)) = fixtures() else { return };
    let out = temp_dir("convert");
    let dst = out.join("basic.safetensors");
    let r = convert_pth_to_safetensors(&dir.join("basic_zip.pth"), &dst, None, None).unwrap();
    assert_eq!(r.tensors, 10);
    assert!(!out.join("basic.safetensors.tmp").exists());
    let st = load_safetensors(&dst).unwrap();
    let e = &exp["files"]["basic_zip.pth"];
    for (name, te) in e["tensors"].as_object().unwrap() {
        check_tensor("basic.safetensors", name, st.require(name).unwrap(), te);
    }
    // --dtype bf16: floats re-encoded, integer buffers untouched.
    let dst16 = out.join("basic16.safetensors");
    convert_pth_to_safetensors(&dir.join("basic_zip.pth"), &dst16, None, Some(DType::BF16))
        .unwrap();
    let st16 = load_safetensors(&dst16).unwrap();
    assert_eq!(st16.get("conv.weight").unwrap().dtype(), WeightType::BF16);
    assert_eq!(st16.get("index").unwrap(), st.get("index").unwrap());
    let a = st.tensor_f32("conv.weight").unwrap();
    let b = st16.tensor_f32("conv.weight").unwrap();
    for (x, y) in a.data.iter().zip(&b.data) {
        assert!((x - y).abs() <= x.abs() / 256.0, "{x} vs {y}");
    }
    // params_ema wrapper with DataParallel prefix; num_batches_tracked stays i64.
    let dst = out.join("ema.safetensors");
    let r =
        convert_pth_to_safetensors(&dir.join("wrapped_params_ema.pth"), &dst, None, None).unwrap();
    assert_eq!(r.wrapper.as_deref(), Some("params_ema"));
    assert_eq!(r.stripped_module_prefix, 3);
    let st = load_safetensors(&dst).unwrap();
    let names: Vec<_> = st.names().map(str::to_string).collect();
    assert_eq!(names.len(), 3);
    assert!(names.iter().all(|n| !n.starts_with("module.")), "{names:?}");
    assert_eq!(
        st.get("bn.num_batches_tracked")
            .unwrap()
            .to_i64("n")
            .unwrap(),
        vec![17]
    );
    let e = &exp["files"]["wrapped_params_ema.pth"]["tensors"]["module.x.weight"];
    check_tensor("ema", "x.weight", st.require("x.weight").unwrap(), e);
    // A refused file leaves no output and no temporary file.
    let bad = out.join("evil.safetensors");
    assert!(convert_pth_to_safetensors(&dir.join("evil_zip.pth"), &bad, None, None).is_err());
    assert!(!bad.exists() && !out.join("evil.safetensors.tmp").exists());
}

#[test]
fn convert_validates_against_a_model_spec() {
    let Some((dir, _)) = fixtures() else { return };
    let sd = load_pth(&dir.join("nn_module_state.pth"), &PthOptions::default())
        .unwrap()
        .store;
    let mut spec: Vec<(String, Vec<usize>)> = sd
        .iter()
        .map(|(n, t)| (n.to_string(), t.shape.clone()))
        .collect();
    sd.validate(&spec, &[]).unwrap();
    spec.retain(|(n, _)| n != "1.running_var");
    spec.push(("2.weight".into(), vec![4]));
    spec[0].1 = vec![4, 3, 5, 5];
    let e = sd
        .validate(&spec, &["*num_batches_tracked"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("1 missing, 1 unexpected, 1 wrong shape"), "{e}");
    assert!(
        e.contains("missing: 2.weight") && e.contains("unexpected: 1.running_var"),
        "{e}"
    );
    assert!(
        e.contains("0.weight: checkpoint [4, 3, 3, 3], model expects [4, 3, 5, 5]"),
        "{e}"
    );
}

#[test]
fn convert_args_parse_like_the_cli() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ConvertArgs,
    }
    let c = Cli::try_parse_from([
        "x",
        "in.pth",
        "-o",
        "out.safetensors",
        "--key",
        "params_ema",
        "--dtype",
        "bf16",
    ])
    .unwrap();
    assert_eq!(c.args.input, PathBuf::from("in.pth"));
    assert_eq!(c.args.output, Some(PathBuf::from("out.safetensors")));
    assert_eq!(c.args.key.as_deref(), Some("params_ema"));
    assert!(Cli::try_parse_from(["x", "in.pth", "--dtype", "f8"]).is_err());
    let Some((dir, _)) = fixtures() else { return };
    let out = temp_dir("convert-cli");
    let c = Cli::try_parse_from([
        "x",
        dir.join("half_legacy.pth").to_str().unwrap(),
        "-o",
        out.join("h.safetensors").to_str().unwrap(),
    ])
    .unwrap();
    let r = dynface::cli::weights::run_convert(&c.args).unwrap();
    assert_eq!(r.tensors, 2);
    assert_eq!(
        load_safetensors(&out.join("h.safetensors"))
            .unwrap()
            .get("b")
            .unwrap()
            .dtype(),
        WeightType::BF16
    );
}

// ---------------------------------------------------------------- download

fn payload(seed: u64, n: usize) -> Vec<u8> {
    let mut rng = random::rng(seed);
    (0..n).map(|_| rng.gen()).collect()
}

fn entry(url: String, body: &[u8]) -> ManifestEntry {
    let sha = Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    ManifestEntry {
        name: "test".into(),
        file: "file.bin".into(),
        url,
        size: body.len() as u64,
        sha256: sha,
        convert_to: None,
        key: None,
    }
}

fn opts() -> DownloadOptions {
    DownloadOptions {
        progress: false,
        convert: true,
        timeout: Duration::from_secs(5),
        env_proxy: false,
    }
}

#[test]
fn download_success_then_already_present() {
    let body = payload(31, 200_000);
    let dir = temp_dir("dl-ok");
    let srv = http_server::serve(body.clone(), http_server::Mode::Normal, 1);
    let e = entry(srv.url("/file.bin"), &body);
    let o = download_entry(&e, &dir, &opts()).unwrap();
    assert_eq!(o.fetched, Fetched::Downloaded);
    assert_eq!(std::fs::read(&o.path).unwrap(), body);
    assert!(!part_path(&o.path).exists());
    assert_eq!(srv.join(), vec![None]);
    // Present with the right checksum: no network needed at all.
    let offline = ManifestEntry {
        url: http_server::dead_url(),
        ..e
    };
    assert_eq!(
        download_entry(&offline, &dir, &opts()).unwrap().fetched,
        Fetched::AlreadyPresent
    );
}

#[test]
fn download_follows_redirects() {
    let body = payload(32, 5_000);
    let dir = temp_dir("dl-redir");
    let srv = http_server::serve(body.clone(), http_server::Mode::Normal, 2);
    let e = entry(srv.url("/redirect/file.bin"), &body);
    let o = download_entry(&e, &dir, &opts()).unwrap();
    assert_eq!(std::fs::read(&o.path).unwrap(), body);
    assert_eq!(srv.join().len(), 2);
}

#[test]
fn download_resume_survives_a_redirect() {
    // Release URLs redirect to a CDN: the Range header must reach the final host.
    let body = payload(38, 90_000);
    let dir = temp_dir("dl-redir-resume");
    std::fs::write(dir.join("file.bin.part"), &body[..33_333]).unwrap();
    let srv = http_server::serve(body.clone(), http_server::Mode::Normal, 2);
    let e = entry(srv.url("/redirect/file.bin"), &body);
    let o = download_entry(&e, &dir, &opts()).unwrap();
    assert_eq!(
        o.fetched,
        Fetched::Resumed {
            resumed_from: 33_333
        }
    );
    assert_eq!(std::fs::read(&o.path).unwrap(), body);
    let r = Some("bytes=33333-".to_string());
    assert_eq!(srv.join(), vec![r.clone(), r]);
}

#[test]
fn download_stalled_server_times_out_and_keeps_partial() {
    let body = payload(39, 70_000);
    let dir = temp_dir("dl-stall");
    let srv = http_server::serve(body.clone(), http_server::Mode::StallAfter(20_000), 1);
    let e = entry(srv.url("/file.bin"), &body);
    let quick = DownloadOptions {
        timeout: Duration::from_millis(700),
        ..opts()
    };
    let err = download_entry(&e, &dir, &quick).unwrap_err().to_string();
    assert!(
        err.contains("partial data kept") && err.contains(&e.url),
        "{err}"
    );
    let kept = std::fs::read(dir.join("file.bin.part")).unwrap();
    assert!(kept.len() <= 20_000 && kept[..] == body[..kept.len()]);
    assert!(!dir.join("file.bin").exists());
    srv.join();
}

#[test]
fn download_resumes_a_partial_file() {
    let body = payload(33, 150_000);
    let dir = temp_dir("dl-resume");
    std::fs::write(dir.join("file.bin.part"), &body[..60_000]).unwrap();
    let srv = http_server::serve(body.clone(), http_server::Mode::Normal, 1);
    let e = entry(srv.url("/file.bin"), &body);
    let o = download_entry(&e, &dir, &opts()).unwrap();
    assert_eq!(
        o.fetched,
        Fetched::Resumed {
            resumed_from: 60_000
        }
    );
    assert_eq!(std::fs::read(&o.path).unwrap(), body);
    assert_eq!(srv.join(), vec![Some("bytes=60000-".to_string())]);
}

#[test]
fn download_restarts_when_range_is_ignored() {
    let body = payload(34, 80_000);
    let dir = temp_dir("dl-norange");
    // A stale partial that is NOT a prefix: a restart must overwrite it.
    std::fs::write(dir.join("file.bin.part"), vec![0xAA; 30_000]).unwrap();
    let srv = http_server::serve(body.clone(), http_server::Mode::IgnoreRange, 1);
    let e = entry(srv.url("/file.bin"), &body);
    let o = download_entry(&e, &dir, &opts()).unwrap();
    assert_eq!(o.fetched, Fetched::Downloaded);
    assert_eq!(std::fs::read(&o.path).unwrap(), body);
    srv.join();
}

#[test]
fn download_wrong_checksum_is_not_renamed() {
    let body = payload(35, 40_000);
    let dir = temp_dir("dl-sha");
    let srv = http_server::serve(body.clone(), http_server::Mode::Normal, 1);
    let mut e = entry(srv.url("/file.bin"), &body);
    e.sha256 = "0".repeat(64);
    let err = download_entry(&e, &dir, &opts()).unwrap_err().to_string();
    assert!(
        err.contains("does not match") && err.contains(&e.url),
        "{err}"
    );
    assert!(!dir.join("file.bin").exists());
    srv.join();
    // A file placed by hand with the wrong content is reported, not replaced.
    std::fs::write(dir.join("file.bin"), &body[..100]).unwrap();
    let err = download_entry(&e, &dir, &opts()).unwrap_err().to_string();
    assert!(err.contains("left untouched"), "{err}");
    assert_eq!(std::fs::read(dir.join("file.bin")).unwrap(), &body[..100]);
}

#[test]
fn download_truncated_transfer_keeps_partial_for_resume() {
    let body = payload(36, 120_000);
    let dir = temp_dir("dl-trunc");
    let srv = http_server::serve(body.clone(), http_server::Mode::TruncateAfter(50_000), 1);
    let e = entry(srv.url("/file.bin"), &body);
    let err = download_entry(&e, &dir, &opts()).unwrap_err().to_string();
    assert!(
        err.contains("partial data kept") && err.contains("file.bin.part"),
        "{err}"
    );
    assert!(!dir.join("file.bin").exists());
    let kept = std::fs::read(dir.join("file.bin.part")).unwrap();
    println!("truncated transfer kept {} bytes", kept.len());
    assert!(
        kept.len() <= 50_000 && kept[..] == body[..kept.len()],
        "kept {} bytes",
        kept.len()
    );
    srv.join();
    // The next attempt continues where the last one stopped.
    let srv = http_server::serve(body.clone(), http_server::Mode::Normal, 1);
    let e = entry(srv.url("/file.bin"), &body);
    let o = download_entry(&e, &dir, &opts()).unwrap();
    assert_eq!(std::fs::read(&o.path).unwrap(), body);
    let ranges = srv.join();
    if kept.is_empty() {
        assert_eq!(ranges, vec![None]);
    } else {
        assert_eq!(
            o.fetched,
            Fetched::Resumed {
                resumed_from: kept.len() as u64
            }
        );
        assert_eq!(ranges, vec![Some(format!("bytes={}-", kept.len()))]);
    }
}

#[test]
fn download_server_down_names_url_and_manual_path() {
    let body = payload(37, 1_000);
    let dir = temp_dir("dl-down");
    let e = entry(http_server::dead_url(), &body);
    let err = download_entry(&e, &dir, &opts()).unwrap_err().to_string();
    let manual = dir.join("file.bin");
    assert!(err.contains(&e.url), "{err}");
    assert!(
        err.contains(&format!("place it at {}", manual.display())),
        "{err}"
    );
}

#[test]
fn download_then_convert_to_safetensors() {
    let Some((fix, _)) = fixtures() else { return };
    let body = std::fs::read(fix.join("nn_module_state.pth")).unwrap();
    let dir = temp_dir("dl-convert");
    let srv = http_server::serve(body.clone(), http_server::Mode::Normal, 1);
    let mut e = entry(srv.url("/m.pth"), &body);
    e.file = "m.pth".into();
    e.convert_to = Some("m.safetensors".into());
    let o = download_entry(&e, &dir, &opts()).unwrap();
    let st = load_safetensors(o.converted.as_ref().unwrap()).unwrap();
    let direct = load_pth(&dir.join("m.pth"), &PthOptions::default())
        .unwrap()
        .store;
    assert_same(&direct, &st);
    srv.join();
}

#[test]
fn builtin_manifest_lists_the_public_checkpoints() {
    let m = dynface::weights::Manifest::builtin().unwrap();
    let iddpm = m.get("iddpm_ffhq512").unwrap();
    assert_eq!(iddpm.size, 639_362_581);
    assert_eq!(
        iddpm.sha256,
        "e16446b14cff4fedf1102ba67945fcced2074500a3fe8fd2bfad5d818928d1d0"
    );
    let swinir = m.get("general_face_ffhq512").unwrap();
    assert_eq!(swinir.size, 90_204_233);
    assert!(swinir.url.ends_with("/General_Face_ffhq512.pth"));
}

#[test]
fn run_download_with_a_custom_manifest() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: dynface::cli::weights::DownloadArgs,
    }
    let body = payload(40, 12_345);
    let dir = temp_dir("dl-run");
    let srv = http_server::serve(body.clone(), http_server::Mode::Normal, 1);
    let mut e = entry(srv.url("/file.bin"), &body);
    e.name = "tiny".into();
    let manifest = dynface::weights::Manifest { entries: vec![e] };
    let mpath = dir.join("manifest.json");
    std::fs::write(&mpath, serde_json::to_string(&manifest).unwrap()).unwrap();
    let out = dir.join("out");
    let cli = Cli::try_parse_from([
        "x",
        "tiny",
        "--dir",
        out.to_str().unwrap(),
        "--manifest",
        mpath.to_str().unwrap(),
    ])
    .unwrap();
    let got = dynface::cli::weights::run_download(&cli.args).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(std::fs::read(out.join("file.bin")).unwrap(), body);
    srv.join();
    let cli = Cli::try_parse_from(["x", "nope", "--manifest", mpath.to_str().unwrap()]).unwrap();
    let err = dynface::cli::weights::run_download(&cli.args)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no manifest entry `nope`; known: tiny"),
        "{err}"
    );
}
