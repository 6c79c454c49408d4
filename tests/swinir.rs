use dynface::backend::cpu::CpuBackend;
use dynface::exec::eval;
use dynface::graph::Graph;
use dynface::models::swinir::{self, SwinIRConfig};
use dynface::models::WeightMap;
use dynface::tensor::{random, Tensor};

#[test]
fn difface_restorer_has_the_official_tensor_and_parameter_counts() {
    let cfg = SwinIRConfig::difface_restorer();
    let spec = swinir::checkpoint_spec(&cfg, 512, 512);
    assert_eq!(spec.len(), 732, "tensor count of General_Face_ffhq512.pth");
    assert_eq!(swinir::parameter_count(&cfg), 15_792_587);
}

#[test]
fn shift_mask_separates_regions() {
    // 8×8 map, window 4, shift 2: the last window mixes three regions per axis.
    let m = swinir::shift_mask(8, 8, 4, 2);
    assert_eq!(m.shape, vec![4, 16, 16]);
    // The first window lies in region (0,0) only: no masking.
    assert!(m.data[..256].iter().all(|&v| v == 0.0));
    // The last window: positions (0,0) and (3,3) are in different regions.
    let last = &m.data[3 * 256..];
    assert_eq!(last[15], -100.0);
    assert_eq!(last[0], 0.0);
}

fn tiny() -> SwinIRConfig {
    SwinIRConfig {
        in_chans: 3,
        embed_dim: 12,
        depths: vec![2, 2],
        num_heads: vec![2, 3],
        window_size: 4,
        mlp_ratio: 2.0,
        upscale: 2,
        unshuffle: true,
        img_range: 1.0,
        upsampler: "nearest+conv".into(),
        patch_norm: true,
    }
}

#[test]
fn tiny_swinir_runs_and_keeps_the_input_size() {
    let cfg = tiny();
    let mut g = Graph::new();
    let x = g.input("x", &[1, 3, 16, 16]);
    let y = swinir::build(&mut g, &cfg, x).unwrap();
    assert_eq!(g.shape(y), &[1, 3, 16, 16]);
    let mut rng = random::rng(3);
    let mut w = WeightMap::new();
    for (k, s) in swinir::checkpoint_spec(&cfg, 16, 16) {
        if k.ends_with("relative_position_index") || k.ends_with("attn_mask") {
            continue;
        }
        w.insert(k, random::normal(&mut rng, &s, 0.2));
    }
    swinir::derive_weights(&cfg, &mut w, 16, 16).unwrap();
    w.extend(swinir::builtin_constants());
    let xv: Tensor<f32> = random::uniform(&mut rng, &[1, 3, 16, 16], 0.0, 1.0);
    let out = eval(CpuBackend::<f32>::new(), &g, &[y], &[("x", &xv)], &w).unwrap();
    assert!(out[0].data.iter().all(|v| v.is_finite()));
    assert!(out[0].norm() > 0.0);
}
