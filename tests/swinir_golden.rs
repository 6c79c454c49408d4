//! SwinIR block math against basicsr 1.4.2 (fixtures from tools/reference/gen_swinir_golden.py,
//! computed in float64): forward and input gradient within 1e-4 relative error.

use dynface::backend::cpu::CpuBackend;
use dynface::exec::eval;
use dynface::graph::{autodiff::grad, Graph, NodeId};
use dynface::models::swinir::{self, SwinIRConfig};
use dynface::models::WeightMap;
use dynface::tensor::Tensor;
use dynface::weights::load_safetensors;
use std::path::{Path, PathBuf};

const TOL: f64 = 1e-4;

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/swinir")
        .join(name)
}

fn load(path: &Path, prefix: &str) -> WeightMap {
    let store = load_safetensors(path).unwrap();
    let mut m = WeightMap::new();
    for (k, t) in store.iter() {
        let v = match t.to_f32(k) {
            Ok(v) => v,
            // int64 buffers (relative_position_index) as f32 for the index check.
            Err(_) => {
                let ints = t.to_i64(k).unwrap();
                Tensor::new(t.shape.clone(), ints.iter().map(|&i| i as f32).collect())
            }
        };
        m.insert(format!("{prefix}{k}"), v);
    }
    m
}

fn config(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir(name).join("config.json")).unwrap()).unwrap()
}

/// Inserts one block's `[heads, N, N]` bias from its table, checking the stored index.
fn derive_bias(w: &mut WeightMap, p: &str, ws: usize, heads: usize) {
    let n = ws * ws;
    let idx = swinir::relative_position_index(ws);
    let stored = &w[&format!("{p}relative_position_index")];
    assert!(
        stored.data.iter().zip(&idx).all(|(&a, &b)| a as usize == b),
        "index differs"
    );
    let table = w[&format!("{p}relative_position_bias_table")].clone();
    let mut bias = vec![0.0f32; heads * n * n];
    for (ij, &t) in idx.iter().enumerate() {
        for h in 0..heads {
            bias[h * n * n + ij] = table.data[t * heads + h];
        }
    }
    w.insert(
        format!("{p}relative_position_bias"),
        Tensor::new(vec![heads, n, n], bias),
    );
}

/// Runs `build` on the fixture's x, checks `out` and the VJP with `cotangent`.
fn check(
    name: &str,
    w: &WeightMap,
    out_key: &str,
    grad_key: &str,
    build: impl Fn(&mut Graph, NodeId) -> NodeId,
) {
    let io = load(&dir(name).join("io.safetensors"), "");
    let x = &io["x"];
    let mut g = Graph::new();
    let xn = g.input("x", &x.shape);
    let y = build(&mut g, xn);
    let ct = g.input("cotangent", g.shape(y).to_vec().as_slice());
    let gx = grad(&mut g, &[(y, ct)], &[xn]).unwrap()[0];
    let out = eval(
        CpuBackend::<f32>::new(),
        &g,
        &[y, gx],
        &[("x", x), ("cotangent", &io["cotangent"])],
        w,
    )
    .unwrap();
    let e_out = out[0].rel_err(&io[out_key]);
    let e_grad = out[1].rel_err(&io[grad_key]);
    println!("{name}: out rel err {e_out:.2e}, grad_x rel err {e_grad:.2e}");
    assert!(e_out < TOL, "{name}: output rel err {e_out}");
    assert!(e_grad < TOL, "{name}: input gradient rel err {e_grad}");
}

fn block_cfg(dim: usize, ws: usize, mlp: f32) -> SwinIRConfig {
    SwinIRConfig {
        in_chans: 3,
        embed_dim: dim,
        depths: vec![2],
        num_heads: vec![1],
        window_size: ws,
        mlp_ratio: mlp,
        upscale: 1,
        unshuffle: false,
        img_range: 1.0,
        upsampler: String::new(),
        patch_norm: true,
    }
}

