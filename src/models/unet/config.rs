//! The UNet's hyper-parameters, read from JSON with guided-diffusion's `UNetModel` argument
//! names. Two conventions differ from the SDK and follow DifFace instead: `num_res_blocks`
//! may be a per-level list, and `attention_resolutions` are feature sizes in pixels (32 means
//! "at the 32×32 level"), not downsample ratios.
//!
//! The JSON is parsed into a loose form first (ints or lists or comma strings), then checked
//! and normalised into [`UNetConfig`], so every error names the field and the value.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// GroupNorm32 of guided-diffusion: 32 groups, eps 1e-5.
pub const GN_GROUPS: usize = 32;
/// Most resolution levels, res blocks per level, channels and pixels a config may ask for.
pub const MAX_LEVELS: usize = 12;
pub const MAX_RES_BLOCKS: usize = 32;
pub const MAX_CHANNELS: usize = 1 << 16;
pub const MAX_IMAGE_SIZE: usize = 1 << 14;
pub const GN_EPS: f32 = 1e-5;

/// A checked UNet configuration. Lists are normalised: one entry per level.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UNetConfig {
    pub image_size: usize,
    pub in_channels: usize,
    pub model_channels: usize,
    pub out_channels: usize,
    /// Res-blocks per level on the way down (the way up has one more per level).
    pub num_res_blocks: Vec<usize>,
    /// Feature sizes in pixels at which blocks carry self-attention.
    pub attention_resolutions: Vec<usize>,
    /// Width multiplier of each level (the SDK truncates `mult·model_channels` to an int).
    #[serde(serialize_with = "serialize_mults")]
    pub channel_mult: Vec<f64>,
    pub num_heads: usize,
    /// Channels per head; -1 means "use `num_heads`".
    pub num_head_channels: i64,
    /// Heads of the decoder's attention when `num_head_channels` is -1 (-1 in JSON: the
    /// SDK's rule, `num_heads`). DifFace's own UNet gives its decoder attention one head in
    /// that case; such a config reproduces it with `num_heads_upsample: 1`. Irrelevant for
    /// FFHQ 512, which sets 64 channels per head.
    pub num_heads_upsample: usize,
    pub use_scale_shift_norm: bool,
    pub resblock_updown: bool,
    pub use_new_attention_order: bool,
    /// Plain (non-resblock) resampling uses a 3×3 conv; false: avg-pool / nearest only.
    pub conv_resample: bool,
    pub dropout: f64,
    /// Whether the second half of the output channels is the learned variance; `None` when
    /// the config does not say (DifFace keeps it with the diffusion settings), see
    /// [`UNetConfig::learns_sigma`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learn_sigma: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
#[error("UNet config{}: {msg}", .source_name.as_deref().map(|s| format!(" {s}")).unwrap_or_default())]
pub struct ConfigError {
    pub source_name: Option<String>,
    pub msg: String,
}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError {
        source_name: None,
        msg: msg.into(),
    })
}

/// The JSON as written: flexible types, everything optional so missing fields get a clear
/// message instead of serde's generic one. Unknown fields (use_fp16, diffusion settings,
/// fixture metadata) are ignored on purpose: real configs carry many of them.
#[derive(Deserialize, Default)]
struct RawConfig {
    image_size: Option<usize>,
    in_channels: Option<usize>,
    model_channels: Option<usize>,
    out_channels: Option<usize>,
    num_res_blocks: Option<Value>,
    attention_resolutions: Option<Value>,
    channel_mult: Option<Value>,
    num_heads: Option<i64>,
    num_head_channels: Option<i64>,
    num_heads_upsample: Option<i64>,
    use_scale_shift_norm: Option<bool>,
    resblock_updown: Option<bool>,
    use_new_attention_order: Option<bool>,
    conv_resample: Option<bool>,
    dropout: Option<f64>,
    learn_sigma: Option<bool>,
    num_classes: Option<Value>,
    dims: Option<usize>,
}

/// Whole multipliers are written as integers, as configs usually have them.
fn serialize_mults<S: serde::Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(v.len()))?;
    for &m in v {
        if m.fract() == 0.0 && (0.0..1e15).contains(&m) {
            seq.serialize_element(&(m as u64))?;
        } else {
            seq.serialize_element(&m)?;
        }
    }
    seq.end()
}

fn required<T>(v: Option<T>, field: &str) -> Result<T, ConfigError> {
    match v {
        Some(v) => Ok(v),
        None => err(format!("missing field `{field}`")),
    }
}

