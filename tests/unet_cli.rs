//! `info unet` and `debug unet` as library calls: the debug command on a golden fixture
//! (timesteps stored as int64, as a user's file would have them) and its error paths.

use dynface::cli::unet::{run_debug_unet, run_info_unet, DebugArgs, InfoArgs};
use dynface::models::unet::weights::{load_safetensors, save_safetensors};
use dynface::tensor::Tensor;
use safetensors::tensor::{Dtype, TensorView};
use std::path::{Path, PathBuf};

fn fixture() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/unet/difface_perlevel");
    if d.join("io.safetensors").is_file() {
        Some(d)
    } else {
        dynface::check::skip::skip(
            "unet_cli",
            dynface::check::skip::SkipReason::NoFixture,
            &format!("fixture {} missing", d.display()),
        );
        None
    }
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("dynface-unet-cli-{}-{name}", std::process::id()))
}

/// Writes x (f32), t (int64) and optionally the cotangent of the fixture to a new file.
fn write_input(fx: &Path, with_cot: bool, path: &Path) {
    let io = load_safetensors(&fx.join("io.safetensors")).unwrap();
    let t: Vec<u8> = io["t"]
        .data
        .iter()
        .flat_map(|&v| (v as i64).to_le_bytes())
        .collect();
    let x = bytemuck::cast_slice::<f32, u8>(&io["x"].data).to_vec();
    let c = bytemuck::cast_slice::<f32, u8>(&io["cotangent"].data).to_vec();
    let mut views = vec![
        (
            "x",
            TensorView::new(Dtype::F32, io["x"].shape.clone(), &x).unwrap(),
        ),
        (
            "t",
            TensorView::new(Dtype::I64, io["t"].shape.clone(), &t).unwrap(),
        ),
    ];
    if with_cot {
        views.push((
            "cotangent",
            TensorView::new(Dtype::F32, io["cotangent"].shape.clone(), &c).unwrap(),
        ));
    }
    safetensors::serialize_to_file(views, &None, path).unwrap();
}

fn args(fx: &Path, input: &Path, out: &Path) -> DebugArgs {
    DebugArgs {
        config: Some(fx.join("config.json")),
        weights: fx.join("weights.safetensors"),
        input: input.to_path_buf(),
        out: out.to_path_buf(),
        max_memory_gb: 20.0,
    }
}

#[test]
fn debug_unet_reproduces_the_golden() {
    let Some(fx) = fixture() else { return };
    let want = load_safetensors(&fx.join("io.safetensors")).unwrap();
    for with_cot in [true, false] {
        let input = tmp(&format!("in-{with_cot}.safetensors"));
        let out = tmp(&format!("out-{with_cot}.safetensors"));
        write_input(&fx, with_cot, &input);
        let rep = run_debug_unet(&args(&fx, &input, &out)).unwrap();
        let got = load_safetensors(&out).unwrap();
        std::fs::remove_file(&input).ok();
        std::fs::remove_file(&out).ok();
        assert_eq!(rep.with_grad, with_cot);
        assert_eq!(rep.out_shape, want["out"].shape);
        let e = got["out"].rel_err(&want["out"]);
        assert!(e < 1e-4, "out rel err {e}");
        if with_cot {
            let e = got["grad_x"].rel_err(&want["grad_x"]);
            assert!(e < 1e-4, "grad_x rel err {e}");
        } else {
            assert!(!got.contains_key("grad_x"));
        }
    }
}

#[test]
fn debug_unet_refuses_bad_weights_inputs_and_memory() {
    let Some(fx) = fixture() else { return };
    let input = tmp("in-bad.safetensors");
    let out = tmp("out-bad.safetensors");
    write_input(&fx, false, &input);

    // Plan above the memory limit: refused before allocating.
    let mut a = args(&fx, &input, &out);
    a.max_memory_gb = 1e-6;
    let e = format!("{:#}", run_debug_unet(&a).unwrap_err());
    assert!(e.contains("limit"), "{e}");

    // A weight file lacking a tensor names it.
    let mut w = load_safetensors(&fx.join("weights.safetensors")).unwrap();
    w.remove("middle_block.1.qkv.weight");
    let wpath = tmp("w-missing.safetensors");
    let refs: Vec<(&str, &Tensor<f32>)> = w.iter().map(|(k, v)| (k.as_str(), v)).collect();
    save_safetensors(&wpath, &refs).unwrap();
    let mut a = args(&fx, &input, &out);
    a.weights = wpath.clone();
    let e = format!("{:#}", run_debug_unet(&a).unwrap_err());
    std::fs::remove_file(&wpath).ok();
    assert!(e.contains("missing middle_block.1.qkv.weight"), "{e}");

    // An input file without `t`.
    let io = load_safetensors(&input).unwrap();
    let only_x = tmp("in-nox.safetensors");
    save_safetensors(&only_x, &[("x", &io["x"])]).unwrap();
    let e = format!(
        "{:#}",
        run_debug_unet(&args(&fx, &only_x, &out)).unwrap_err()
    );
    std::fs::remove_file(&only_x).ok();
    std::fs::remove_file(&input).ok();
    assert!(e.contains("no tensor named `t`"), "{e}");
    assert!(!out.exists());
}

#[test]
fn info_unet_reads_the_shipped_config() {
    let info = run_info_unet(&InfoArgs {
        config: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/unet_ffhq512.json")),
        size: Some(64),
        batch: 1,
    })
    .unwrap();
    assert_eq!(info.tensors, 630);
    assert_eq!(info.parameters, 159_788_454);
    // Convolutions scale with pixels: at 64² they are 1/64 of the 512² figure (≈186 G).
    let conv = info.macs_forward.conv as f64;
    assert!((2.85e9..2.98e9).contains(&conv), "{conv}");
    let text = info.to_string();
    assert!(
        text.contains("159788454") && text.contains("GMAC"),
        "{text}"
    );
}
