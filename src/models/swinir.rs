//! SwinIR as DifFace's face restorer uses it (METHOD.md §5): pixel-unshuffle front,
//! residual Swin stages with window attention (relative position bias, shifted windows with
//! a −100 mask), and a nearest+conv upsampling tail; inputs and outputs in [0, 1].
//!
//! Two constants are derived at load time instead of read: the relative position bias
//! `[heads, N, N]` gathered from each block's table (the graph has no gather op, and the
//! gather is fixed once weights are known), and the shift masks, which depend only on the
//! feature-map size and are recomputed so any size that fits the windows works.

use super::WeightMap;
use crate::graph::{Graph, GraphError, NodeId, Result};
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwinIRConfig {
    pub in_chans: usize,
    pub embed_dim: usize,
    pub depths: Vec<usize>,
    pub num_heads: Vec<usize>,
    pub window_size: usize,
    pub mlp_ratio: f32,
    /// Upscale factor of the tail (8 with the ×8 unshuffle front gives the input size back).
    pub upscale: usize,
    /// Pixel-unshuffle the input by `upscale` before the first conv (DifFace's restorer).
    pub unshuffle: bool,
    pub img_range: f32,
    /// "nearest+conv" or "" (a single conv and a global residual, no resampling).
    pub upsampler: String,
    pub patch_norm: bool,
}

impl SwinIRConfig {
    /// DifFace's `General_Face_ffhq512.pth` restorer.
    pub fn difface_restorer() -> Self {
        SwinIRConfig {
            in_chans: 3,
            embed_dim: 180,
            depths: vec![6; 8],
            num_heads: vec![6; 8],
            window_size: 8,
            mlp_ratio: 2.0,
            upscale: 8,
            unshuffle: true,
            img_range: 1.0,
            upsampler: "nearest+conv".into(),
            patch_norm: true,
        }
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.depths.len() != self.num_heads.len() || self.depths.is_empty() {
            return Err("depths and num_heads must be non-empty lists of the same length".into());
        }
        if let Some(h) = self
            .num_heads
            .iter()
            .find(|&&h| h == 0 || !self.embed_dim.is_multiple_of(h))
        {
            return Err(format!(
                "{h} heads do not divide embed_dim {}",
                self.embed_dim
            ));
        }
        if self.upsampler == "nearest+conv" && !self.upscale.is_power_of_two() {
            return Err(format!(
                "nearest+conv needs a power-of-two upscale, got {}",
                self.upscale
            ));
        }
        if !matches!(self.upsampler.as_str(), "nearest+conv" | "") {
            return Err(format!("upsampler {:?} is not supported", self.upsampler));
        }
        Ok(())
    }

    fn in_ch_first(&self) -> usize {
        if self.unshuffle {
            self.in_chans * self.upscale * self.upscale
        } else {
            self.in_chans
        }
    }

    fn first_key(&self) -> &'static str {
        if self.unshuffle {
            "conv_first.1"
        } else {
            "conv_first"
        }
    }

    fn hidden(&self) -> usize {
        (self.embed_dim as f32 * self.mlp_ratio) as usize
    }

    /// Feature-map size for an input of `h × w`.
    pub fn feature_hw(&self, h: usize, w: usize) -> (usize, usize) {
        if self.unshuffle {
            (h / self.upscale, w / self.upscale)
        } else {
            (h, w)
        }
    }

    /// Shift of block `j` for a feature map of `fh × fw` (none when a window covers it).
    fn shift(&self, j: usize, fh: usize, fw: usize) -> usize {
        if j % 2 == 1 && fh.min(fw) > self.window_size {
            self.window_size / 2
        } else {
            0
        }
    }

    fn window(&self, fh: usize, fw: usize) -> usize {
        self.window_size.min(fh.min(fw))
    }
}

const RGB_MEAN: [f32; 3] = [0.4488, 0.4371, 0.4040];

