//! Parameterised layers whose weights are graph constants named by their checkpoint keys
//! (`{prefix}.weight`, `{prefix}.bias`), so a guided-diffusion state dict binds by name.

use super::config::{GN_EPS, GN_GROUPS};
use crate::graph::{Graph, NodeId, Result};

/// `prefix.suffix`, or `suffix` alone at the root.
pub fn key(prefix: &str, suffix: &str) -> String {
    if prefix.is_empty() {
        suffix.to_string()
    } else {
        format!("{prefix}.{suffix}")
    }
}

/// Square-kernel 2-D convolution with bias, weight `[cout, cin, k, k]`.
pub fn conv(
    g: &mut Graph,
    prefix: &str,
    x: NodeId,
    cout: usize,
    k: usize,
    stride: usize,
) -> Result<NodeId> {
    let cin = g.shape(x)[1];
    let w = g.constant(&key(prefix, "weight"), &[cout, cin, k, k]);
    let b = g.constant(&key(prefix, "bias"), &[cout]);
    g.conv2d(x, w, Some(b), stride, k / 2, 1)
}

/// A `Conv1d(cin, cout, 1)` of guided-diffusion applied to NCHW as a 1×1 conv: its weight
/// keeps the checkpoint shape `[cout, cin, 1]` and is viewed as `[cout, cin, 1, 1]`.
pub fn conv1d_1x1(g: &mut Graph, prefix: &str, x: NodeId, cout: usize) -> Result<NodeId> {
    let cin = g.shape(x)[1];
    let w = g.constant(&key(prefix, "weight"), &[cout, cin, 1]);
    let b = g.constant(&key(prefix, "bias"), &[cout]);
    let w4 = g.reshape(w, &[cout, cin, 1, 1])?;
    g.conv2d(x, w4, Some(b), 1, 0, 1)
}

/// `nn.Linear` over the last axis, weight `[out, in]`.
pub fn linear(g: &mut Graph, prefix: &str, x: NodeId, out: usize) -> Result<NodeId> {
    let inp = *g.shape(x).last().unwrap_or(&0);
    let w = g.constant(&key(prefix, "weight"), &[out, inp]);
    let b = g.constant(&key(prefix, "bias"), &[out]);
    g.linear(x, w, Some(b))
}

/// GroupNorm32: 32 groups, eps 1e-5, affine.
pub fn norm(g: &mut Graph, prefix: &str, x: NodeId) -> Result<NodeId> {
    let c = g.shape(x)[1];
    let gamma = g.constant(&key(prefix, "weight"), &[c]);
    let beta = g.constant(&key(prefix, "bias"), &[c]);
    g.group_norm(x, gamma, beta, GN_GROUPS, GN_EPS)
}

/// GroupNorm32 → (optional FiLM `h·(1 + scale) + shift`, both `[B, C]`) → SiLU, op by op;
/// the executor's rewrite pass (`graph::rewrite`) makes it the one fused `GroupNormSilu`
/// where the backend supports it.
pub fn norm_act(
    g: &mut Graph,
    prefix: &str,
    x: NodeId,
    film: Option<(NodeId, NodeId)>,
) -> Result<NodeId> {
    let h = norm(g, prefix, x)?;
    let h = match film {
        Some((scale, shift)) => g.scale_shift(h, scale, shift)?,
        None => h,
    };
    g.silu(h)
}
