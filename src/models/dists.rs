//! DISTS (Ding, Ma, Wang, Simoncelli 2020, "Image quality assessment: unifying structure and
//! texture similarity"), the perceptual term of DGSA's loss (METHOD.md Eq. 24), as the
//! `DISTS-pytorch` package computes it:
//!
//! - images on [0, 1], normalised by ImageNet's mean and standard deviation;
//! - VGG16's convolutions (torchvision's `features.N` keys, ReLU after each) in five stages,
//!   with each max pooling replaced by an L2 pooling: `sqrt(h ⊛ x² + 1e-12)`, a depthwise 3×3
//!   Hann window (`hanning(5)[1:-1]`, outer product, normalised) at stride 2, padding 1;
//! - six feature sets: the raw input (3 channels, not normalised) and the last ReLU of each
//!   stage (64, 128, 256, 512, 512 channels);
//! - per channel, over the spatial positions: the structure term
//!   `S1 = (2·μx·μy + c1) / (μx² + μy² + c1)` and the texture term
//!   `S2 = (2·σxy + c2) / (σx² + σy² + c2)` (biased moments, c1 = c2 = 1e-6);
//! - score = 1 − Σ (α·S1 + β·S2) / (Σα + Σβ) per image, with the learned α, β (1475 each).
//!
//! The VGG weights are constants named `{prefix}features.N.weight/bias`, α and β
//! `{prefix}alpha` / `{prefix}beta` (`[1, 1475, 1, 1]`, the package's `weights.pt`), and the
//! fixed tensors of [`builtin_constants`] (window, mean, std) under their own names.

use crate::graph::{Graph, NodeId, Result};
use crate::tensor::Tensor;

/// Channels of the six feature sets (input, then the five VGG stages).
pub const CHANNELS: [usize; 6] = [3, 64, 128, 256, 512, 512];
/// Σ CHANNELS: the length of α and of β.
pub const WEIGHTS_LEN: usize = 1475;
/// torchvision `features` index and output channels of each 3×3 convolution, per stage
/// (the indices in between are the ReLUs and the pools DISTS replaces).
pub const STAGES: [&[(usize, usize)]; 5] = [
    &[(0, 64), (2, 64)],
    &[(5, 128), (7, 128)],
    &[(10, 256), (12, 256), (14, 256)],
    &[(17, 512), (19, 512), (21, 512)],
    &[(24, 512), (26, 512), (28, 512)],
];
pub const ALPHA: &str = "alpha";
pub const BETA: &str = "beta";
/// Names of the fixed tensors (after the prefix).
pub const WINDOW: &str = "l2pool.window";
pub const MEAN: &str = "imagenet.mean";
pub const STD: &str = "imagenet.std";

const C1: f32 = 1e-6;
const C2: f32 = 1e-6;
const POOL_EPS: f32 = 1e-12;

/// The VGG16 keys DISTS reads, with their shapes (torchvision's `vgg16` state dict holds
/// these plus `classifier.*`, which DISTS does not use).
pub fn vgg_spec() -> Vec<(String, Vec<usize>)> {
    let mut v = vec![];
    let mut c = 3;
    for stage in STAGES {
        for &(i, o) in stage {
            v.push((format!("features.{i}.weight"), vec![o, c, 3, 3]));
            v.push((format!("features.{i}.bias"), vec![o]));
            c = o;
        }
    }
    v
}

/// α and β as `weights.pt` holds them.
pub fn alpha_beta_spec() -> Vec<(String, Vec<usize>)> {
    [ALPHA, BETA]
        .iter()
        .map(|k| (k.to_string(), vec![1, WEIGHTS_LEN, 1, 1]))
        .collect()
}

/// The window and the normalisation, as f32 values exactly as the package's f32 buffers
/// hold them (0.0625 / 0.125 / 0.25 are exact; the mean and std are the f32 roundings).
pub fn builtin_constants() -> Vec<(String, Tensor<f32>)> {
    let a = [0.5f32, 1.0, 0.5];
    let mut w = vec![0f32; 9];
    for i in 0..3 {
        for j in 0..3 {
            w[i * 3 + j] = a[i] * a[j] / 4.0;
        }
    }
    vec![
        (WINDOW.into(), Tensor::new(vec![1, 1, 3, 3], w)),
        (
            MEAN.into(),
            Tensor::new(vec![1, 3, 1, 1], vec![0.485, 0.456, 0.406]),
        ),
        (
            STD.into(),
            Tensor::new(vec![1, 3, 1, 1], vec![0.229, 0.224, 0.225]),
        ),
    ]
}

/// `sqrt(window ⊛ x² + 1e-12)` per channel, stride 2: the same 3×3 window for every
/// channel, so the channels are folded into the batch and one `[1, 1, 3, 3]` filter serves.
fn l2_pool(g: &mut Graph, x: NodeId, window: NodeId) -> Result<NodeId> {
    let s = g.shape(x).to_vec();
    let sq = g.square(x)?;
    let flat = g.reshape(sq, &[s[0] * s[1], 1, s[2], s[3]])?;
    let p = g.conv2d(flat, window, None, 2, 1, 1)?;
    let ps = g.shape(p).to_vec();
    let p = g.reshape(p, &[s[0], s[1], ps[2], ps[3]])?;
    let p = g.affine(p, 1.0, POOL_EPS)?;
    g.sqrt(p)
}

