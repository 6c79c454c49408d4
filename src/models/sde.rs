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
    Ok(build_mode(g, cfg, x, prefix, false)?.0)
}

/// The running-statistics keys of batch-norm layer `i` and the nodes of this batch's
/// mean and biased variance, for the trainer's running-statistics update.
#[derive(Clone, Debug)]
pub struct BnBatchStats {
    pub mean_key: String,
    pub var_key: String,
    pub mean: NodeId,
    pub var: NodeId,
    /// Values per channel behind the statistics (N·H·W), for the unbiased running variance.
    pub count: usize,
}

/// The SDE in training mode: batch norm normalises by each batch's statistics (returned
/// per layer) and never reads the running ones.
pub fn build_train(
    g: &mut Graph,
    cfg: &SdeConfig,
    x: NodeId,
    prefix: &str,
) -> Result<(NodeId, Vec<BnBatchStats>)> {
    build_mode(g, cfg, x, prefix, true)
}

fn build_mode(
    g: &mut Graph,
    cfg: &SdeConfig,
    x: NodeId,
    prefix: &str,
    train: bool,
) -> Result<(NodeId, Vec<BnBatchStats>)> {
    let k = |s: String| format!("{prefix}{s}");
    let mut h = x;
    let mut c = g.shape(x)[1];
    let mut stats = vec![];
    for (i, &(o, stride)) in cfg.layers.iter().enumerate() {
        let w = g.constant(&k(format!("features.{i}.conv.weight")), &[o, c, 3, 3]);
        h = g.conv2d(h, w, None, stride, 1, 1)?;
        let gamma = g.constant(&k(format!("features.{i}.bn.weight")), &[o]);
        let beta = g.constant(&k(format!("features.{i}.bn.bias")), &[o]);
        let (mean_key, var_key) = (
            k(format!("features.{i}.bn.running_mean")),
            k(format!("features.{i}.bn.running_var")),
        );
        h = if train {
            let hs = g.shape(h);
            let count = hs[0] * hs[2] * hs[3];
            let bn = g.batch_norm_train(h, gamma, beta, cfg.bn_eps)?;
            stats.push(BnBatchStats {
                mean_key,
                var_key,
                mean: bn.mean,
                var: bn.var,
                count,
            });
            bn.y
        } else {
            let mean = g.constant(&mean_key, &[o]);
            let var = g.constant(&var_key, &[o]);
            g.batch_norm(h, gamma, beta, mean, var, cfg.bn_eps)?
        };
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
    Ok((g.reshape(f, &[b])?, stats))
}