/// Keys and shapes of the official checkpoint for a model run at `h × w` (the masks'
/// window count depends on it).
pub fn checkpoint_spec(cfg: &SwinIRConfig, h: usize, w: usize) -> Vec<(String, Vec<usize>)> {
    let (fh, fw) = cfg.feature_hw(h, w);
    let ws = cfg.window(fh, fw);
    let n = ws * ws;
    let c = cfg.embed_dim;
    let mut v: Vec<(String, Vec<usize>)> = vec![];
    let conv = |v: &mut Vec<(String, Vec<usize>)>, k: &str, o: usize, i: usize| {
        v.push((format!("{k}.weight"), vec![o, i, 3, 3]));
        v.push((format!("{k}.bias"), vec![o]));
    };
    conv(&mut v, cfg.first_key(), c, cfg.in_ch_first());
    if cfg.patch_norm {
        v.push(("patch_embed.norm.weight".into(), vec![c]));
        v.push(("patch_embed.norm.bias".into(), vec![c]));
    }
    for (i, (&depth, &heads)) in cfg.depths.iter().zip(&cfg.num_heads).enumerate() {
        for j in 0..depth {
            let p = format!("layers.{i}.residual_group.blocks.{j}");
            v.push((format!("{p}.norm1.weight"), vec![c]));
            v.push((format!("{p}.norm1.bias"), vec![c]));
            if cfg.shift(j, fh, fw) > 0 {
                v.push((format!("{p}.attn_mask"), vec![(fh / ws) * (fw / ws), n, n]));
            }
            v.push((
                format!("{p}.attn.relative_position_bias_table"),
                vec![(2 * ws - 1) * (2 * ws - 1), heads],
            ));
            v.push((format!("{p}.attn.relative_position_index"), vec![n, n]));
            v.push((format!("{p}.attn.qkv.weight"), vec![3 * c, c]));
            v.push((format!("{p}.attn.qkv.bias"), vec![3 * c]));
            v.push((format!("{p}.attn.proj.weight"), vec![c, c]));
            v.push((format!("{p}.attn.proj.bias"), vec![c]));
            v.push((format!("{p}.norm2.weight"), vec![c]));
            v.push((format!("{p}.norm2.bias"), vec![c]));
            v.push((format!("{p}.mlp.fc1.weight"), vec![cfg.hidden(), c]));
            v.push((format!("{p}.mlp.fc1.bias"), vec![cfg.hidden()]));
            v.push((format!("{p}.mlp.fc2.weight"), vec![c, cfg.hidden()]));
            v.push((format!("{p}.mlp.fc2.bias"), vec![c]));
        }
        conv(&mut v, &format!("layers.{i}.conv"), c, c);
    }
    v.push(("norm.weight".into(), vec![c]));
    v.push(("norm.bias".into(), vec![c]));
    conv(&mut v, "conv_after_body", c, c);
    match cfg.upsampler.as_str() {
        "nearest+conv" => {
            conv(&mut v, "conv_before_upsample.0", 64, c);
            for u in 0..cfg.upscale.trailing_zeros() {
                conv(&mut v, &format!("conv_up{}", u + 1), 64, 64);
            }
            conv(&mut v, "conv_hr", 64, 64);
            conv(&mut v, "conv_last", cfg.in_chans, 64);
        }
        _ => conv(&mut v, "conv_last", cfg.in_chans, c),
    }
    v
}

/// Number of learnable parameters (buffers excluded).
pub fn parameter_count(cfg: &SwinIRConfig) -> usize {
    checkpoint_spec(cfg, 64 * cfg.upscale.max(1), 64 * cfg.upscale.max(1))
        .iter()
        .filter(|(k, _)| !k.ends_with("attn_mask") && !k.ends_with("relative_position_index"))
        .map(|(_, s)| s.iter().product::<usize>())
        .sum()
}

/// index[i, j] into the bias table for window positions i, j (row-major within the window).
pub fn relative_position_index(ws: usize) -> Vec<usize> {
    let n = ws * ws;
    let mut idx = vec![0; n * n];
    for i in 0..n {
        for j in 0..n {
            let (hi, wi) = (i / ws, i % ws);
            let (hj, wj) = (j / ws, j % ws);
            idx[i * n + j] = (hi + ws - 1 - hj) * (2 * ws - 1) + (wi + ws - 1 - wj);
        }
    }
    idx
}

