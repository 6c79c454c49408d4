//! SDE, the standard estimator's σ regressor (paper Table 4): six 3×3 conv + batch norm +
//! LeakyReLU layers (two of them stride 2), global average pooling, then three linear layers
//! to one value per image. No public weights exist; key names are this project's.

use crate::graph::{Graph, NodeId, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SdeConfig {
    /// (out channels, stride) of each conv layer.
    pub layers: Vec<(usize, usize)>,
    pub hidden: usize,
    /// **choice**: the paper writes "LReLU" without a slope.
    pub leaky_slope: f32,
    pub bn_eps: f32,
}

impl Default for SdeConfig {
    fn default() -> Self {
        SdeConfig {
            layers: vec![(64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1)],
            hidden: 256,
            leaky_slope: 0.2,
            bn_eps: 1e-5,
        }
    }
}

pub fn checkpoint_spec(cfg: &SdeConfig, in_ch: usize) -> Vec<(String, Vec<usize>)> {
    let mut v = vec![];
    let mut c = in_ch;
    for (i, &(o, _)) in cfg.layers.iter().enumerate() {
        v.push((format!("features.{i}.conv.weight"), vec![o, c, 3, 3]));
        for p in ["weight", "bias", "running_mean", "running_var"] {
            v.push((format!("features.{i}.bn.{p}"), vec![o]));
        }
        c = o;
    }
    let dims = [(cfg.hidden, c), (cfg.hidden, cfg.hidden), (1, cfg.hidden)];
    for (i, (o, n)) in dims.iter().enumerate() {
        v.push((format!("head.{i}.weight"), vec![*o, *n]));
        v.push((format!("head.{i}.bias"), vec![*o]));
    }
    v
}

/// Adds the SDE applied to `x` `[B, C, H, W]`; returns σ̂ `[B]`.
pub fn build(g: &mut Graph, cfg: &SdeConfig, x: NodeId, prefix: &str) -> Result<NodeId> {
    let k = |s: String| format!("{prefix}{s}");
    let mut h = x;
    let mut c = g.shape(x)[1];
    for (i, &(o, stride)) in cfg.layers.iter().enumerate() {
        let w = g.constant(&k(format!("features.{i}.conv.weight")), &[o, c, 3, 3]);
        h = g.conv2d(h, w, None, stride, 1, 1)?;
        let bn: Vec<NodeId> = ["weight", "bias", "running_mean", "running_var"]
            .iter()
            .map(|p| g.constant(&k(format!("features.{i}.bn.{p}")), &[o]))
            .collect();
        h = g.batch_norm(h, bn[0], bn[1], bn[2], bn[3], cfg.bn_eps)?;
        h = g.leaky_relu(h, cfg.leaky_slope)?;
        c = o;
    }
    let mut f = g.global_avg_pool(h)?;
    let dims = [(cfg.hidden, c), (cfg.hidden, cfg.hidden), (1, cfg.hidden)];
    for (i, (o, n)) in dims.iter().enumerate() {
        let w = g.constant(&k(format!("head.{i}.weight")), &[*o, *n]);
        let b = g.constant(&k(format!("head.{i}.bias")), &[*o]);
        f = g.linear(f, w, Some(b))?;
        if i == 0 {
            f = g.leaky_relu(f, cfg.leaky_slope)?;
        }
    }
    let b = g.shape(x)[0];
    g.reshape(f, &[b])
}