#[test]
fn window_attention_matches_basicsr() {
    let c = config("window_attention");
    let (dim, heads, ws) = (
        c["dim"].as_u64().unwrap() as usize,
        c["num_heads"].as_u64().unwrap() as usize,
        c["window_size"].as_u64().unwrap() as usize,
    );
    let mut w = load(
        &dir("window_attention").join("weights.safetensors"),
        "attn.",
    );
    derive_bias(&mut w, "attn.", ws, heads);
    let io = load(&dir("window_attention").join("io.safetensors"), "");
    w.insert("mask".into(), io["mask"].clone());
    let n_win = io["mask"].shape[0];
    check("window_attention", &w, "out", "grad_x", |g, x| {
        let m = g.constant("mask", &[n_win, ws * ws, ws * ws]);
        swinir::window_attention(g, x, "attn", dim, heads, Some(m), n_win).unwrap()
    });
    check(
        "window_attention",
        &w,
        "out_nomask",
        "grad_x_nomask",
        |g, x| swinir::window_attention(g, x, "attn", dim, heads, None, n_win).unwrap(),
    );
}

fn block_case(name: &str) {
    let c = config(name);
    let dim = c["dim"].as_u64().unwrap() as usize;
    let heads = c["num_heads"].as_u64().unwrap() as usize;
    let ws = c["window_size"].as_u64().unwrap() as usize;
    let shift = c["shift_size"].as_u64().unwrap() as usize;
    let res: Vec<usize> = c["input_resolution"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let cfg = block_cfg(dim, ws, c["mlp_ratio"].as_f64().unwrap() as f32);
    let mut w = load(&dir(name).join("weights.safetensors"), "blk.");
    derive_bias(&mut w, "blk.attn.", ws, heads);
    if shift > 0 {
        // Our mask is recomputed from the geometry; it must equal basicsr's buffer.
        let ours = swinir::shift_mask(res[0], res[1], ws, shift);
        assert_eq!(
            ours.data, w["blk.attn_mask"].data,
            "shift mask differs from basicsr"
        );
    }
    check(name, &w, "out", "grad_x", |g, x| {
        swinir::swin_block(g, x, "blk", &cfg, heads, res[0], res[1], shift).unwrap()
    });
}

#[test]
fn shifted_block_matches_basicsr() {
    block_case("block_shift");
}

#[test]
fn unshifted_block_matches_basicsr() {
    block_case("block_noshift");
}

#[test]
fn residual_swin_stage_matches_basicsr() {
    let c = config("rstb");
    let dim = c["dim"].as_u64().unwrap() as usize;
    let heads = c["num_heads"].as_u64().unwrap() as usize;
    let ws = c["window_size"].as_u64().unwrap() as usize;
    let depth = c["depth"].as_u64().unwrap() as usize;
    let res: Vec<usize> = c["input_resolution"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let mut cfg = block_cfg(dim, ws, c["mlp_ratio"].as_f64().unwrap() as f32);
    cfg.depths = vec![depth];
    cfg.num_heads = vec![heads];
    let mut w = load(&dir("rstb").join("weights.safetensors"), "layers.0.");
    swinir::derive_weights(&cfg, &mut w, res[0], res[1]).unwrap();
    check("rstb", &w, "out", "grad_x", |g, x| {
        swinir::rstb(g, x, 0, &cfg, res[0], res[1]).unwrap()
    });
}

fn whole(name: &str) {
    let c = config(name);
    let list = |k: &str| -> Vec<usize> {
        c[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect()
    };
    let cfg = SwinIRConfig {
        in_chans: c["in_chans"].as_u64().unwrap() as usize,
        embed_dim: c["embed_dim"].as_u64().unwrap() as usize,
        depths: list("depths"),
        num_heads: list("num_heads"),
        window_size: c["window_size"].as_u64().unwrap() as usize,
        mlp_ratio: c["mlp_ratio"].as_f64().unwrap() as f32,
        upscale: c["upscale"].as_u64().unwrap() as usize,
        unshuffle: false,
        img_range: c["img_range"].as_f64().unwrap() as f32,
        upsampler: c["upsampler"].as_str().unwrap().to_string(),
        patch_norm: c["patch_norm"].as_bool().unwrap(),
    };
    let io = load(&dir(name).join("io.safetensors"), "");
    let (h, wd) = (io["x"].shape[2], io["x"].shape[3]);
    let mut w = load(&dir(name).join("weights.safetensors"), "");
    swinir::derive_weights(&cfg, &mut w, h, wd).unwrap();
    w.extend(swinir::builtin_constants());
    check(name, &w, "out", "grad_x", |g, x| {
        swinir::build(g, &cfg, x).unwrap()
    });
}

#[test]
fn whole_tiny_swinir_without_upsampler_matches_basicsr() {
    whole("swinir_denoise");
}

#[test]
fn whole_tiny_swinir_with_nearest_conv_tail_matches_basicsr() {
    whole("swinir_nearest_conv");
}
