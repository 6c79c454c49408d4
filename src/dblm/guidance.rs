//! The guidance of Eq. 15: widths σ_i = σ̂·(N−i+1)/N (METHOD.md's choice) and images
//! ŷ_i = k_{σ_i} ⊛ RM(y). The N blurs are one graph (one `GaussianBlur` node per guidance
//! image, sharing the input), planned once for a batch shape on the caller's backend, so a GPU
//! pipeline blurs on the GPU and the plan is reused for every batch.

use crate::backend::Backend;
use crate::exec::{ExecError, Executor};
use crate::graph::plan::PlanOptions;
use crate::graph::{Graph, GraphError, NodeId};
use crate::tensor::{Scalar, Tensor};

/// σ_i = σ̂·(N−i+1)/N for i = 1..N (METHOD.md Eq. 15 choice): σ̂ first, the largest.
pub fn guidance_sigmas(sigma_hat: f64, n: usize) -> Vec<f64> {
    (1..=n)
        .map(|i| sigma_hat * (n - i + 1) as f64 / n as f64)
        .collect()
}

/// The σ_i of a batch, `[i][b]`: σ̂ and then every σ_i clamped to `[lo, hi]` (the range the
/// sampler's refinement keeps σ in).
pub fn batch_sigmas(sigma_hat: &[f64], n: usize, lo: f64, hi: f64) -> Vec<Vec<f64>> {
    let mut sigma = vec![vec![0.0; sigma_hat.len()]; n];
    for (b, &sh) in sigma_hat.iter().enumerate() {
        for (i, si) in guidance_sigmas(sh.clamp(lo, hi), n).into_iter().enumerate() {
            sigma[i][b] = si.clamp(lo, hi);
        }
    }
    sigma
}

