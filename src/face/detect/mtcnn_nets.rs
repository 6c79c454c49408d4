//! MTCNN's three networks (P-Net, R-Net, O-Net, as facenet-pytorch 2.6.0 defines them) added
//! to a [`Graph`], their weights as constants named `pnet.` / `rnet.` / `onet.` + the
//! state-dict key. Inputs are RGB in facenet-pytorch's scaling, `(v − 127.5) / 128`.
//! Each two-class softmax is written as the sigmoid of the logit difference (the same
//! function), so only the face probability is computed.

use crate::graph::{Graph, NodeId, Result};

/// `(key, shape)` of every weight of the three networks.
pub fn weight_spec() -> Vec<(String, Vec<usize>)> {
    let mut v = vec![];
    let mut conv = |net: &str, name: &str, o: usize, i: usize, k: usize| {
        v.push((format!("{net}.{name}.weight"), vec![o, i, k, k]));
        v.push((format!("{net}.{name}.bias"), vec![o]));
    };
    conv("pnet", "conv1", 10, 3, 3);
    conv("pnet", "conv2", 16, 10, 3);
    conv("pnet", "conv3", 32, 16, 3);
    conv("pnet", "conv4_1", 2, 32, 1);
    conv("pnet", "conv4_2", 4, 32, 1);
    conv("rnet", "conv1", 28, 3, 3);
    conv("rnet", "conv2", 48, 28, 3);
    conv("rnet", "conv3", 64, 48, 2);
    conv("onet", "conv1", 32, 3, 3);
    conv("onet", "conv2", 64, 32, 3);
    conv("onet", "conv3", 64, 64, 3);
    conv("onet", "conv4", 128, 64, 2);
    let mut dense = |net: &str, name: &str, o: usize, i: usize| {
        v.push((format!("{net}.{name}.weight"), vec![o, i]));
        v.push((format!("{net}.{name}.bias"), vec![o]));
    };
    dense("rnet", "dense4", 128, 576);
    dense("rnet", "dense5_1", 2, 128);
    dense("rnet", "dense5_2", 4, 128);
    dense("onet", "dense5", 256, 1152);
    dense("onet", "dense6_1", 2, 256);
    dense("onet", "dense6_2", 4, 256);
    dense("onet", "dense6_3", 10, 256);
    for (net, name, c) in [
        ("pnet", "prelu1", 10),
        ("pnet", "prelu2", 16),
        ("pnet", "prelu3", 32),
        ("rnet", "prelu1", 28),
        ("rnet", "prelu2", 48),
        ("rnet", "prelu3", 64),
        ("rnet", "prelu4", 128),
        ("onet", "prelu1", 32),
        ("onet", "prelu2", 64),
        ("onet", "prelu3", 64),
        ("onet", "prelu4", 128),
        ("onet", "prelu5", 256),
    ] {
        v.push((format!("{net}.{name}.weight"), vec![c]));
    }
    v
}

fn conv(g: &mut Graph, x: NodeId, key: &str) -> Result<NodeId> {
    let cin = g.shape(x)[1];
    let spec = weight_spec();
    let wshape = &spec
        .iter()
        .find(|(k, _)| k == &format!("{key}.weight"))
        .expect("conv key in the spec")
        .1;
    debug_assert_eq!(wshape[1], cin);
    let w = g.constant(&format!("{key}.weight"), wshape);
    let b = g.constant(&format!("{key}.bias"), &[wshape[0]]);
    g.conv2d(x, w, Some(b), 1, 0, 1)
}

fn prelu(g: &mut Graph, x: NodeId, key: &str) -> Result<NodeId> {
    let c = g.shape(x)[1];
    let a = g.constant(&format!("{key}.weight"), &[c]);
    g.prelu(x, a)
}

fn dense(g: &mut Graph, x: NodeId, key: &str, out: usize) -> Result<NodeId> {
    let i = g.shape(x)[1];
    let w = g.constant(&format!("{key}.weight"), &[out, i]);
    let b = g.constant(&format!("{key}.bias"), &[out]);
    g.linear(x, w, Some(b))
}

/// P(face) from two-class logits `[N, 2, ...]` on axis 1: σ(z₁ − z₀) = softmax(z)₁.
fn face_prob(g: &mut Graph, logits: NodeId) -> Result<NodeId> {
    let z0 = g.slice(logits, 1, 0, 1)?;
    let z1 = g.slice(logits, 1, 1, 1)?;
    let d = g.sub(z1, z0)?;
    g.unary(crate::graph::UnaryOp::Sigmoid, d)
}