/// A list of numbers given as a JSON array, a single number, or a comma string "1,2,4".
fn number_list(v: &Value, field: &str) -> Result<Vec<f64>, ConfigError> {
    let bad = |what: String| ConfigError {
        source_name: None,
        msg: format!("`{field}`: {what} (got {v})"),
    };
    let parse = |s: &str| {
        s.trim()
            .parse::<f64>()
            .map_err(|_| bad(format!("`{}` is not a number", s.trim())))
    };
    match v {
        Value::Number(n) => Ok(vec![n.as_f64().unwrap_or(f64::NAN)]),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::Number(n) => Ok(n.as_f64().unwrap_or(f64::NAN)),
                Value::String(s) => parse(s),
                _ => Err(bad(format!("list entry {i} is not a number"))),
            })
            .collect(),
        Value::String(s) if s.trim().is_empty() => Ok(vec![]),
        Value::String(s) => s.split(',').map(parse).collect(),
        _ => Err(bad(
            "expected a number, a list or a comma-separated string".into()
        )),
    }
}

fn usize_list(v: &Value, field: &str) -> Result<Vec<usize>, ConfigError> {
    number_list(v, field)?
        .into_iter()
        .map(|x| {
            if x.is_finite() && x >= 0.0 && x.fract() == 0.0 {
                Ok(x as usize)
            } else {
                err(format!("`{field}`: {x} is not a non-negative integer"))
            }
        })
        .collect()
}

impl UNetConfig {
    /// DifFace's FFHQ 512 prior (`iddpm_ffhq512_ema500000.pth`, METHOD.md §4).
    pub fn ffhq512() -> Self {
        UNetConfig {
            image_size: 512,
            in_channels: 3,
            model_channels: 32,
            out_channels: 6,
            num_res_blocks: vec![1, 2, 2, 2, 2, 3, 4],
            attention_resolutions: vec![32, 16, 8],
            channel_mult: vec![1.0, 2.0, 4.0, 8.0, 8.0, 16.0, 16.0],
            num_heads: 1,
            num_head_channels: 64,
            num_heads_upsample: 1,
            use_scale_shift_norm: true,
            resblock_updown: false,
            use_new_attention_order: false,
            conv_resample: true,
            dropout: 0.0,
            learn_sigma: None,
        }
    }