/// The shifted-window mask `[nW, N, N]`: −100 between positions that came from different
/// regions of the rolled map, 0 otherwise.
pub fn shift_mask(fh: usize, fw: usize, ws: usize, shift: usize) -> Tensor<f32> {
    let region = |p: usize, size: usize| -> usize {
        if p < size - ws {
            0
        } else if p < size - shift {
            1
        } else {
            2
        }
    };
    let (nh, nw) = (fh / ws, fw / ws);
    let n = ws * ws;
    let mut data = vec![0.0f32; nh * nw * n * n];
    for wy in 0..nh {
        for wx in 0..nw {
            let ids: Vec<usize> = (0..n)
                .map(|k| {
                    let (y, x) = (wy * ws + k / ws, wx * ws + k % ws);
                    region(y, fh) * 3 + region(x, fw)
                })
                .collect();
            let base = (wy * nw + wx) * n * n;
            for i in 0..n {
                for j in 0..n {
                    if ids[i] != ids[j] {
                        data[base + i * n + j] = -100.0;
                    }
                }
            }
        }
    }
    Tensor::new(vec![nh * nw, n, n], data)
}

/// Adds the constants the graph needs but the checkpoint stores in another form: each
/// block's `[heads, N, N]` relative position bias and the shift masks for an input of
/// `h × w`. A checkpoint's own `attn_mask` buffers are replaced by recomputed ones.
pub fn derive_weights(
    cfg: &SwinIRConfig,
    weights: &mut WeightMap,
    h: usize,
    w: usize,
) -> std::result::Result<(), String> {
    let (fh, fw) = cfg.feature_hw(h, w);
    let ws = cfg.window(fh, fw);
    let n = ws * ws;
    let computed = relative_position_index(ws);
    for (i, (&depth, &heads)) in cfg.depths.iter().zip(&cfg.num_heads).enumerate() {
        for j in 0..depth {
            let p = format!("layers.{i}.residual_group.blocks.{j}");
            let tkey = format!("{p}.attn.relative_position_bias_table");
            let table = weights
                .get(&tkey)
                .ok_or_else(|| format!("missing weight {tkey}"))?;
            let rows = (2 * ws - 1) * (2 * ws - 1);
            if table.shape != [rows, heads] {
                return Err(format!(
                    "{tkey}: expected shape [{rows}, {heads}], found {:?}",
                    table.shape
                ));
            }
            if let Some(given) = weights.get(&format!("{p}.attn.relative_position_index")) {
                let same = given.data.len() == computed.len()
                    && given
                        .data
                        .iter()
                        .zip(&computed)
                        .all(|(&a, &b)| a as usize == b);
                if !same {
                    return Err(format!("{p}.attn.relative_position_index differs from the standard Swin index for window {ws}"));
                }
            }
            let mut bias = vec![0.0f32; heads * n * n];
            for (ij, &t) in computed.iter().enumerate() {
                for hd in 0..heads {
                    bias[hd * n * n + ij] = table.data[t * heads + hd];
                }
            }
            weights.insert(
                format!("{p}.attn.relative_position_bias"),
                Tensor::new(vec![heads, n, n], bias),
            );
            let shift = cfg.shift(j, fh, fw);
            if shift > 0 {
                weights.insert(format!("{p}.attn_mask"), shift_mask(fh, fw, ws, shift));
            }
        }
    }
    Ok(())
}

fn conv3(g: &mut Graph, x: NodeId, key: &str, cin: usize, cout: usize) -> Result<NodeId> {
    let w = g.constant(&format!("{key}.weight"), &[cout, cin, 3, 3]);
    let b = g.constant(&format!("{key}.bias"), &[cout]);
    g.scope(key, |g| g.conv2d(x, w, Some(b), 1, 1, 1))
}

fn linear(g: &mut Graph, x: NodeId, key: &str, cin: usize, cout: usize) -> Result<NodeId> {
    let w = g.constant(&format!("{key}.weight"), &[cout, cin]);
    let b = g.constant(&format!("{key}.bias"), &[cout]);
    g.scope(key, |g| g.linear(x, w, Some(b)))
}

fn layer_norm(g: &mut Graph, x: NodeId, key: &str, c: usize) -> Result<NodeId> {
    let w = g.constant(&format!("{key}.weight"), &[c]);
    let b = g.constant(&format!("{key}.bias"), &[c]);
    g.scope(key, |g| g.layer_norm(x, w, b, 1e-5))
}