/// Dense layers see a `[N, W, H, C]` flattening (facenet-pytorch's `permute(0, 3, 2, 1)`).
fn flatten_whc(g: &mut Graph, x: NodeId) -> Result<NodeId> {
    let s = g.shape(x).to_vec();
    let p = g.permute(x, &[0, 3, 2, 1])?;
    g.reshape(p, &[s[0], s[1] * s[2] * s[3]])
}

pub struct PnetOut {
    /// `[N, 4, h, w]` box offsets.
    pub reg: NodeId,
    /// `[N, 1, h, w]` face probability.
    pub prob: NodeId,
}

/// The fully convolutional proposal net on `x [N, 3, H, W]` (H, W ≥ 12).
pub fn pnet(g: &mut Graph, x: NodeId) -> Result<PnetOut> {
    g.scope("pnet", |g| {
        let x = conv(g, x, "pnet.conv1")?;
        let x = prelu(g, x, "pnet.prelu1")?;
        let x = g.max_pool2d_ceil(x, 2)?;
        let x = conv(g, x, "pnet.conv2")?;
        let x = prelu(g, x, "pnet.prelu2")?;
        let x = conv(g, x, "pnet.conv3")?;
        let x = prelu(g, x, "pnet.prelu3")?;
        let logits = conv(g, x, "pnet.conv4_1")?;
        let prob = face_prob(g, logits)?;
        let reg = conv(g, x, "pnet.conv4_2")?;
        Ok(PnetOut { reg, prob })
    })
}

pub struct RnetOut {
    /// `[N, 4]`
    pub reg: NodeId,
    /// `[N, 1]`
    pub prob: NodeId,
}

/// The refinement net on 24×24 crops `x [N, 3, 24, 24]`.
pub fn rnet(g: &mut Graph, x: NodeId) -> Result<RnetOut> {
    g.scope("rnet", |g| {
        let x = conv(g, x, "rnet.conv1")?;
        let x = prelu(g, x, "rnet.prelu1")?;
        let x = g.max_pool2d_ceil(x, 3)?;
        let x = conv(g, x, "rnet.conv2")?;
        let x = prelu(g, x, "rnet.prelu2")?;
        let x = g.max_pool2d_ceil(x, 3)?;
        let x = conv(g, x, "rnet.conv3")?;
        let x = prelu(g, x, "rnet.prelu3")?;
        let x = flatten_whc(g, x)?;
        let x = dense(g, x, "rnet.dense4", 128)?;
        let x = prelu(g, x, "rnet.prelu4")?;
        let logits = dense(g, x, "rnet.dense5_1", 2)?;
        let prob = face_prob(g, logits)?;
        let reg = dense(g, x, "rnet.dense5_2", 4)?;
        Ok(RnetOut { reg, prob })
    })
}

pub struct OnetOut {
    /// `[N, 4]`
    pub reg: NodeId,
    /// `[N, 10]`: five x, then five y, relative to the box.
    pub landmarks: NodeId,
    /// `[N, 1]`
    pub prob: NodeId,
}

/// The output net on 48×48 crops `x [N, 3, 48, 48]`.
pub fn onet(g: &mut Graph, x: NodeId) -> Result<OnetOut> {
    g.scope("onet", |g| {
        let x = conv(g, x, "onet.conv1")?;
        let x = prelu(g, x, "onet.prelu1")?;
        let x = g.max_pool2d_ceil(x, 3)?;
        let x = conv(g, x, "onet.conv2")?;
        let x = prelu(g, x, "onet.prelu2")?;
        let x = g.max_pool2d_ceil(x, 3)?;
        let x = conv(g, x, "onet.conv3")?;
        let x = prelu(g, x, "onet.prelu3")?;
        let x = g.max_pool2d_ceil(x, 2)?;
        let x = conv(g, x, "onet.conv4")?;
        let x = prelu(g, x, "onet.prelu4")?;
        let x = flatten_whc(g, x)?;
        let x = dense(g, x, "onet.dense5", 256)?;
        let x = prelu(g, x, "onet.prelu5")?;
        let logits = dense(g, x, "onet.dense6_1", 2)?;
        let prob = face_prob(g, logits)?;
        let reg = dense(g, x, "onet.dense6_2", 4)?;
        let landmarks = dense(g, x, "onet.dense6_3", 10)?;
        Ok(OnetOut {
            reg,
            landmarks,
            prob,
        })
    })
}
