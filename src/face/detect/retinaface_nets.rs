//! RetinaFace's network as facexlib 0.3.0 ships it (`detection/retinaface_net.py`), added
//! to a [`Graph`] with its weights as constants named by the checkpoint's keys (after
//! `module.` is stripped): the backbone (`body.`: torchvision's ResNet-50 up to `layer4`, or
//! the MobileNet-0.25 of `retinaface_net.py`), the FPN, one SSH context module per level and
//! the class / box / landmark heads. Batch norms are inference-mode (running statistics);
//! every shape is inferred from the input, so one builder serves any photo size.

use crate::graph::{Graph, NodeId, Result};

/// BatchNorm2d's default epsilon, which every norm of the network uses.
const BN_EPS: f32 = 1e-5;
/// Anchors per feature-map cell (two prior sizes per level).
pub const ANCHORS: usize = 2;

/// The two published checkpoints' networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// `detection_Resnet50_Final.pth` (facexlib's `retinaface_resnet50`, the default).
    Resnet50,
    /// `detection_mobilenet0.25_Final.pth` (facexlib's `retinaface_mobile0.25`).
    #[serde(rename = "mobilenet0.25")]
    Mobilenet025,
}

impl Variant {
    /// Channels of the three backbone outputs the FPN reads.
    pub fn backbone_channels(self) -> [usize; 3] {
        match self {
            Variant::Resnet50 => [512, 1024, 2048],
            Variant::Mobilenet025 => [64, 128, 256],
        }
    }

    /// Channels of the FPN, the SSH modules and the heads' inputs.
    pub fn out_channels(self) -> usize {
        match self {
            Variant::Resnet50 => 256,
            Variant::Mobilenet025 => 64,
        }
    }
}

/// facexlib's FPN and SSH use LeakyReLU(0.1) when they are at most 64 channels wide and a
/// plain ReLU otherwise: the MobileNet variant gets the leak, ResNet-50 does not.
pub fn neck_leak(out_channels: usize) -> f32 {
    if out_channels <= 64 {
        0.1
    } else {
        0.0
    }
}

/// Convolution without bias, weight `{key}.weight` of `[out, in/groups, k, k]`.
fn conv(
    g: &mut Graph,
    x: NodeId,
    key: &str,
    out: usize,
    k: usize,
    stride: usize,
    groups: usize,
) -> Result<NodeId> {
    let cin = g.shape(x)[1];
    let w = g.constant(&format!("{key}.weight"), &[out, cin / groups, k, k]);
    g.conv2d(x, w, None, stride, k / 2, groups)
}

fn bn(g: &mut Graph, x: NodeId, key: &str) -> Result<NodeId> {
    let c = g.shape(x)[1];
    let p = |g: &mut Graph, n: &str| g.constant(&format!("{key}.{n}"), &[c]);
    let (w, b) = (p(g, "weight"), p(g, "bias"));
    let (m, v) = (p(g, "running_mean"), p(g, "running_var"));
    g.batch_norm(x, w, b, m, v, BN_EPS)
}

/// `nn.Sequential(Conv2d(bias=False), BatchNorm2d[, LeakyReLU(leak)])` under `key.0`, `key.1`.
#[allow(clippy::too_many_arguments)]
fn conv_bn(
    g: &mut Graph,
    x: NodeId,
    key: &str,
    out: usize,
    k: usize,
    stride: usize,
    leak: Option<f32>,
) -> Result<NodeId> {
    let y = conv(g, x, &format!("{key}.0"), out, k, stride, 1)?;
    let y = bn(g, y, &format!("{key}.1"))?;
    match leak {
        Some(a) => g.leaky_relu(y, a),
        None => Ok(y),
    }
}

/// 3×3 max pooling, stride 2, padding 1 (floor mode) of a non-negative input: zero padding
/// then equals PyTorch's −∞ padding, as it does after ResNet's stem ReLU. Per axis the
/// padded signal is split into even and odd samples; window `i` is `e[i], o[i], e[i + 1]`.
pub fn max_pool3_s2_p1_nonneg(g: &mut Graph, x: NodeId) -> Result<NodeId> {
    let mut y = x;
    for axis in [2, 3] {
        let len = g.shape(y)[axis];
        let out = len.div_ceil(2);
        let pairs = out + 1;
        let padded = g.push(
            crate::graph::op::Op::Pad {
                axis,
                start: 1,
                full: 2 * pairs,
            },
            &[y],
        )?;
        let mut s = g.shape(padded).to_vec();
        s[axis] = pairs;
        s.insert(axis + 1, 2);
        let r = g.reshape(padded, &s)?;
        let mut flat = s.clone();
        flat.remove(axis + 1);
        let e = g.slice(r, axis + 1, 0, 1)?;
        let e = g.reshape(e, &flat)?;
        let o = g.slice(r, axis + 1, 1, 1)?;
        let o = g.reshape(o, &flat)?;
        let e0 = g.slice(e, axis, 0, out)?;
        let o0 = g.slice(o, axis, 0, out)?;
        let e1 = g.slice(e, axis, 1, out)?;
        let m = g.maximum(e0, o0)?;
        y = g.maximum(m, e1)?;
    }
    Ok(y)
}

