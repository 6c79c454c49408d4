//! guided-diffusion's AttentionBlock: self-attention over all pixels of a feature map.
//!
//! `qkv` and `proj_out` are 1-D 1×1 convs in the checkpoint; here they run as 2-D 1×1 convs
//! on the NCHW map, so no layout change is needed. Per head, q, k, v stay in the `[ch, T]`
//! layout the conv produces, and the products are written with transposed matmuls
//! (`qᵀk`, `v·pᵀ`) instead of the graph's `[T, d]` attention composite, which would need four
//! permute copies per block for the same three ops.

use super::config::UNetConfig;
use super::layers::{conv1d_1x1, key, norm};
use crate::graph::{Graph, NodeId, Result};

pub fn attention_block(
    g: &mut Graph,
    cfg: &UNetConfig,
    prefix: &str,
    x: NodeId,
    up: bool,
) -> Result<NodeId> {
    g.scope(prefix, |g| {
        let s = g.shape(x).to_vec();
        let (b, c, hh, ww) = (s[0], s[1], s[2], s[3]);
        let t = hh * ww;
        let heads = cfg.heads(c, up);
        if heads == 0 || c % heads != 0 {
            // `UNetConfig::validate` refuses such configs; this keeps an unvalidated one
            // from dividing by zero.
            return Err(crate::graph::GraphError::Other(format!(
                "{prefix}: {c} attention channels do not split into {heads} heads"
            )));
        }
        let ch = c / heads;
        let n = norm(g, &key(prefix, "norm"), x)?;
        let qkv = conv1d_1x1(g, &key(prefix, "qkv"), n, 3 * c)?; // [B, 3C, H, W]
        let (q, k, v) = if cfg.use_new_attention_order {
            // QKVAttention: q, k, v are the three thirds of the channels, then split by head.
            let parts = g.split(qkv, 1, &[c, c, c])?;
            let mut hv = vec![];
            for p in parts {
                hv.push(g.reshape(p, &[b * heads, ch, t])?);
            }
            (hv[0], hv[1], hv[2])
        } else {
            // QKVAttentionLegacy: each head owns a contiguous [q_h; k_h; v_h] block.
            let r = g.reshape(qkv, &[b * heads, 3 * ch, t])?;
            let parts = g.split(r, 1, &[ch, ch, ch])?;
            (parts[0], parts[1], parts[2])
        };
        // q and k are each scaled by ch^(-1/4) in the reference; one ch^(-1/2) on the logits
        // is the same product.
        let logits = g.matmul(q, k, true, false)?; // [bh, T(query), T(key)]
        let logits = g.scale(logits, 1.0 / (ch as f32).sqrt())?;
        let p = g.softmax(logits)?;
        let a = g.matmul(v, p, false, true)?; // [bh, ch, T(query)]
        let a = g.reshape(a, &[b, c, hh, ww])?;
        let h = conv1d_1x1(g, &key(prefix, "proj_out"), a, c)?;
        g.add(x, h)
    })
}
