//! The optimiser: AdamW (Loshchilov & Hutter: bias-corrected Adam moments, weight decay
//! decoupled from the gradient), clipping by the global gradient norm, a linear warm-up then
//! cosine learning-rate schedule, and an exponential moving average of the weights.
//!
//! Parameters and moments are f32 like the checkpoints; each update is computed in f64 and
//! rounded once, so a run is a pure function of its inputs and resumes bit-exactly.

use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Named tensors in a fixed (sorted) order, so every pass over them is reproducible.
pub type Params = BTreeMap<String, Tensor<f32>>;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Decay vectors (biases, norm scales) too; off by default, as is usual for AdamW.
    pub decay_vectors: bool,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            decay_vectors: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct AdamW {
    pub cfg: AdamWConfig,
    /// Updates taken so far (the t of the bias correction).
    pub step: u64,
    pub m: Params,
    pub v: Params,
}

impl AdamW {
    pub fn new(cfg: AdamWConfig) -> Self {
        AdamW {
            cfg,
            step: 0,
            m: Params::new(),
            v: Params::new(),
        }
    }

    /// One update of every parameter that has a gradient, at learning rate `lr`:
    /// p ← p·(1 − lr·λ) − lr·m̂/(√v̂ + ε), m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ).
    pub fn update(&mut self, params: &mut Params, grads: &Params, lr: f64) -> Result<(), String> {
        self.step += 1;
        let t = self.step as i32;
        let c = &self.cfg;
        let (bc1, bc2) = (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t));
        for (name, g) in grads {
            let p = params
                .get_mut(name)
                .ok_or_else(|| format!("gradient for {name}, which is not a parameter"))?;
            if p.shape != g.shape {
                return Err(format!(
                    "{name}: gradient shape {:?} but parameter {:?}",
                    g.shape, p.shape
                ));
            }
            let zeros = || Tensor::zeros(&g.shape);
            let m = self.m.entry(name.clone()).or_insert_with(zeros);
            let v = self.v.entry(name.clone()).or_insert_with(zeros);
            let decay = if p.shape.len() >= 2 || c.decay_vectors {
                1.0 - lr * c.weight_decay
            } else {
                1.0
            };
            for i in 0..g.data.len() {
                let gi = g.data[i] as f64;
                let mi = c.beta1 * m.data[i] as f64 + (1.0 - c.beta1) * gi;
                let vi = c.beta2 * v.data[i] as f64 + (1.0 - c.beta2) * gi * gi;
                m.data[i] = mi as f32;
                v.data[i] = vi as f32;
                let step = lr * (mi / bc1) / ((vi / bc2).sqrt() + c.eps);
                p.data[i] = (p.data[i] as f64 * decay - step) as f32;
            }
        }
        Ok(())
    }
}

/// ‖g‖₂ over every tensor together.
pub fn global_norm(grads: &Params) -> f64 {
    grads
        .values()
        .flat_map(|t| t.data.iter())
        .map(|&v| (v as f64) * (v as f64))
        .sum::<f64>()
        .sqrt()
}

/// Scales all gradients by max_norm/‖g‖ when ‖g‖ exceeds `max_norm`; returns ‖g‖ before.
/// Non-finite norms are returned unchanged for the caller to refuse the step.
pub fn clip_global_norm(grads: &mut Params, max_norm: f64) -> f64 {
    let n = global_norm(grads);
    if n.is_finite() && max_norm > 0.0 && n > max_norm {
        let s = max_norm / n;
        for t in grads.values_mut() {
            t.data.iter_mut().for_each(|v| *v = (*v as f64 * s) as f32);
        }
    }
    n
}

/// Linear warm-up from 0 over `warmup` steps, then a cosine from `lr` down to `min_lr` at
/// `total` steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub lr: f64,
    pub min_lr: f64,
    pub warmup: u64,
    pub total: u64,
}

impl Schedule {
    /// Learning rate of update number `step` (0-based).
    pub fn at(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        let p = ((step - self.warmup) as f64 / span).min(1.0);
        self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + (std::f64::consts::PI * p).cos())
    }
}

