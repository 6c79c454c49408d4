//! Bilinear resize written here (the image crate's resize is not used) with
//! OpenCV INTER_LINEAR's coordinate convention: half-pixel centres,
//! src = (dst + 0.5)·(n_src / n_dst) − 0.5, clamped to the image, no antialiasing
//! (so strong downscaling aliases, as with cv2.resize in the reference pipelines).
//! Arithmetic is in f32, not OpenCV's fixed point.

/// For each destination index: (left source index, right source index, right weight).
fn axis_weights(n_src: usize, n_dst: usize) -> Vec<(usize, usize, f32)> {
    let scale = n_src as f64 / n_dst as f64;
    (0..n_dst)
        .map(|d| {
            let s = ((d as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (s.floor() as usize).min(n_src - 1);
            let i1 = (i0 + 1).min(n_src - 1);
            let f = if i0 == i1 {
                0.0
            } else {
                (s - i0 as f64) as f32
            };
            (i0, i1, f)
        })
        .collect()
}

/// Resizes channel-major planes [c, h, w] to [c, nh, nw].
pub fn resize_bilinear(
    planes: &[f32],
    c: usize,
    h: usize,
    w: usize,
    nh: usize,
    nw: usize,
) -> Vec<f32> {
    let (wx, wy) = (axis_weights(w, nw), axis_weights(h, nh));
    let mut out = vec![0.0f32; c * nh * nw];
    let mut mid = vec![0.0f32; h * nw];
    for (src, dst) in planes
        .chunks_exact(h * w)
        .zip(out.chunks_exact_mut(nh * nw))
    {
        for (srow, mrow) in src.chunks_exact(w).zip(mid.chunks_exact_mut(nw)) {
            for (m, &(i0, i1, f)) in mrow.iter_mut().zip(&wx) {
                *m = srow[i0] * (1.0 - f) + srow[i1] * f;
            }
        }
        for (drow, &(j0, j1, f)) in dst.chunks_exact_mut(nw).zip(&wy) {
            let (r0, r1) = (&mid[j0 * nw..(j0 + 1) * nw], &mid[j1 * nw..(j1 + 1) * nw]);
            for ((d, &a), &b) in drow.iter_mut().zip(r0).zip(r1) {
                *d = a * (1.0 - f) + b * f;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_identity() {
        let x: Vec<f32> = (0..2 * 5 * 7).map(|i| (i * 37 % 101) as f32).collect();
        assert_eq!(resize_bilinear(&x, 2, 5, 7, 5, 7), x);
    }

    #[test]
    fn halving_averages_pixel_pairs() {
        // With half-pixel centres, an exact factor 2 lands between pixels 2d and 2d+1.
        let x: Vec<f32> = (0..4 * 6).map(|i| ((i * 13) % 17) as f32).collect();
        let y = resize_bilinear(&x, 1, 4, 6, 2, 3);
        for r in 0..2 {
            for c in 0..3 {
                let want = (x[(2 * r) * 6 + 2 * c]
                    + x[(2 * r) * 6 + 2 * c + 1]
                    + x[(2 * r + 1) * 6 + 2 * c]
                    + x[(2 * r + 1) * 6 + 2 * c + 1])
                    / 4.0;
                assert!((y[r * 3 + c] - want).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn upscaling_matches_opencv_convention() {
        // cv2.resize(np.array([[0, 10]], np.float32), (4, 1)) = [0, 2.5, 7.5, 10]
        let y = resize_bilinear(&[0.0, 10.0], 1, 1, 2, 1, 4);
        assert_eq!(y, vec![0.0, 2.5, 7.5, 10.0]);
    }

    #[test]
    fn constant_survives_down_and_up() {
        let x = vec![42.0f32; 3 * 50 * 50];
        let d = resize_bilinear(&x, 3, 50, 50, 3, 3);
        let u = resize_bilinear(&d, 3, 3, 3, 50, 50);
        assert!(u.iter().all(|v| (v - 42.0).abs() < 1e-4));
    }
}
