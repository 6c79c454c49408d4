//! Consistency tests of blur, adjoint and σ-derivative against each other and
//! against a direct 2-D sum.

use super::reflect::reflect_index;
use super::*;
use crate::tensor::random::{normal, rng, uniform};
use crate::tensor::{numel, Scalar};
use rand::Rng;

/// Direct 2-D sum with the outer-product kernel: slow, written independently of the
/// separable passes (no padded maps, no axpy).
fn naive_blur(x: &[f64], sigma: &[f64], shape: [usize; 4]) -> Vec<f64> {
    let [b, c, h, w] = shape;
    let mut out = vec![0.0; x.len()];
    for (bi, &s) in sigma.iter().enumerate().take(b) {
        let r = radius(s) as i64;
        let wts: Vec<f64> = (-r..=r)
            .map(|i| (-(i * i) as f64 / (2.0 * s * s)).exp())
            .collect();
        let z: f64 = wts.iter().sum();
        for ci in 0..c {
            let base = (bi * c + ci) * h * w;
            for y in 0..h {
                for xx in 0..w {
                    let mut acc = 0.0;
                    for dy in -r..=r {
                        let sy = reflect_index(y as i64 + dy, h);
                        for dx in -r..=r {
                            let sx = reflect_index(xx as i64 + dx, w);
                            acc += wts[(dy + r) as usize] * wts[(dx + r) as usize] / (z * z)
                                * x[base + sy * w + sx];
                        }
                    }
                    out[base + y * w + xx] = acc;
                }
            }
        }
    }
    out
}

fn dot<T: Scalar>(a: &[T], b: &[T]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x.as_f64() * y.as_f64()).sum()
}

fn abs_dot<T: Scalar>(a: &[T], b: &[T]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x.as_f64() * y.as_f64()).abs())
        .sum()
}

/// Shapes with planes both larger and smaller than the kernel radius.
const SHAPES: [[usize; 4]; 6] = [
    [2, 3, 17, 23],
    [1, 2, 5, 7],
    [3, 1, 1, 9],
    [1, 1, 1, 1],
    [2, 2, 40, 3],
    [1, 3, 64, 48],
];

fn adjoint_case<T: Scalar>(seed: u64, tol: f64) {
    let mut r = rng(seed);
    for shape in SHAPES {
        for trial in 0..4 {
            let b = shape[0];
            let x = normal::<T>(&mut r, &shape, 1.0).data;
            let g = normal::<T>(&mut r, &shape, 1.0).data;
            let mut sigma = uniform::<T>(&mut r, &[b], 0.1, 15.0).data;
            if trial == 0 {
                // Radius 30 against a 5×7 image: many folds.
                sigma[0] = T::of_f64(10.0);
            }
            let mut y = vec![T::zero(); x.len()];
            let mut xa = vec![T::zero(); x.len()];
            blur_forward(&x, &sigma, shape, &mut y);
            blur_adjoint(&g, &sigma, shape, &mut xa);
            let lhs = dot(&y, &g);
            let rhs = dot(&x, &xa);
            let scale = abs_dot(&y, &g).max(abs_dot(&x, &xa));
            assert!(
                (lhs - rhs).abs() <= tol * scale,
                "{} shape {shape:?} σ {sigma:?}: ⟨Kx,g⟩={lhs} ⟨x,Kᵀg⟩={rhs}",
                T::name()
            );
        }
    }
}

#[test]
fn adjoint_dot_product_f64() {
    adjoint_case::<f64>(11, 1e-13);
}

#[test]
fn adjoint_dot_product_f32() {
    adjoint_case::<f32>(12, 2e-6);
}

#[test]
fn adjoint_is_not_the_blur_at_borders() {
    // With reflect padding the adjoint folds mirrored weight back; on a small image
    // it must differ from the forward blur, or the test above would be vacuous.
    let shape = [1, 1, 5, 7];
    let g = normal::<f64>(&mut rng(3), &shape, 1.0).data;
    let (mut a, mut f) = (vec![0.0; 35], vec![0.0; 35]);
    blur_adjoint(&g, &[2.0], shape, &mut a);
    blur_forward(&g, &[2.0], shape, &mut f);
    let diff = a
        .iter()
        .zip(&f)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max);
    assert!(diff > 1e-3, "adjoint equals blur (max diff {diff})");
}

#[test]
fn forward_matches_direct_2d_sum() {
    let mut r = rng(21);
    for shape in SHAPES {
        let x = normal::<f64>(&mut r, &shape, 1.0).data;
        let sigma = uniform::<f64>(&mut r, &[shape[0]], 0.1, 12.0).data;
        let want = naive_blur(&x, &sigma, shape);
        let mut got = vec![0.0; x.len()];
        blur_forward(&x, &sigma, shape, &mut got);
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!((a - b).abs() < 1e-12, "shape {shape:?} at {i}: {a} vs {b}");
        }
    }
}

fn inner(x: &[f64], g: &[f64], sigma: &[f64], shape: [usize; 4]) -> f64 {
    let mut y = vec![0.0; x.len()];
    blur_forward(x, sigma, shape, &mut y);
    dot(&y, g)
}