/// The constants one DISTS reads, created once and shared by both images' feature passes
/// (so the 59 MB of VGG weights are bound and stored once).
pub struct Vgg {
    mean: NodeId,
    std: NodeId,
    window: NodeId,
    /// (weight, bias) of each convolution, in [`STAGES`] order.
    convs: Vec<(NodeId, NodeId)>,
}

impl Vgg {
    pub fn constants(g: &mut Graph, prefix: &str) -> Vgg {
        let k = |s: &str| format!("{prefix}{s}");
        let mean = g.constant(&k(MEAN), &[1, 3, 1, 1]);
        let std = g.constant(&k(STD), &[1, 3, 1, 1]);
        let window = g.constant(&k(WINDOW), &[1, 1, 3, 3]);
        let convs = vgg_spec()
            .chunks(2)
            .map(|wb| {
                (
                    g.constant(&k(&wb[0].0), &wb[0].1),
                    g.constant(&k(&wb[1].0), &wb[1].1),
                )
            })
            .collect();
        Vgg {
            mean,
            std,
            window,
            convs,
        }
    }

    /// The six feature sets of `x` `[B, 3, H, W]` on [0, 1].
    pub fn features(&self, g: &mut Graph, x: NodeId) -> Result<Vec<NodeId>> {
        let h = g.sub(x, self.mean)?;
        let mut h = g.div(h, self.std)?;
        let mut out = vec![x];
        let mut convs = self.convs.iter();
        for (si, stage) in STAGES.iter().enumerate() {
            h = g.scope(&format!("stage{}", si + 1), |g| -> Result<NodeId> {
                if si > 0 {
                    h = l2_pool(g, h, self.window)?;
                }
                for _ in stage.iter() {
                    let &(w, b) = convs.next().expect("one (weight, bias) per convolution");
                    h = g.conv2d(h, w, Some(b), 1, 1, 1)?;
                    h = g.leaky_relu(h, 0.0)?;
                }
                Ok(h)
            })?;
            out.push(h);
        }
        Ok(out)
    }
}

/// `[B, C, 1, 1]` means over the positions.
fn spatial_mean(g: &mut Graph, x: NodeId) -> Result<NodeId> {
    g.mean(x, &[2, 3], true)
}

/// S1 and S2 of one feature set, each `[B, C, 1, 1]`.
fn similarities(g: &mut Graph, fx: NodeId, fy: NodeId) -> Result<(NodeId, NodeId)> {
    let mx = spatial_mean(g, fx)?;
    let my = spatial_mean(g, fy)?;
    let mxy = g.mul(mx, my)?;
    let num = g.affine(mxy, 2.0, C1)?;
    let (mx2, my2) = (g.square(mx)?, g.square(my)?);
    let den = g.add(mx2, my2)?;
    let den = g.affine(den, 1.0, C1)?;
    let s1 = g.div(num, den)?;

    let dx = g.sub(fx, mx)?;
    let dx = g.square(dx)?;
    let vx = spatial_mean(g, dx)?;
    let dy = g.sub(fy, my)?;
    let dy = g.square(dy)?;
    let vy = spatial_mean(g, dy)?;
    let pxy = g.mul(fx, fy)?;
    let exy = spatial_mean(g, pxy)?;
    let cov = g.sub(exy, mxy)?;
    let num = g.affine(cov, 2.0, C2)?;
    let den = g.add(vx, vy)?;
    let den = g.affine(den, 1.0, C2)?;
    let s2 = g.div(num, den)?;
    Ok((s1, s2))
}

/// DISTS(x, y) per image, `[B]`, for `x`, `y` `[B, 3, H, W]` on [0, 1] (symmetric in x, y;
/// 0 for identical images). H, W ≥ 16 so the last stage has a position.
pub fn build(g: &mut Graph, x: NodeId, y: NodeId, prefix: &str) -> Result<NodeId> {
    g.scope("dists", |g| {
        let b = g.shape(x)[0];
        let vgg = Vgg::constants(g, prefix);
        let fx = g.scope("x", |g| vgg.features(g, x))?;
        let fy = g.scope("y", |g| vgg.features(g, y))?;
        let (mut s1, mut s2) = (vec![], vec![]);
        for (a, bb) in fx.iter().zip(&fy) {
            let (p, q) = similarities(g, *a, *bb)?;
            s1.push(p);
            s2.push(q);
        }
        let s1 = g.concat(&s1, 1)?;
        let s2 = g.concat(&s2, 1)?;
        let alpha = g.constant(&format!("{prefix}{ALPHA}"), &[1, WEIGHTS_LEN, 1, 1]);
        let beta = g.constant(&format!("{prefix}{BETA}"), &[1, WEIGHTS_LEN, 1, 1]);
        let sa = g.sum_all(alpha)?;
        let sb = g.sum_all(beta)?;
        let total = g.add(sa, sb)?;
        let total = g.reshape(total, &[1, 1, 1, 1])?;
        let ta = g.mul(alpha, s1)?;
        let tb = g.mul(beta, s2)?;
        let t = g.add(ta, tb)?;
        let t = g.div(t, total)?;
        let d = g.sum(t, &[1, 2, 3], false)?;
        let d = g.reshape(d, &[b])?;
        g.affine(d, -1.0, 1.0)
    })
}
