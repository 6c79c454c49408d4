//! The SWT term of DGSA's loss (METHOD.md Eq. 24): Σ_b λ_b ‖SWT_b(a) − SWT_b(x)‖₁ with SWT
//! the one-level stationary (undecimated) Haar transform. The transform is linear, so it is
//! taken once of the difference a − x: a depthwise 2×2 convolution with the four Haar
//! filters at every position (stride 1), over the valid positions only (**choice**: no
//! boundary extension, so no subband sees a made-up edge). ‖·‖₁ is the mean absolute value
//! per subband (**choice**: so λ does not depend on the image size).

use crate::graph::{Graph, NodeId, Result};
use crate::tensor::Tensor;

/// Name of the filter bank's constant `[4, 1, 2, 2]` (bind [`haar_filters`] to it).
pub const HAAR: &str = "swt.haar";

/// The orthonormal one-level 2-D Haar filters LL, LH, HL, HH (row-major 2×2 each): L = (1, 1)/√2
/// and H = (1, −1)/√2 along the rows (first letter) and columns (second).
pub fn haar_filters() -> Tensor<f32> {
    Tensor::new(
        vec![4, 1, 2, 2],
        vec![
            0.5, 0.5, 0.5, 0.5, // LL
            0.5, -0.5, 0.5, -0.5, // LH: detail across columns
            0.5, 0.5, -0.5, -0.5, // HL: detail across rows
            0.5, -0.5, -0.5, 0.5, // HH
        ],
    )
}

/// Σ_b λ_b · mean |SWT_b(d)| for `d` `[B, C, H, W]` (H, W ≥ 2); a scalar.
pub fn swt_l1(g: &mut Graph, d: NodeId, lambda: [f32; 4]) -> Result<NodeId> {
    let s = g.shape(d).to_vec();
    let (b, c, h, w) = (s[0], s[1], s[2], s[3]);
    let flat = g.reshape(d, &[b * c, 1, h, w])?;
    let k = g.constant(HAAR, &[4, 1, 2, 2]);
    let bands = g.conv2d(flat, k, None, 1, 0, 1)?;
    let mut total: Option<NodeId> = None;
    for (i, &l) in lambda.iter().enumerate() {
        if l == 0.0 {
            continue;
        }
        let band = g.slice(bands, 1, i, 1)?;
        let a = g.leaky_relu(band, -1.0)?;
        let m = g.mean(a, &[0, 1, 2, 3], false)?;
        let m = g.scale(m, l)?;
        total = Some(match total {
            Some(t) => g.add(t, m)?,
            None => m,
        });
    }
    Ok(match total {
        Some(t) => t,
        None => g.fill(0.0, &[]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::exec::Executor;
    use crate::graph::plan::PlanOptions;
    use crate::tensor::random;

    /// The graph's loss against the definition written out with loops, on a fresh random
    /// difference.
    #[test]
    fn swt_l1_matches_the_haar_definition() {
        let (b, c, h, w) = (2, 3, 7, 6);
        let d: Tensor<f32> = random::uniform(&mut random::rng(11), &[b, c, h, w], -1.0, 1.0);
        let lambda = [0.3f32, 0.01, 0.02, 0.05];
        let mut g = Graph::new();
        let x = g.input("d", &[b, c, h, w]);
        let l = swt_l1(&mut g, x, lambda).unwrap();
        let mut ex =
            Executor::new(CpuBackend::<f32>::new(), &g, &[l], PlanOptions::default()).unwrap();
        ex.bind_all(|n| (n == HAAR).then(haar_filters)).unwrap();
        ex.set_input("d", &d).unwrap();
        ex.run().unwrap();
        let got = ex.output(l).unwrap().data[0] as f64;
        let f = haar_filters();
        let mut want = 0.0f64;
        for (band, &lb) in lambda.iter().enumerate() {
            let mut acc = 0.0f64;
            for p in 0..b * c {
                for y in 0..h - 1 {
                    for xx in 0..w - 1 {
                        let mut v = 0.0f64;
                        for (k, (dy, dx)) in
                            [(0, 0), (0, 1), (1, 0), (1, 1)].into_iter().enumerate()
                        {
                            v += f.data[band * 4 + k] as f64
                                * d.data[(p * h + y + dy) * w + xx + dx] as f64;
                        }
                        acc += v.abs();
                    }
                }
            }
            want += lb as f64 * acc / (b * c * (h - 1) * (w - 1)) as f64;
        }
        // f32 sums of 180 terms: measured |Δ| ≈ 1e-8 relative.
        assert!((got - want).abs() <= 1e-6 * want, "{got} vs {want}");
    }
}
