//! guided-diffusion's ResBlock: GN → SiLU → conv, the timestep embedding injected either
//! additively or as a scale-shift of the second GroupNorm, GN → SiLU → conv, plus a skip.

use super::config::UNetConfig;
use super::layers::{conv, key, linear, norm_act};
use super::resample::{resample_plain, Resample};
use crate::graph::{Graph, NodeId, Result};

/// One ResBlock at `prefix`. `emb_act` is SiLU(emb) `[B, emb_dim]`: every block starts its
/// `emb_layers` with the same SiLU, so the caller computes it once for all blocks.
pub fn resblock(
    g: &mut Graph,
    cfg: &UNetConfig,
    prefix: &str,
    x: NodeId,
    emb_act: NodeId,
    out_ch: usize,
    updown: Option<Resample>,
) -> Result<NodeId> {
    g.scope(prefix, |g| {
        let in_ch = g.shape(x)[1];
        let batch = g.shape(x)[0];
        // GN → (scale-shift) → SiLU, fused by the executor's rewrite pass.
        let h = norm_act(g, &key(prefix, "in_layers.0"), x, None)?;
        // Up/down blocks resample between the activation and the conv, and resample the
        // skip path the same way.
        let (h, x) = match updown {
            Some(dir) => (resample_plain(g, h, dir)?, resample_plain(g, x, dir)?),
            None => (h, x),
        };
        let h = conv(g, &key(prefix, "in_layers.2"), h, out_ch, 3, 1)?;

        let emb_width = if cfg.use_scale_shift_norm {
            2 * out_ch
        } else {
            out_ch
        };
        let emb_out = linear(g, &key(prefix, "emb_layers.1"), emb_act, emb_width)?;
        let h = if cfg.use_scale_shift_norm {
            // torch.chunk(emb_out, 2, dim=1): scale first, then shift.
            let parts = g.split(emb_out, 1, &[out_ch, out_ch])?;
            norm_act(
                g,
                &key(prefix, "out_layers.0"),
                h,
                Some((parts[0], parts[1])),
            )?
        } else {
            let e = g.reshape(emb_out, &[batch, out_ch, 1, 1])?;
            let h = g.add(h, e)?;
            norm_act(g, &key(prefix, "out_layers.0"), h, None)?
        };
        // out_layers.2 is Dropout, the identity at inference (dropout is checked to be 0).
        let h = conv(g, &key(prefix, "out_layers.3"), h, out_ch, 3, 1)?;

        let skip = if out_ch == in_ch {
            x
        } else {
            conv(g, &key(prefix, "skip_connection"), x, out_ch, 1, 1)?
        };
        g.add(skip, h)
    })
}