/// e ← d·e + (1 − d)·p for every parameter (initialised to the parameters themselves).
pub fn ema_update(ema: &mut Params, params: &Params, decay: f64) {
    for (name, p) in params {
        let e = ema.entry(name.clone()).or_insert_with(|| p.clone());
        for (a, &b) in e.data.iter_mut().zip(&p.data) {
            *a = (decay * *a as f64 + (1.0 - decay) * b as f64) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, shape: &[usize], v: f32) -> Params {
        let mut p = Params::new();
        p.insert(name.into(), Tensor::full(shape, v));
        p
    }

    /// Two AdamW steps on one matrix entry, worked by hand (lr 0.1, β = (0.9, 0.999),
    /// ε = 1e-8, λ = 0.01, gradients 0.5 then −0.25, p₀ = 1):
    /// step 1: p = 1·(1 − 0.001) = 0.999; m = 0.05, v = 0.001·0.25 = 2.5e-4;
    ///   m̂ = 0.05/0.1 = 0.5, v̂ = 2.5e-4/0.001 = 0.25, √v̂ = 0.5;
    ///   p = 0.999 − 0.1·0.5/(0.5 + 1e-8) = 0.999 − 0.099999998 = 0.899000002.
    /// step 2: p = 0.899000002·0.999 = 0.898101002; m = 0.045 − 0.025 = 0.02,
    ///   v = 0.999·2.5e-4 + 0.001·0.0625 = 3.1225e-4; m̂ = 0.02/0.19 = 0.105263158,
    ///   v̂ = 3.1225e-4/0.001999 = 0.156203102, √v̂ = 0.395225382;
    ///   p = 0.898101002 − 0.1·0.105263158/0.395225382 = 0.898101002 − 0.026633715 = 0.871467287.
    /// A bias vector gets no decay: its step 1 is 1 − 0.099999998 = 0.900000002.
    #[test]
    fn adamw_matches_two_hand_computed_steps() {
        let mut opt = AdamW::new(AdamWConfig {
            weight_decay: 0.01,
            ..AdamWConfig::default()
        });
        let mut p = one("w", &[1, 1], 1.0);
        p.insert("b".into(), Tensor::full(&[1], 1.0));
        let mut g = one("w", &[1, 1], 0.5);
        g.insert("b".into(), Tensor::full(&[1], 0.5));
        opt.update(&mut p, &g, 0.1).unwrap();
        // f32 rounding of values near 1 is 6e-8.
        assert!(
            (p["w"].data[0] as f64 - 0.899000002).abs() < 1e-7,
            "{}",
            p["w"].data[0]
        );
        assert!(
            (p["b"].data[0] as f64 - 0.900000002).abs() < 1e-7,
            "{}",
            p["b"].data[0]
        );
        let g = one("w", &[1, 1], -0.25);
        opt.update(&mut p, &g, 0.1).unwrap();
        assert!(
            (p["w"].data[0] as f64 - 0.871467287).abs() < 1e-7,
            "{}",
            p["w"].data[0]
        );
        // Moments are stored in f32: two ulps at 0.02 are 3.7e-9, at 3.1e-4 5.8e-11.
        assert!((opt.m["w"].data[0] as f64 - 0.02).abs() < 4e-9);
        assert!((opt.v["w"].data[0] as f64 - 3.1225e-4).abs() < 6e-11);
        assert_eq!(opt.step, 2);
        let bad = one("nope", &[1], 1.0);
        assert!(opt.update(&mut p, &bad, 0.1).is_err());
    }

    #[test]
    fn clipping_scales_to_the_global_norm() {
        // ‖(3, 4)‖ = 5 → scaled by 2/5 to (1.2, 1.6).
        let mut g = one("a", &[1], 3.0);
        g.insert("b".into(), Tensor::full(&[1], 4.0));
        let n = clip_global_norm(&mut g, 2.0);
        assert!((n - 5.0).abs() < 1e-12);
        assert!((g["a"].data[0] - 1.2).abs() < 1e-6 && (g["b"].data[0] - 1.6).abs() < 1e-6);
        // Under the limit nothing changes.
        let n = clip_global_norm(&mut g, 10.0);
        assert!((n - 2.0).abs() < 1e-6 && (g["a"].data[0] - 1.2).abs() < 1e-6);
    }

    #[test]
    fn schedule_warms_up_linearly_then_follows_the_cosine() {
        let s = Schedule {
            lr: 1.0,
            min_lr: 0.1,
            warmup: 4,
            total: 14,
        };
        // Warm-up: 1/4, 2/4, 3/4, 4/4.
        for (k, want) in [0.25, 0.5, 0.75, 1.0].iter().enumerate() {
            assert!((s.at(k as u64) - want).abs() < 1e-12);
        }
        // Half-way through the 10 cosine steps: 0.1 + 0.45·(1 + cos(π/2)) = 0.55.
        assert!((s.at(9) - 0.55).abs() < 1e-12);
        assert!((s.at(14) - 0.1).abs() < 1e-12 && (s.at(100) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn ema_starts_at_the_weights_and_moves_by_one_minus_decay() {
        let mut ema = Params::new();
        ema_update(&mut ema, &one("w", &[2], 2.0), 0.9);
        assert_eq!(ema["w"].data, vec![2.0, 2.0]);
        // 0.9·2 + 0.1·4 = 2.2
        ema_update(&mut ema, &one("w", &[2], 4.0), 0.9);
        assert!((ema["w"].data[0] - 2.2).abs() < 1e-6);
    }
}