/// Window attention over `[B·nW, N, C]` windows of a map with `n_win` windows per image.
pub fn window_attention(
    g: &mut Graph,
    xw: NodeId,
    key: &str,
    c: usize,
    heads: usize,
    mask: Option<NodeId>,
    n_win: usize,
) -> Result<NodeId> {
    let s = g.shape(xw).to_vec();
    let (bw, n) = (s[0], s[1]);
    let d = c / heads;
    let qkv = linear(g, xw, &format!("{key}.qkv"), c, 3 * c)?;
    g.scope(key, |g| {
        let qkv = g.reshape(qkv, &[bw, n, 3, heads, d])?;
        let qkv = g.permute(qkv, &[2, 0, 3, 1, 4])?;
        let parts = g.split(qkv, 0, &[1, 1, 1])?;
        let q = g.reshape(parts[0], &[bw, heads, n, d])?;
        let k = g.reshape(parts[1], &[bw, heads, n, d])?;
        let v = g.reshape(parts[2], &[bw, heads, n, d])?;
        let bias = g.constant(&format!("{key}.relative_position_bias"), &[heads, n, n]);
        let logits = g.matmul(q, k, false, true)?;
        let logits = g.scale(logits, (d as f32).powf(-0.5))?;
        let mut logits = g.add(logits, bias)?;
        if let Some(m) = mask {
            let b = bw / n_win;
            let l5 = g.reshape(logits, &[b, n_win, heads, n, n])?;
            let m5 = g.reshape(m, &[1, n_win, 1, n, n])?;
            let l5 = g.add(l5, m5)?;
            logits = g.reshape(l5, &[bw, heads, n, n])?;
        }
        let p = g.softmax(logits)?;
        let o = g.matmul(p, v, false, false)?;
        let o = g.permute(o, &[0, 2, 1, 3])?;
        g.reshape(o, &[bw, n, c])
    })
    .and_then(|o| linear(g, o, &format!("{key}.proj"), c, c))
}

/// One Swin block on tokens `[B, fh·fw, C]`.
#[allow(clippy::too_many_arguments)]
pub fn swin_block(
    g: &mut Graph,
    x: NodeId,
    key: &str,
    cfg: &SwinIRConfig,
    heads: usize,
    fh: usize,
    fw: usize,
    shift: usize,
) -> Result<NodeId> {
    let c = cfg.embed_dim;
    let b = g.shape(x)[0];
    let ws = cfg.window(fh, fw);
    let n_win = (fh / ws) * (fw / ws);
    let h = layer_norm(g, x, &format!("{key}.norm1"), c)?;
    let h = g.reshape(h, &[b, fh, fw, c])?;
    let h = if shift > 0 {
        g.roll(h, &[(1, -(shift as isize)), (2, -(shift as isize))])?
    } else {
        h
    };
    let hw = g.window_partition(h, ws)?;
    let mask = if shift > 0 {
        Some(g.constant(&format!("{key}.attn_mask"), &[n_win, ws * ws, ws * ws]))
    } else {
        None
    };
    let a = window_attention(g, hw, &format!("{key}.attn"), c, heads, mask, n_win)?;
    let a = g.window_reverse(a, ws, fh, fw)?;
    let a = if shift > 0 {
        g.roll(a, &[(1, shift as isize), (2, shift as isize)])?
    } else {
        a
    };
    let a = g.reshape(a, &[b, fh * fw, c])?;
    let x = g.add(x, a)?;
    let m = layer_norm(g, x, &format!("{key}.norm2"), c)?;
    let m = linear(g, m, &format!("{key}.mlp.fc1"), c, cfg.hidden())?;
    let m = g.gelu(m)?;
    let m = linear(g, m, &format!("{key}.mlp.fc2"), cfg.hidden(), c)?;
    g.add(x, m)
}

fn tokens_to_map(g: &mut Graph, x: NodeId, fh: usize, fw: usize) -> Result<NodeId> {
    let s = g.shape(x).to_vec();
    let t = g.permute(x, &[0, 2, 1])?;
    g.reshape(t, &[s[0], s[2], fh, fw])
}

fn map_to_tokens(g: &mut Graph, x: NodeId) -> Result<NodeId> {
    let s = g.shape(x).to_vec();
    let t = g.reshape(x, &[s[0], s[1], s[2] * s[3]])?;
    g.permute(t, &[0, 2, 1])
}

