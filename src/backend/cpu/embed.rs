//! Sinusoidal timestep embedding, guided-diffusion's convention (cos first).

use crate::tensor::Scalar;

pub fn timestep_embedding<T: Scalar>(t: &[T], dim: usize, max_period: f32, y: &mut [T]) {
    let half = dim / 2;
    for (b, &tv) in t.iter().enumerate() {
        for i in 0..half {
            // Frequencies in f32 as PyTorch computes them, then the product in T.
            let f = (-(max_period as f64).ln() * i as f64 / half as f64).exp() as f32;
            let arg = tv.as_f64() * f as f64;
            y[b * dim + i] = T::of_f64(arg.cos());
            y[b * dim + half + i] = T::of_f64(arg.sin());
        }
    }
}