    pub fn from_json_str(s: &str) -> Result<Self, ConfigError> {
        let v: Value = serde_json::from_str(s).map_err(|e| ConfigError {
            source_name: None,
            msg: format!("not valid JSON: {e}"),
        })?;
        Self::from_value(&v)
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let name = Some(path.display().to_string());
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source_name: name.clone(),
            msg: format!("cannot read: {e}"),
        })?;
        Self::from_json_str(&text).map_err(|e| ConfigError {
            source_name: name,
            msg: e.msg,
        })
    }

    pub fn from_value(v: &Value) -> Result<Self, ConfigError> {
        if !v.is_object() {
            return err(format!("expected a JSON object, got {v}"));
        }
        let raw: RawConfig = serde_json::from_value(v.clone()).map_err(|e| ConfigError {
            source_name: None,
            msg: format!("bad field type: {e}"),
        })?;
        Self::from_raw(raw)
    }

    fn from_raw(r: RawConfig) -> Result<Self, ConfigError> {
        if let Some(nc) = &r.num_classes {
            if !nc.is_null() {
                return err(format!(
                    "class-conditional models (num_classes = {nc}) are not supported"
                ));
            }
        }
        if let Some(d) = r.dims {
            if d != 2 {
                return err(format!("dims = {d}: only 2-D UNets are supported"));
            }
        }
        let image_size = required(r.image_size, "image_size")?;
        let in_channels = required(r.in_channels, "in_channels")?;
        let model_channels = required(r.model_channels, "model_channels")?;
        let channel_mult = number_list(&required(r.channel_mult, "channel_mult")?, "channel_mult")?;
        let levels = channel_mult.len();
        let nrb = usize_list(
            &required(r.num_res_blocks, "num_res_blocks")?,
            "num_res_blocks",
        )?;
        let num_res_blocks = match nrb.len() {
            1 => vec![nrb[0]; levels],
            n if n == levels => nrb,
            n => {
                return err(format!(
                    "`num_res_blocks` has {n} entries but `channel_mult` has {levels} levels"
                ))
            }
        };
        let attention_resolutions = usize_list(
            &r.attention_resolutions.unwrap_or(Value::Array(vec![])),
            "attention_resolutions",
        )?;
        // Like guided-diffusion's create_model: out_channels follows learn_sigma if absent.
        let out_channels = match (r.out_channels, r.learn_sigma) {
            (Some(o), _) => o,
            (None, Some(ls)) => in_channels * if ls { 2 } else { 1 },
            (None, None) => return err("missing field `out_channels` (or `learn_sigma`)"),
        };
        let num_heads = r.num_heads.unwrap_or(1);
        let num_heads_upsample = match r.num_heads_upsample.unwrap_or(-1) {
            -1 => num_heads,
            n => n,
        };
        if num_heads < 1 || num_heads_upsample < 1 {
            return err(format!(
                "`num_heads` ({num_heads}) and `num_heads_upsample` ({num_heads_upsample}) must be ≥ 1 (-1 for the latter means num_heads)"
            ));
        }
        let cfg = UNetConfig {
            image_size,
            in_channels,
            model_channels,
            out_channels,
            num_res_blocks,
            attention_resolutions,
            channel_mult,
            num_heads: num_heads as usize,
            num_head_channels: r.num_head_channels.unwrap_or(-1),
            num_heads_upsample: num_heads_upsample as usize,
            use_scale_shift_norm: r.use_scale_shift_norm.unwrap_or(false),
            resblock_updown: r.resblock_updown.unwrap_or(false),
            use_new_attention_order: r.use_new_attention_order.unwrap_or(false),
            conv_resample: r.conv_resample.unwrap_or(true),
            dropout: r.dropout.unwrap_or(0.0),
            learn_sigma: r.learn_sigma,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn levels(&self) -> usize {
        self.channel_mult.len()
    }

    /// Channels of `level`, truncated like the SDK's `int(mult * model_channels)`.
    pub fn width(&self, level: usize) -> usize {
        (self.channel_mult[level] * self.model_channels as f64) as usize
    }

    /// Whether the output carries a learned variance after the mean: as stated, else
    /// guided-diffusion's convention of twice the input channels.
    pub fn learns_sigma(&self) -> bool {
        self.learn_sigma
            .unwrap_or(self.out_channels == 2 * self.in_channels)
    }

    /// Time-embedding width: 4 × model_channels.
    pub fn emb_dim(&self) -> usize {
        4 * self.model_channels
    }

    /// Feature sizes in pixels of each level at the configured image size.
    pub fn level_sizes(&self) -> Vec<usize> {
        (0..self.levels()).map(|l| self.image_size >> l).collect()
    }

    pub fn has_attention(&self, size: usize) -> bool {
        self.attention_resolutions.contains(&size)
    }

    /// Heads of an attention block over `ch` channels (`up`: in the decoder).
    pub fn heads(&self, ch: usize, up: bool) -> usize {
        if self.num_head_channels > 0 {
            ch / self.num_head_channels as usize
        } else if up {
            self.num_heads_upsample
        } else {
            self.num_heads
        }
    }

    /// Every rule the graph builder relies on, checked up front with a readable message.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let levels = self.levels();
        if levels == 0 {
            return err("`channel_mult` is empty");
        }
        if self.in_channels == 0 || self.out_channels == 0 {
            return err("`in_channels` and `out_channels` must be positive");
        }
        // Plausibility caps: every real ADM UNet is far inside them, and they keep a hostile
        // config from making the builder loop or the key spec overflow.
        if levels > MAX_LEVELS {
            return err(format!(
                "{levels} levels in `channel_mult`; at most {MAX_LEVELS} are supported"
            ));
        }
        if let Some(&n) = self.num_res_blocks.iter().find(|&&n| n > MAX_RES_BLOCKS) {
            return err(format!(
                "`num_res_blocks` = {n} at a level; at most {MAX_RES_BLOCKS} per level are supported"
            ));
        }
        if self.model_channels > MAX_CHANNELS || self.image_size > MAX_IMAGE_SIZE {
            return err(format!(
                "`model_channels` = {} / `image_size` = {}: at most {MAX_CHANNELS} channels and {MAX_IMAGE_SIZE} pixels are supported",
                self.model_channels, self.image_size
            ));
        }
        if let Some(m) = self
            .channel_mult
            .iter()
            .find(|m| !(m.is_finite() && **m * self.model_channels as f64 <= MAX_CHANNELS as f64))
        {
            return err(format!(
                "`channel_mult` entry {m} × model_channels {} exceeds {MAX_CHANNELS} channels",
                self.model_channels
            ));
        }
        // With no res block at a level the channel count does not change there, so the
        // widths every later check (and the key spec) assume would be wrong.
        if let Some(l) = self.num_res_blocks.iter().position(|&n| n == 0) {
            return err(format!(
                "`num_res_blocks` is 0 at level {l}; every level needs at least one res block"
            ));
        }
        if self.model_channels == 0 || !self.model_channels.is_multiple_of(2) {
            return err(format!(
                "`model_channels` = {} must be positive and even (the sinusoidal timestep embedding has that width)",
                self.model_channels
            ));
        }
        if self.dropout != 0.0 {
            return err(format!(
                "`dropout` = {}: this engine runs inference only, dropout must be 0",
                self.dropout
            ));
        }
        if self.learn_sigma == Some(true) && !self.out_channels.is_multiple_of(2) {
            return err(format!(
                "`learn_sigma` is true but `out_channels` = {} is odd",
                self.out_channels
            ));
        }
        for (l, &m) in self.channel_mult.iter().enumerate() {
            let w = self.width(l);
            if m.is_nan() || m <= 0.0 || w == 0 || !w.is_multiple_of(GN_GROUPS) {
                return err(format!(
                    "level {l}: channel_mult {m} × model_channels {} = {w} channels; GroupNorm32 needs a positive multiple of {GN_GROUPS}",
                    self.model_channels
                ));
            }
        }
        let factor = 1usize << (levels - 1);
        if self.image_size == 0 || !self.image_size.is_multiple_of(factor) {
            return err(format!(
                "`image_size` = {} must be divisible by 2^(levels−1) = {factor} ({levels} levels)",
                self.image_size
            ));
        }
        let sizes = self.level_sizes();
        for &a in &self.attention_resolutions {
            if !sizes.contains(&a) {
                return err(format!(
                    "`attention_resolutions` entry {a} is not a feature size of this UNet (sizes {sizes:?}); they are pixels, not downsample ratios"
                ));
            }
        }
        if self.num_head_channels == 0 || self.num_head_channels < -1 {
            return err(format!(
                "`num_head_channels` = {} must be positive or -1",
                self.num_head_channels
            ));
        }
        // (channels, decoder?) of every attention block: encoder and decoder at marked
        // sizes, plus the middle block, which always has one.
        let mut blocks = vec![(self.width(levels - 1), false)];
        for (l, &size) in sizes.iter().enumerate() {
            if self.has_attention(size) {
                blocks.push((self.width(l), false));
                blocks.push((self.width(l), true));
            }
        }
        for (ch, up) in blocks {
            if self.num_head_channels > 0 && ch % self.num_head_channels as usize != 0 {
                return err(format!(
                    "{ch} attention channels are not divisible by num_head_channels {}",
                    self.num_head_channels
                ));
            }
            let heads = self.heads(ch, up);
            if heads == 0 || ch % heads != 0 {
                return err(format!(
                    "{ch} attention channels do not split into {heads} heads"
                ));
            }
        }
        Ok(())
    }

    /// The configuration as JSON in the argument names it is read from.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "image_size": 64, "in_channels": 3, "model_channels": 32, "out_channels": 6,
            "num_res_blocks": 2, "attention_resolutions": "16,8", "channel_mult": "1,2,2,4",
            "num_heads": 4, "num_head_channels": -1, "use_scale_shift_norm": true,
            "dropout": 0.0, "use_fp16": false
        })
    }

    fn error_of(mut v: Value, key: &str, val: Value) -> String {
        if val.is_null() {
            v.as_object_mut().unwrap().remove(key);
        } else {
            v[key] = val;
        }
        UNetConfig::from_value(&v).unwrap_err().to_string()
    }

    #[test]
    fn ffhq512_round_trips_through_json() {
        let c = UNetConfig::ffhq512();
        let text = c.to_json();
        assert!(text.contains("\"channel_mult\": [\n    1,"), "{text}");
        assert_eq!(UNetConfig::from_json_str(&text).unwrap(), c);
        c.validate().unwrap();
        assert_eq!(c.width(6), 512);
        assert_eq!(c.level_sizes(), vec![512, 256, 128, 64, 32, 16, 8]);
    }

    #[test]
    fn strings_and_scalars_are_normalised() {
        let c = UNetConfig::from_value(&base()).unwrap();
        assert_eq!(c.num_res_blocks, vec![2, 2, 2, 2]);
        assert_eq!(c.attention_resolutions, vec![16, 8]);
        assert_eq!(c.channel_mult, vec![1.0, 2.0, 2.0, 4.0]);
        // -1 (here: absent) means the encoder's head count.
        assert_eq!(c.num_heads_upsample, 4);
        assert_eq!(c.heads(64, true), 4);
        assert!(c.learns_sigma());
        let mut v = base();
        v["num_res_blocks"] = json!([1, 2, 3, 1]);
        v["attention_resolutions"] = json!([8]);
        v["channel_mult"] = json!([1, 2, 2, 4]);
        v["num_head_channels"] = json!(32);
        v["num_heads_upsample"] = json!(-1);
        let c = UNetConfig::from_value(&v).unwrap();
        assert_eq!(c.num_res_blocks, vec![1, 2, 3, 1]);
        assert_eq!(c.heads(128, false), 4);
        assert_eq!(c.heads(64, true), 2);
    }

    #[test]
    fn out_channels_follows_learn_sigma_when_absent() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("out_channels");
        v["learn_sigma"] = json!(false);
        assert_eq!(UNetConfig::from_value(&v).unwrap().out_channels, 3);
        v["learn_sigma"] = json!(true);
        assert_eq!(UNetConfig::from_value(&v).unwrap().out_channels, 6);
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let cases = [
            ("image_size", Value::Null, "missing field `image_size`"),
            ("dropout", json!(0.1), "dropout"),
            ("num_res_blocks", json!([1, 2]), "2 entries"),
            ("attention_resolutions", json!([4, 3]), "not a feature size"),
            ("channel_mult", json!("1,x"), "`x` is not a number"),
            ("channel_mult", json!([]), "empty"),
            ("model_channels", json!(48), "multiple of 32"),
            ("image_size", json!(60), "divisible"),
            ("num_heads", json!(3), "heads"),
            ("num_head_channels", json!(48), "num_head_channels"),
            ("num_classes", json!(1000), "class-conditional"),
            ("num_res_blocks", json!(1.5), "not a non-negative integer"),
            ("num_res_blocks", json!([2, 2, 0, 2]), "0 at level 2"),
            // Found by the configs fuzz target: building 2.2e17 res blocks never ends.
            (
                "num_res_blocks",
                json!([1, 2, 222222222222222222u64, 2]),
                "at most 32",
            ),
            (
                "channel_mult",
                json!([1, 2, 1e300, 4]),
                "exceeds 65536 channels",
            ),
            (
                "model_channels",
                json!(1u64 << 40),
                "at most 65536 channels",
            ),
            ("channel_mult", json!(vec![1; 13]), "at most 12"),
            ("use_scale_shift_norm", json!("yes"), "bad field type"),
        ];
        for (key, val, want) in cases {
            let e = error_of(base(), key, val.clone());
            assert!(e.contains(want), "{key} = {val}: {e}");
        }
        let e = UNetConfig::from_json_str("{ not json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not valid JSON"), "{e}");
        let e = UNetConfig::from_file(Path::new("/nonexistent/unet.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/unet.json"), "{e}");
    }

    /// Found by the `configs` fuzz target: with no res block at a level the channels do not
    /// grow there, the middle block's attention got fewer channels than validated, and the
    /// builder divided by zero heads. Now the config is refused by validation, which both
    /// the key spec and the builder run first (the attention block also refuses 0 heads).
    #[test]
    fn zero_res_blocks_are_refused_and_never_panic_the_builder() {
        let mut cfg = UNetConfig::from_value(&base()).unwrap();
        cfg.num_head_channels = 64;
        cfg.num_res_blocks = vec![0; cfg.channel_mult.len()];
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("at least one res block"));
        let e = crate::models::unet::model::unet_spec(&cfg).unwrap_err();
        assert!(format!("{e:#}").contains("at least one res block"), "{e:#}");
        let mut g = crate::graph::Graph::new();
        let x = g.input("x", &[1, 3, 64, 64]);
        let t = g.input("t", &[1]);
        let e = crate::models::unet::model::build_unet(&mut g, &cfg, x, t).unwrap_err();
        assert!(e.to_string().contains("at least one res block"), "{e}");
    }
}
