//! Multiple guidance (METHOD.md Eq. 15): the σ and weight of each guidance image.

/// Paper Table 7 weights for N guidance images (N = 3 is the paper's default); other N get
/// equal weights.
pub fn guidance_weights(n: usize) -> Vec<f32> {
    match n {
        1 => vec![1.0],
        2 => vec![0.8, 0.2],
        3 => vec![0.7, 0.2, 0.1],
        4 => vec![0.7, 0.1, 0.1, 0.1],
        _ => vec![1.0 / n.max(1) as f32; n],
    }
}

/// **choice** of METHOD.md: σ_i = σ̂·(N − i + 1)/N, i = 1..N (σ̂, ⅔σ̂, ⅓σ̂ for N = 3), each
/// clamped to the blur operator's range.
pub fn guidance_sigmas(sigma_hat: f32, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (1..=n)
        .map(|i| (sigma_hat * (n - i + 1) as f32 / n as f32).clamp(lo, hi))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_guidances_follow_the_paper() {
        assert_eq!(guidance_weights(3), vec![0.7, 0.2, 0.1]);
        let s = guidance_sigmas(6.0, 3, 0.1, 15.0);
        assert!(
            (s[0] - 6.0).abs() < 1e-6 && (s[1] - 4.0).abs() < 1e-6 && (s[2] - 2.0).abs() < 1e-6
        );
        assert_eq!(guidance_sigmas(0.15, 3, 0.1, 15.0)[2], 0.1);
    }
}