/// torchvision's Bottleneck (stride on the 3×3 convolution, ResNet v1.5).
fn bottleneck(
    g: &mut Graph,
    x: NodeId,
    key: &str,
    planes: usize,
    stride: usize,
    downsample: bool,
) -> Result<NodeId> {
    let y = conv(g, x, &format!("{key}.conv1"), planes, 1, 1, 1)?;
    let y = bn(g, y, &format!("{key}.bn1"))?;
    let y = g.leaky_relu(y, 0.0)?;
    let y = conv(g, y, &format!("{key}.conv2"), planes, 3, stride, 1)?;
    let y = bn(g, y, &format!("{key}.bn2"))?;
    let y = g.leaky_relu(y, 0.0)?;
    let y = conv(g, y, &format!("{key}.conv3"), planes * 4, 1, 1, 1)?;
    let y = bn(g, y, &format!("{key}.bn3"))?;
    let identity = if downsample {
        let d = conv(
            g,
            x,
            &format!("{key}.downsample.0"),
            planes * 4,
            1,
            stride,
            1,
        )?;
        bn(g, d, &format!("{key}.downsample.1"))?
    } else {
        x
    };
    let s = g.add(y, identity)?;
    g.leaky_relu(s, 0.0)
}

/// ResNet-50's `layer2`, `layer3`, `layer4` outputs (strides 8, 16, 32).
fn resnet50(g: &mut Graph, x: NodeId) -> Result<[NodeId; 3]> {
    let y = conv(g, x, "body.conv1", 64, 7, 2, 1)?;
    let y = bn(g, y, "body.bn1")?;
    let y = g.leaky_relu(y, 0.0)?;
    let mut y = max_pool3_s2_p1_nonneg(g, y)?;
    let mut outs = vec![];
    for (layer, (planes, blocks, stride)) in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]
        .into_iter()
        .enumerate()
    {
        for b in 0..blocks {
            let key = format!("body.layer{}.{b}", layer + 1);
            let s = if b == 0 { stride } else { 1 };
            y = bottleneck(g, y, &key, planes, s, b == 0)?;
        }
        if layer > 0 {
            outs.push(y);
        }
    }
    Ok([outs[0], outs[1], outs[2]])
}

/// MobileNet's depthwise-separable block (`conv_dw`, LeakyReLU 0.1) under `key`.
fn conv_dw(g: &mut Graph, x: NodeId, key: &str, out: usize, stride: usize) -> Result<NodeId> {
    let cin = g.shape(x)[1];
    let y = conv(g, x, &format!("{key}.0"), cin, 3, stride, cin)?;
    let y = bn(g, y, &format!("{key}.1"))?;
    let y = g.leaky_relu(y, 0.1)?;
    let y = conv(g, y, &format!("{key}.3"), out, 1, 1, 1)?;
    let y = bn(g, y, &format!("{key}.4"))?;
    g.leaky_relu(y, 0.1)
}

/// MobileNet-0.25's `stage1`, `stage2`, `stage3` outputs (strides 8, 16, 32).
fn mobilenet025(g: &mut Graph, x: NodeId) -> Result<[NodeId; 3]> {
    let mut y = conv_bn(g, x, "body.stage1.0", 8, 3, 2, Some(0.1))?;
    let stages: [&[(usize, usize)]; 3] = [
        &[(16, 1), (32, 2), (32, 1), (64, 2), (64, 1)],
        &[(128, 2), (128, 1), (128, 1), (128, 1), (128, 1), (128, 1)],
        &[(256, 2), (256, 1)],
    ];
    let mut outs = [y; 3];
    for (s, blocks) in stages.iter().enumerate() {
        // stage1's first block is the plain conv_bn above.
        let first = if s == 0 { 1 } else { 0 };
        for (i, &(out, stride)) in blocks.iter().enumerate() {
            y = conv_dw(
                g,
                y,
                &format!("body.stage{}.{}", s + 1, i + first),
                out,
                stride,
            )?;
        }
        outs[s] = y;
    }
    Ok(outs)
}

/// Nearest-neighbour resize of `x` to `like`'s height and width, where each is twice the
/// input's or one less (always so between stride-2 levels, whose sizes are ⌈n/2⌉): then
/// PyTorch's `floor(i · in / out)` source index is `⌊i/2⌋`, i.e. ×2 upsampling and a crop.
fn upsample_to(g: &mut Graph, x: NodeId, like: NodeId) -> Result<NodeId> {
    let (h, w) = (g.shape(like)[2], g.shape(like)[3]);
    let (ih, iw) = (g.shape(x)[2], g.shape(x)[3]);
    assert!(
        (2 * ih - 1..=2 * ih).contains(&h) && (2 * iw - 1..=2 * iw).contains(&w),
        "FPN levels {ih}×{iw} and {h}×{w} are not one stride-2 step apart"
    );
    let u = g.upsample2x(x)?;
    let u = if h < 2 * ih { g.slice(u, 2, 0, h)? } else { u };
    if w < 2 * iw {
        g.slice(u, 3, 0, w)
    } else {
        Ok(u)
    }
}