#[derive(Debug, thiserror::Error)]
pub enum GuidanceError {
    #[error("guidance blur graph: {0}")]
    Graph(#[from] GraphError),
    #[error("guidance blur: {0}")]
    Exec(#[from] ExecError),
    #[error("guidance blur input: {0}")]
    Input(String),
}

/// ŷ_i = k_{σ_i} ⊛ x for N widths per image of a `[B, C, H, W]` batch, planned once.
pub struct GuidanceBlur<B: Backend> {
    /// `None` for N = 0 (unguided sampling): nothing to plan.
    ex: Option<Executor<B>>,
    outs: Vec<NodeId>,
    shape: [usize; 4],
}

fn sigma_input(i: usize) -> String {
    format!("sigma{i}")
}

impl<B: Backend> GuidanceBlur<B> {
    pub fn new(backend: B, shape: [usize; 4], n: usize) -> Result<Self, GuidanceError> {
        if n == 0 {
            return Ok(GuidanceBlur {
                ex: None,
                outs: vec![],
                shape,
            });
        }
        let mut g = Graph::new();
        let x = g.input("x", &shape);
        let outs = (0..n)
            .map(|i| {
                let s = g.input(&sigma_input(i), &[shape[0]]);
                g.gaussian_blur(x, s)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ex = Executor::new(backend, &g, &outs, PlanOptions::default())?;
        Ok(GuidanceBlur {
            ex: Some(ex),
            outs,
            shape,
        })
    }

    /// Bytes of the plan's arena (0 for N = 0).
    pub fn peak_bytes(&self) -> usize {
        self.ex.as_ref().map_or(0, |e| e.peak_bytes())
    }

    /// The N blurred copies of `x`; `sigma[i][b]` is σ_i of image b.
    pub fn run(
        &mut self,
        x: &Tensor<B::Elem>,
        sigma: &[Vec<f64>],
    ) -> Result<Vec<Tensor<B::Elem>>, GuidanceError> {
        let b = self.shape[0];
        if x.shape != self.shape {
            return Err(GuidanceError::Input(format!(
                "images {:?}, planned for {:?}",
                x.shape, self.shape
            )));
        }
        if sigma.len() != self.outs.len() || sigma.iter().any(|s| s.len() != b) {
            return Err(GuidanceError::Input(format!(
                "need {} σ lists of {b} values, got {:?}",
                self.outs.len(),
                sigma.iter().map(Vec::len).collect::<Vec<_>>()
            )));
        }
        let Some(ex) = &mut self.ex else {
            return Ok(vec![]);
        };
        ex.set_input("x", x)?;
        for (i, s) in sigma.iter().enumerate() {
            let st = Tensor::new(vec![b], s.iter().map(|&v| B::Elem::of_f64(v)).collect());
            ex.set_input(&sigma_input(i), &st)?;
        }
        ex.run()?;
        self.outs
            .iter()
            .map(|&o| ex.output(o).map_err(GuidanceError::from))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::blur::blur_forward;
    use crate::tensor::random;

    #[test]
    fn widths_follow_the_papers_choice_and_the_clamp() {
        assert_eq!(guidance_sigmas(6.0, 3), vec![6.0, 4.0, 2.0]);
        // σ̂ is clamped first, then each σ_i: σ̂ = 0.05 becomes 0.1, whose σ_1 = 0.1·3/3 is
        // 0.1 + 1 ulp in f64 (the pipeline's arithmetic, kept), and σ_2, σ_3 clamp up to 0.1.
        let s = batch_sigmas(&[3.0, 40.0, 0.05], 3, 0.1, 15.0);
        assert_eq!(s[0], vec![3.0, 15.0, 0.1 * 3.0 / 3.0]);
        assert_eq!(s[1], vec![2.0, 10.0, 0.1]);
        assert_eq!(s[2], vec![1.0, 5.0, 0.1]);
    }

    /// The planned graph gives the very bits of the host blur it replaced (same code, same
    /// f32 σ), for every image and width, and the plan serves a second batch.
    #[test]
    fn planned_blurs_equal_the_host_blur_bit_for_bit() {
        let shape = [2, 3, 12, 10];
        let mut gb = GuidanceBlur::new(CpuBackend::<f32>::new(), shape, 3).unwrap();
        let mut rng = random::rng(11);
        for round in 0..2 {
            let x: Tensor<f32> = random::uniform(&mut rng, &shape, 0.0, 1.0);
            let sigma = batch_sigmas(&[2.5 + round as f64, 7.0], 3, 0.1, 15.0);
            let got = gb.run(&x, &sigma).unwrap();
            assert_eq!(got.len(), 3);
            for (i, y) in got.iter().enumerate() {
                let sv: Vec<f32> = sigma[i].iter().map(|&v| v as f32).collect();
                let mut want = vec![0.0f32; x.data.len()];
                blur_forward(&x.data, &sv, shape, &mut want);
                assert_eq!(y.shape, shape.to_vec());
                assert!(y
                    .data
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()));
            }
        }
    }

    #[test]
    fn bad_inputs_are_errors_and_no_guidance_plans_nothing() {
        let shape = [2, 3, 8, 8];
        let mut gb = GuidanceBlur::new(CpuBackend::<f64>::new(), shape, 2).unwrap();
        let x: Tensor<f64> = random::uniform(&mut random::rng(3), &shape, 0.0, 1.0);
        assert!(gb.run(&x, &[vec![1.0, 2.0]]).is_err());
        assert!(gb.run(&x, &[vec![1.0], vec![2.0]]).is_err());
        let small: Tensor<f64> = random::uniform(&mut random::rng(4), &[1, 3, 8, 8], 0.0, 1.0);
        assert!(gb.run(&small, &[vec![1.0], vec![2.0]]).is_err());
        let mut none = GuidanceBlur::new(CpuBackend::<f64>::new(), shape, 0).unwrap();
        assert_eq!(none.peak_bytes(), 0);
        assert!(none.run(&x, &[]).unwrap().is_empty());
    }
}