/// One residual Swin stage (RSTB) on tokens.
pub fn rstb(
    g: &mut Graph,
    x: NodeId,
    i: usize,
    cfg: &SwinIRConfig,
    fh: usize,
    fw: usize,
) -> Result<NodeId> {
    let mut h = x;
    for j in 0..cfg.depths[i] {
        let key = format!("layers.{i}.residual_group.blocks.{j}");
        h = swin_block(
            g,
            h,
            &key,
            cfg,
            cfg.num_heads[i],
            fh,
            fw,
            cfg.shift(j, fh, fw),
        )?;
    }
    let m = tokens_to_map(g, h, fh, fw)?;
    let m = conv3(
        g,
        m,
        &format!("layers.{i}.conv"),
        cfg.embed_dim,
        cfg.embed_dim,
    )?;
    let t = map_to_tokens(g, m)?;
    g.add(t, x)
}

/// Adds SwinIR applied to `x` `[B, 3, H, W]` in [0, 1]; returns `[B, 3, H', W']`.
pub fn build(g: &mut Graph, cfg: &SwinIRConfig, x: NodeId) -> Result<NodeId> {
    cfg.validate().map_err(GraphError::Other)?;
    let s = g.shape(x).to_vec();
    let (h, w) = (s[2], s[3]);
    let (fh, fw) = cfg.feature_hw(h, w);
    let unit = if cfg.unshuffle {
        cfg.upscale * cfg.window_size
    } else {
        cfg.window_size
    };
    if h % unit != 0 || w % unit != 0 {
        return Err(GraphError::Other(format!(
            "SwinIR input {h}×{w} must be a multiple of {unit} (window {} × unshuffle)",
            cfg.window_size
        )));
    }
    let c = cfg.embed_dim;
    let mean = Tensor::new(vec![1, 3, 1, 1], RGB_MEAN.to_vec());
    let mean_node = g.constant("swinir.rgb_mean", &mean.shape);
    let x0 = g.sub(x, mean_node)?;
    let x0 = g.scale(x0, cfg.img_range)?;
    let xin = if cfg.unshuffle {
        g.pixel_unshuffle(x0, cfg.upscale)?
    } else {
        x0
    };
    let first = conv3(g, xin, cfg.first_key(), cfg.in_ch_first(), c)?;
    let mut t = map_to_tokens(g, first)?;
    if cfg.patch_norm {
        t = layer_norm(g, t, "patch_embed.norm", c)?;
    }
    for i in 0..cfg.depths.len() {
        t = g.scope(&format!("layers.{i}"), |g| rstb(g, t, i, cfg, fh, fw))?;
    }
    t = layer_norm(g, t, "norm", c)?;
    let body = tokens_to_map(g, t, fh, fw)?;
    let body = conv3(g, body, "conv_after_body", c, c)?;
    let feat = g.add(body, first)?;
    let out = match cfg.upsampler.as_str() {
        "nearest+conv" => {
            let mut y = conv3(g, feat, "conv_before_upsample.0", c, 64)?;
            y = g.leaky_relu(y, 0.01)?;
            for u in 0..cfg.upscale.trailing_zeros() {
                let up = g.upsample2x(y)?;
                y = conv3(g, up, &format!("conv_up{}", u + 1), 64, 64)?;
                y = g.leaky_relu(y, 0.2)?;
            }
            let y = conv3(g, y, "conv_hr", 64, 64)?;
            let y = g.leaky_relu(y, 0.2)?;
            conv3(g, y, "conv_last", 64, cfg.in_chans)?
        }
        _ => {
            let r = conv3(g, feat, "conv_last", c, cfg.in_chans)?;
            g.add(x0, r)?
        }
    };
    let out = g.scale(out, 1.0 / cfg.img_range)?;
    g.add(out, mean_node)
}

/// The constants a built graph binds that no checkpoint holds.
pub fn builtin_constants() -> WeightMap {
    let mut m = WeightMap::new();
    m.insert(
        "swinir.rgb_mean".into(),
        Tensor::new(vec![1, 3, 1, 1], RGB_MEAN.to_vec()),
    );
    m
}