fn fpn(g: &mut Graph, c: [NodeId; 3], out: usize) -> Result<[NodeId; 3]> {
    let leak = Some(neck_leak(out));
    let o1 = conv_bn(g, c[0], "fpn.output1", out, 1, 1, leak)?;
    let o2 = conv_bn(g, c[1], "fpn.output2", out, 1, 1, leak)?;
    let o3 = conv_bn(g, c[2], "fpn.output3", out, 1, 1, leak)?;
    let up3 = upsample_to(g, o3, o2)?;
    let o2 = g.add(o2, up3)?;
    let o2 = conv_bn(g, o2, "fpn.merge2", out, 3, 1, leak)?;
    let up2 = upsample_to(g, o2, o1)?;
    let o1 = g.add(o1, up2)?;
    let o1 = conv_bn(g, o1, "fpn.merge1", out, 3, 1, leak)?;
    Ok([o1, o2, o3])
}

/// The SSH context module: 3×3, 5×5 (two 3×3) and 7×7 (three 3×3) branches sharing their
/// first convolution, concatenated (½, ¼, ¼ of the channels) and rectified.
fn ssh(g: &mut Graph, x: NodeId, key: &str, out: usize) -> Result<NodeId> {
    let leak = Some(neck_leak(out));
    let c3 = conv_bn(g, x, &format!("{key}.conv3X3"), out / 2, 3, 1, None)?;
    let c5_1 = conv_bn(g, x, &format!("{key}.conv5X5_1"), out / 4, 3, 1, leak)?;
    let c5 = conv_bn(g, c5_1, &format!("{key}.conv5X5_2"), out / 4, 3, 1, None)?;
    let c7_2 = conv_bn(g, c5_1, &format!("{key}.conv7X7_2"), out / 4, 3, 1, leak)?;
    let c7 = conv_bn(g, c7_2, &format!("{key}.conv7x7_3"), out / 4, 3, 1, None)?;
    let cat = g.concat(&[c3, c5, c7], 1)?;
    g.leaky_relu(cat, 0.0)
}

/// One head: a biased 1×1 convolution to `ANCHORS · k` channels, laid out as facexlib's
/// `permute(0, 2, 3, 1).view(N, -1, k)`: `[N, H·W·ANCHORS, k]`.
fn head(g: &mut Graph, x: NodeId, key: &str, k: usize) -> Result<NodeId> {
    let s = g.shape(x).to_vec();
    let w = g.constant(&format!("{key}.conv1x1.weight"), &[ANCHORS * k, s[1], 1, 1]);
    let b = g.constant(&format!("{key}.conv1x1.bias"), &[ANCHORS * k]);
    let y = g.conv2d(x, w, Some(b), 1, 0, 1)?;
    let y = g.permute(y, &[0, 2, 3, 1])?;
    g.reshape(y, &[s[0], s[2] * s[3] * ANCHORS, k])
}

/// The network's outputs, priors in [`super::retinaface_priors::priors`]'s order.
#[derive(Clone, Copy, Debug)]
pub struct RetinaOut {
    /// `[N, P, 4]` box offsets.
    pub loc: NodeId,
    /// `[N, P, 2]` softmax over (background, face).
    pub conf: NodeId,
    /// `[N, P, 10]` landmark offsets, (x, y) of five points.
    pub landmarks: NodeId,
}

/// RetinaFace on `x [N, 3, H, W]`: BGR, minus the mean (104, 117, 123), as facexlib feeds it.
pub fn retinaface(g: &mut Graph, x: NodeId, variant: Variant) -> Result<RetinaOut> {
    g.scope("retinaface", |g| {
        let c = match variant {
            Variant::Resnet50 => resnet50(g, x)?,
            Variant::Mobilenet025 => mobilenet025(g, x)?,
        };
        let out = variant.out_channels();
        let p = fpn(g, c, out)?;
        let mut feats = vec![];
        for (i, &f) in p.iter().enumerate() {
            feats.push(ssh(g, f, &format!("ssh{}", i + 1), out)?);
        }
        let cat = |g: &mut Graph, name: &str, k: usize| -> Result<NodeId> {
            let parts = feats
                .iter()
                .enumerate()
                .map(|(i, &f)| head(g, f, &format!("{name}.{i}"), k))
                .collect::<Result<Vec<_>>>()?;
            g.concat(&parts, 1)
        };
        let loc = cat(g, "BboxHead", 4)?;
        let logits = cat(g, "ClassHead", 2)?;
        let landmarks = cat(g, "LandmarkHead", 10)?;
        let conf = g.softmax(logits)?;
        Ok(RetinaOut {
            loc,
            conf,
            landmarks,
        })
    })
}

/// `(key, shape)` of every weight the network reads: the constants of a graph built on a
/// small input (`num_batches_tracked`, which checkpoints also hold, is never read).
pub fn weight_spec(variant: Variant) -> Vec<(String, Vec<usize>)> {
    let mut g = Graph::new();
    let x = g.input("x", &[1, 3, 64, 64]);
    retinaface(&mut g, x, variant).expect("RetinaFace builds on a 64² input");
    g.constants()
}
