//! The weight-gradient cases: every layer with parameters, with its weights as `Const`
//! nodes named like checkpoint keys, and the trainable networks (SDE in both batch-norm
//! modes, DGSA, a tiny SwinIR) whole. Checked by [`super::weight_vjp::check_weights`].

use super::cases::{Draw, InputSpec};
use super::vjp::TOL;
use super::weight_vjp::WeightCase;
use crate::graph::{Graph, NodeId, Result as GResult};
use crate::models::dgsa::{self, DgsaConfig};
use crate::models::sde::{self, SdeConfig};
use crate::models::swinir::{self, SwinIRConfig};
use std::sync::Arc;

/// Smooth cases take the op checker's step; piecewise-linear networks a smaller one (see
/// [`super::weight_vjp`]).
const H_SMOOTH: f64 = 1e-3;
const H_KINKED: f64 = 1e-5;
/// SwinIR's shift-mask and second-block bias gradients are ~10⁴× smaller than its conv
/// gradients, and its depth amplifies rounding: at h = 10⁻⁵ their per-element error is
/// 1.9·10⁻⁶ (measured; everything else ≤ 2·10⁻⁷), the stencil's noise, not a bug (a
/// wrong term is off by 10⁻³ or more). A larger step crosses the LeakyReLU kinks of its
/// 64-channel tail (3·10⁻³ at h = 10⁻⁴, measured), so its tolerance is 10⁻⁵ instead.
const TOL_SWINIR: f64 = 1e-5;

fn input(name: &str, shape: &[usize], draw: Draw, grad: bool) -> InputSpec {
    InputSpec {
        name: name.into(),
        shape: shape.to_vec(),
        draw,
        grad,
    }
}
fn x_in(shape: &[usize]) -> InputSpec {
    input("x", shape, Draw::Normal(1.0), true)
}

fn wcase(
    name: &str,
    inputs: Vec<InputSpec>,
    h: f64,
    build: impl Fn(&mut Graph, &[NodeId]) -> GResult<NodeId> + Send + Sync + 'static,
) -> WeightCase {
    WeightCase {
        name: name.into(),
        inputs,
        build: Arc::new(build),
        h,
        tol: TOL,
    }
}

/// The tiny SDE of the checks: three conv layers (one stride 2), a 6-wide head.
pub fn tiny_sde() -> SdeConfig {
    SdeConfig {
        layers: vec![(4, 1), (6, 2), (8, 1)],
        hidden: 6,
        ..SdeConfig::default()
    }
}

fn tiny_swinir() -> SwinIRConfig {
    SwinIRConfig {
        in_chans: 3,
        embed_dim: 4,
        depths: vec![2],
        num_heads: vec![2],
        window_size: 2,
        mlp_ratio: 2.0,
        upscale: 2,
        unshuffle: true,
        img_range: 1.0,
        upsampler: "nearest+conv".into(),
        patch_norm: true,
    }
}

