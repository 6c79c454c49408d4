//! Building the guidance of Eq. 15 from a restored image: ŷ_i = k_{σ_i} ⊛ RM(y) with
//! σ_i = σ̂·(N−i+1)/N and start steps t_i from the DSST table.

use super::config::guidance_sigmas;
use super::run::Guidance;
use super::{Result, SamplerError};
use crate::backend::cpu::CpuBackend;
use crate::dsst::DsstTable;
use crate::exec::eval;
use crate::graph::Graph;
use crate::tensor::Tensor;
use std::collections::HashMap;

/// `restored` is RM(y) `[B,C,H,W]` in [0, 1]; `sigma_hat[b]` the estimated blur of sample b.
pub fn multi_guidance(
    restored: &Tensor<f64>,
    sigma_hat: &[f64],
    num: usize,
    table: &DsstTable,
) -> Result<Guidance> {
    let shape = &restored.shape;
    if shape.len() != 4 || shape[0] != sigma_hat.len() {
        return Err(SamplerError::Input(format!(
            "restored images {shape:?} and {} σ̂ values: need [B,C,H,W] with one σ̂ per image",
            sigma_hat.len()
        )));
    }
    if num == 0 {
        return Err(SamplerError::Input(
            "need at least one guidance image".into(),
        ));
    }
    if let Some(s) = sigma_hat.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(SamplerError::Input(format!(
            "σ̂ = {s} must be finite and > 0"
        )));
    }
    let b = shape[0];
    // per_sample[b][i] = σ_i of sample b
    let per_sample: Vec<Vec<f64>> = sigma_hat.iter().map(|&s| guidance_sigmas(s, num)).collect();
    let sigma: Vec<Vec<f64>> = (0..num)
        .map(|i| (0..b).map(|s| per_sample[s][i]).collect())
        .collect();
    let mut g = Graph::new();
    let x = g.input("x", shape);
    let s = g.input("sigma", &[b]);
    let y = g.gaussian_blur(x, s)?;
    let images = sigma
        .iter()
        .map(|sig| {
            let st = Tensor::new(vec![b], sig.clone());
            let out = eval(
                CpuBackend::<f64>::new(),
                &g,
                &[y],
                &[("x", restored), ("sigma", &st)],
                &HashMap::new(),
            )?;
            Ok(out.into_iter().next().expect("one output"))
        })
        .collect::<Result<Vec<_>>>()?;
    let start = sigma
        .iter()
        .map(|sig| sig.iter().map(|&s| table.lookup(s)).collect())
        .collect();
    Ok(Guidance {
        images,
        sigma,
        start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::random;

    #[test]
    fn guidance_widths_steps_and_images() {
        let table = DsstTable {
            tau: 0.01,
            schedule: "linear1000".into(),
            sigma: crate::dsst::sigma_grid(),
            t: (0..150).map(|i| 600 + 2 * i).collect(),
            residual: vec![],
        };
        let mut rng = random::rng(5);
        let x: Tensor<f64> = random::uniform(&mut rng, &[2, 3, 12, 12], 0.0, 1.0);
        let gd = multi_guidance(&x, &[3.0, 6.0], 3, &table).unwrap();
        assert_eq!(
            gd.sigma,
            vec![vec![3.0, 6.0], vec![2.0, 4.0], vec![1.0, 2.0]]
        );
        assert_eq!(gd.start[0], vec![table.lookup(3.0), table.lookup(6.0)]);
        assert!(gd.start[0][0] > gd.start[1][0] && gd.start[1][0] > gd.start[2][0]);
        // Blurring keeps the [0, 1] range and smooths: less variance than the input.
        let var = |t: &Tensor<f64>| {
            let m = t.data.iter().sum::<f64>() / t.data.len() as f64;
            t.data.iter().map(|v| (v - m) * (v - m)).sum::<f64>()
        };
        for im in &gd.images {
            assert_eq!(im.shape, x.shape);
            assert!(im.data.iter().all(|v| (0.0..=1.0).contains(v)));
            assert!(var(im) < var(&x));
        }
        assert!(multi_guidance(&x, &[3.0], 3, &table).is_err());
        assert!(multi_guidance(&x, &[3.0, f64::NAN], 3, &table).is_err());
    }
}