#[test]
fn dsigma_matches_central_difference_f64() {
    let mut r = rng(31);
    for shape in SHAPES {
        let b = shape[0];
        let x = normal::<f64>(&mut r, &shape, 1.0).data;
        let g = normal::<f64>(&mut r, &shape, 1.0).data;
        // Keep σ away from the radius jumps at multiples of 1/3.
        let sigma: Vec<f64> = (0..b)
            .map(|_| {
                let k: f64 = r.gen_range(1..44) as f64;
                (k + r.gen_range(0.2..0.8)) / 3.0
            })
            .collect();
        let mut d = vec![0.0; b];
        blur_dsigma(&x, &sigma, &g, shape, &mut d);
        let h = 1e-5;
        for bi in 0..b {
            let (mut sp, mut sm) = (sigma.clone(), sigma.clone());
            sp[bi] += h;
            sm[bi] -= h;
            let fd = (inner(&x, &g, &sp, shape) - inner(&x, &g, &sm, shape)) / (2.0 * h);
            assert!(
                (fd - d[bi]).abs() <= 1e-7 * (1.0 + fd.abs()),
                "shape {shape:?} σ {}: fd {fd} analytic {}",
                sigma[bi],
                d[bi]
            );
        }
    }
}

#[test]
fn dsigma_f32_agrees_with_f64() {
    let shape = [2, 3, 31, 29];
    let mut r = rng(41);
    let x = normal::<f64>(&mut r, &shape, 1.0).data;
    let g = normal::<f64>(&mut r, &shape, 1.0).data;
    let sigma = vec![2.45, 7.9];
    let mut d64 = vec![0.0; 2];
    blur_dsigma(&x, &sigma, &g, shape, &mut d64);
    let to32 = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
    let mut d32 = vec![0.0f32; 2];
    blur_dsigma(&to32(&x), &to32(&sigma), &to32(&g), shape, &mut d32);
    for i in 0..2 {
        let scale = d64[i].abs().max(1e-2);
        assert!(
            ((d32[i] as f64) - d64[i]).abs() < 1e-4 * scale.max(1.0),
            "{d32:?} vs {d64:?}"
        );
    }
}

#[test]
fn constant_image_stays_constant() {
    for &(h, w, s) in &[(20, 30, 4.0f32), (5, 7, 10.0), (64, 64, 15.0)] {
        let shape = [1, 3, h, w];
        let x = vec![0.37f32; numel(&shape)];
        let mut y = vec![0.0f32; x.len()];
        blur_forward(&x, &[s], shape, &mut y);
        for v in &y {
            assert!((v - 0.37).abs() < 1e-6, "{h}x{w} σ {s}: {v}");
        }
    }
}

#[test]
fn tiny_sigma_is_near_identity() {
    let shape = [2, 3, 16, 16];
    let x = uniform::<f32>(&mut rng(51), &shape, 0.0, 1.0).data;
    let mut y = vec![0.0f32; x.len()];
    blur_forward(&x, &[0.1, 0.1], shape, &mut y);
    let err = x
        .iter()
        .zip(&y)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(err < 1e-3, "max |blur(x, 0.1) − x| = {err}");
}

#[test]
fn per_image_sigma_is_honoured() {
    let shape = [3, 2, 24, 20];
    let plane = 2 * 24 * 20;
    let x = normal::<f64>(&mut rng(61), &shape, 1.0).data;
    let sigma = [0.5, 3.0, 9.0];
    let mut y = vec![0.0; x.len()];
    blur_forward(&x, &sigma, shape, &mut y);
    for i in 0..3 {
        let xi = &x[i * plane..(i + 1) * plane];
        let mut yi = vec![0.0; plane];
        blur_forward(xi, &sigma[i..i + 1], [1, 2, 24, 20], &mut yi);
        assert_eq!(&y[i * plane..(i + 1) * plane], &yi[..], "image {i}");
    }
    // And the σ really differ in effect.
    assert_ne!(y[..plane].to_vec(), {
        let mut z = vec![0.0; plane];
        blur_forward(&x[..plane], &[3.0], [1, 2, 24, 20], &mut z);
        z
    });
}

#[test]
fn validate_reports_bad_arguments() {
    let shape = [2, 1, 4, 4];
    assert!(validate(32, &[1.0f32, 2.0], shape).is_ok());
    assert!(matches!(
        validate(31, &[1.0f32, 2.0], shape),
        Err(BlurError::Length { .. })
    ));
    assert!(matches!(
        validate(32, &[1.0f32], shape),
        Err(BlurError::Length { .. })
    ));
    assert!(matches!(
        validate(32, &[1.0f32, 0.0], shape),
        Err(BlurError::BadSigma { index: 1, .. })
    ));
    assert!(matches!(
        validate(32, &[f32::NAN, 1.0], shape),
        Err(BlurError::BadSigma { index: 0, .. })
    ));
    assert!(matches!(
        validate(0, &[1.0f32, 1.0], [2, 1, 0, 4]),
        Err(BlurError::EmptyPlane(_))
    ));
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let shape = [2, 3, 37, 45];
    let mut r = rng(71);
    let x = normal::<f32>(&mut r, &shape, 1.0).data;
    let g = normal::<f32>(&mut r, &shape, 1.0).data;
    let sigma = [1.7f32, 6.3];
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let (mut y, mut a, mut d) = (
                vec![0.0f32; x.len()],
                vec![0.0f32; x.len()],
                vec![0.0f32; 2],
            );
            blur_forward(&x, &sigma, shape, &mut y);
            blur_adjoint(&g, &sigma, shape, &mut a);
            blur_dsigma(&x, &sigma, &g, shape, &mut d);
            (y, a, d)
        })
    };
    assert_eq!(run(1), run(3));
}