pub fn all() -> Vec<WeightCase> {
    let mut v = vec![
        wcase(
            "conv2d 3→4 k3 s1 p1 + bias",
            vec![x_in(&[2, 3, 5, 5])],
            H_SMOOTH,
            |g, i| {
                let w = g.constant("conv.weight", &[4, 3, 3, 3]);
                let b = g.constant("conv.bias", &[4]);
                g.conv2d(i[0], w, Some(b), 1, 1, 1)
            },
        ),
        wcase(
            "conv2d 4→6 k3 s2 groups 2 + bias",
            vec![x_in(&[2, 4, 6, 6])],
            H_SMOOTH,
            |g, i| {
                let w = g.constant("conv.weight", &[6, 2, 3, 3]);
                let b = g.constant("conv.bias", &[6]);
                g.conv2d(i[0], w, Some(b), 2, 1, 2)
            },
        ),
        wcase(
            "linear [3,5]→[3,4]",
            vec![x_in(&[3, 5])],
            H_SMOOTH,
            |g, i| {
                let w = g.constant("fc.weight", &[4, 5]);
                let b = g.constant("fc.bias", &[4]);
                g.linear(i[0], w, Some(b))
            },
        ),
        wcase(
            "linear [2,3,5]→[2,3,4]",
            vec![x_in(&[2, 3, 5])],
            H_SMOOTH,
            |g, i| {
                let w = g.constant("fc.weight", &[4, 5]);
                let b = g.constant("fc.bias", &[4]);
                g.linear(i[0], w, Some(b))
            },
        ),
        wcase(
            "group_norm 4 ch / 2 groups",
            vec![x_in(&[2, 4, 3, 3])],
            H_SMOOTH,
            |g, i| {
                let gm = g.constant("norm.weight", &[4]);
                let bt = g.constant("norm.bias", &[4]);
                g.group_norm(i[0], gm, bt, 2, 1e-5)
            },
        ),
        wcase(
            "group_norm_silu + scale-shift",
            vec![
                input("x", &[2, 4, 3, 3], Draw::Normal(2.0), true),
                input("scale", &[2, 4], Draw::Normal(0.5), true),
                input("shift", &[2, 4], Draw::Normal(0.5), true),
            ],
            H_SMOOTH,
            |g, i| {
                let gm = g.constant("norm.weight", &[4]);
                let bt = g.constant("norm.bias", &[4]);
                g.group_norm_silu(i[0], gm, bt, Some((i[1], i[2])), 2, 1e-5)
            },
        ),
        wcase(
            "layer_norm [3,4,6]",
            vec![x_in(&[3, 4, 6])],
            H_SMOOTH,
            |g, i| {
                let gm = g.constant("ln.weight", &[6]);
                let bt = g.constant("ln.bias", &[6]);
                g.layer_norm(i[0], gm, bt, 1e-5)
            },
        ),
        wcase(
            "batch_norm eval (running statistics)",
            vec![x_in(&[2, 3, 4, 4])],
            H_SMOOTH,
            |g, i| {
                let p: Vec<NodeId> = ["weight", "bias", "running_mean", "running_var"]
                    .iter()
                    .map(|k| g.constant(&format!("bn.{k}"), &[3]))
                    .collect();
                g.batch_norm(i[0], p[0], p[1], p[2], p[3], 1e-5)
            },
        ),
        wcase(
            "batch_norm train (batch statistics)",
            vec![x_in(&[3, 3, 4, 4])],
            H_SMOOTH,
            |g, i| {
                let gm = g.constant("bn.weight", &[3]);
                let bt = g.constant("bn.bias", &[3]);
                Ok(g.batch_norm_train(i[0], gm, bt, 1e-5)?.y)
            },
        ),
        wcase(
            "attention block: q/k/v/proj linears, 2 heads, bias table (no k bias)",
            vec![x_in(&[2, 5, 8])],
            H_SMOOTH,
            |g, i| {
                let (b, t, c, heads) = (2, 5, 8, 2);
                let d = c / heads;
                // No key bias: it adds q·b_k to a whole softmax row, so its gradient is
                // exactly zero and a relative comparison would measure only noise.
                let heads_of = |g: &mut Graph, key: &str, with_bias: bool| -> GResult<NodeId> {
                    let w = g.constant(&format!("{key}.weight"), &[c, c]);
                    let bias = with_bias.then(|| g.constant(&format!("{key}.bias"), &[c]));
                    let y = g.linear(i[0], w, bias)?;
                    let y = g.reshape(y, &[b, t, heads, d])?;
                    g.permute(y, &[0, 2, 1, 3])
                };
                let q = heads_of(g, "attn.q", true)?;
                let k = heads_of(g, "attn.k", false)?;
                let v = heads_of(g, "attn.v", true)?;
                let rel = g.constant("attn.relative_position_bias", &[heads, t, t]);
                let o = g.attention(q, k, v, 1.0 / (d as f32).sqrt(), Some(rel))?;
                let o = g.permute(o, &[0, 2, 1, 3])?;
                let o = g.reshape(o, &[b, t, c])?;
                let w = g.constant("attn.proj.weight", &[c, c]);
                let bias = g.constant("attn.proj.bias", &[c]);
                g.linear(o, w, Some(bias))
            },
        ),
    ];
    let cfg = tiny_sde();
    let c2 = cfg.clone();
    v.push(wcase(
        "SDE (tiny) eval mode",
        vec![input("x", &[2, 3, 8, 8], Draw::Uniform(0.0, 1.0), true)],
        H_KINKED,
        move |g, i| sde::build(g, &c2, i[0], "sde."),
    ));
    v.push(wcase(
        "SDE (tiny) train mode",
        vec![input("x", &[3, 3, 8, 8], Draw::Uniform(0.0, 1.0), true)],
        H_KINKED,
        move |g, i| Ok(sde::build_train(g, &cfg, i[0], "sde.")?.0),
    ));
    let dcfg = DgsaConfig {
        width: 4,
        emb_dim: 4,
        elu_alpha: 1.0,
    };
    v.push(wcase(
        "DGSA (tiny), t not differentiated",
        vec![
            input("y", &[2, 3, 5, 5], Draw::Normal(0.5), true),
            input("x0", &[2, 3, 5, 5], Draw::Normal(0.5), true),
            input("t", &[2], Draw::Uniform(0.0, 1000.0), false),
        ],
        // The final clamp to [0, 1] is a kink like LeakyReLU's.
        H_KINKED,
        move |g, i| dgsa::build(g, &dcfg, i[0], i[1], i[2], "dgsa."),
    ));
    let scfg = tiny_swinir();
    let mut swin = wcase(
        "SwinIR (tiny, shifted windows)",
        vec![input("x", &[1, 3, 8, 8], Draw::Uniform(0.0, 1.0), true)],
        H_KINKED,
        move |g, i| swinir::build(g, &scfg, i[0]),
    );
    swin.tol = TOL_SWINIR;
    v.push(swin);
    v
}
