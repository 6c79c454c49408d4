//! Alignment to the FFHQ-512 template: a similarity transform (rotation, uniform scale,
//! translation) fitted by least squares from the five detected landmarks to the template
//! points, and a bilinear warp with a constant grey border, as facexlib's
//! `FaceRestoreHelper` does (it fits with OpenCV's LMEDS; with five points and one face
//! the least-squares fit is the usual choice and needs no random sampling).

/// The five FFHQ landmarks in a 512² crop: left eye, right eye, nose, left and right
/// mouth corner (facexlib's template).
pub const FFHQ_512: [[f64; 2]; 5] = [
    [192.98138, 239.94708],
    [318.90277, 240.19360],
    [256.63416, 314.01935],
    [201.26117, 371.41043],
    [313.08905, 371.15118],
];

/// The border of an aligned crop, RGB. facexlib passes (135, 133, 132) to OpenCV on a BGR
/// image, so in RGB it is (132, 133, 135).
pub const BORDER_RGB: [f32; 3] = [132.0, 133.0, 135.0];

/// A 2×3 affine map `p ↦ [m00 m01; m10 m11]·p + [m02; m12]`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Affine(pub [[f64; 3]; 2]);

impl Affine {
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        let m = &self.0;
        [
            m[0][0] * p[0] + m[0][1] * p[1] + m[0][2],
            m[1][0] * p[0] + m[1][1] * p[1] + m[1][2],
        ]
    }

    /// `self` first, then `next`.
    pub fn then(&self, next: &Affine) -> Affine {
        let (a, b) = (&self.0, &next.0);
        let mut m = [[0.0; 3]; 2];
        for r in 0..2 {
            for c in 0..3 {
                m[r][c] =
                    b[r][0] * a[0][c] + b[r][1] * a[1][c] + if c == 2 { b[r][2] } else { 0.0 };
            }
        }
        Affine(m)
    }

    /// The inverse map; `None` when singular.
    pub fn inverse(&self) -> Option<Affine> {
        let m = &self.0;
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        if det.abs() < 1e-12 || !det.is_finite() {
            return None;
        }
        let (a, b, c, d) = (m[1][1] / det, -m[0][1] / det, -m[1][0] / det, m[0][0] / det);
        Some(Affine([
            [a, b, -(a * m[0][2] + b * m[1][2])],
            [c, d, -(c * m[0][2] + d * m[1][2])],
        ]))
    }

    /// The similarity `s·R(θ)` then `+ t`.
    pub fn similarity(scale: f64, angle: f64, tx: f64, ty: f64) -> Affine {
        let (c, s) = (scale * angle.cos(), scale * angle.sin());
        Affine([[c, -s, tx], [s, c, ty]])
    }

    /// The uniform scale factor of a similarity (√|det|).
    pub fn scale(&self) -> f64 {
        let m = &self.0;
        (m[0][0] * m[1][1] - m[0][1] * m[1][0]).abs().sqrt()
    }
}

/// The least-squares similarity taking `src` points onto `dst` points: minimises
/// Σ |s·R·srcᵢ + t − dstᵢ|² in closed form (centred coordinates; no reflection).
pub fn fit_similarity(src: &[[f64; 2]], dst: &[[f64; 2]]) -> Option<Affine> {
    assert_eq!(src.len(), dst.len());
    let n = src.len() as f64;
    let mean = |v: &[[f64; 2]]| {
        let s = v.iter().fold([0.0, 0.0], |a, p| [a[0] + p[0], a[1] + p[1]]);
        [s[0] / n, s[1] / n]
    };
    let (ms, md) = (mean(src), mean(dst));
    let (mut num_a, mut num_b, mut den) = (0.0, 0.0, 0.0);
    for (s, d) in src.iter().zip(dst) {
        let (sx, sy) = (s[0] - ms[0], s[1] - ms[1]);
        let (dx, dy) = (d[0] - md[0], d[1] - md[1]);
        num_a += sx * dx + sy * dy;
        num_b += sx * dy - sy * dx;
        den += sx * sx + sy * sy;
    }
    if den < 1e-9 {
        return None;
    }
    let (a, b) = (num_a / den, num_b / den);
    let tx = md[0] - (a * ms[0] - b * ms[1]);
    let ty = md[1] - (b * ms[0] + a * ms[1]);
    Some(Affine([[a, -b, tx], [b, a, ty]]))
}

/// The similarity taking `src` onto `dst` by least median of squares, the method facexlib
/// asks of OpenCV (`estimateAffinePartial2D(..., method=LMEDS)`): the exact similarity of
/// each pair of points is scored by the median squared residual over all points (OpenCV's
/// median, the `n/2`-th smallest); the best one's inliers (residual within
/// 2.5 · 1.4826 · (1 + 5/(n − 2)) · √median, at least 0.001) are then fitted by least squares,
/// as OpenCV's refinement does. OpenCV draws a few random pairs (13 for five points at its
/// confidence) where this tries all of them, so on the rare draw where its sample misses the
/// best pair the two can keep different inliers.
pub fn fit_similarity_lmeds(src: &[[f64; 2]], dst: &[[f64; 2]]) -> Option<Affine> {
    assert_eq!(src.len(), dst.len());
    let n = src.len();
    if n < 3 {
        return fit_similarity(src, dst);
    }
    let residuals = |m: &Affine| -> Vec<f64> {
        src.iter()
            .zip(dst)
            .map(|(s, d)| {
                let p = m.apply(*s);
                (p[0] - d[0]).powi(2) + (p[1] - d[1]).powi(2)
            })
            .collect()
    };
    let mut best: Option<(f64, Vec<f64>)> = None;
    for i in 0..n {
        for j in i + 1..n {
            let Some(m) = fit_similarity(&[src[i], src[j]], &[dst[i], dst[j]]) else {
                continue;
            };
            let r = residuals(&m);
            let mut sorted = r.clone();
            sorted.sort_by(f64::total_cmp);
            let med = sorted[n / 2];
            if best.as_ref().is_none_or(|(b, _)| med < *b) {
                best = Some((med, r));
            }
        }
    }
    let (med, r) = best?;
    let sigma = (2.5 * 1.4826 * (1.0 + 5.0 / (n - 2) as f64) * med.sqrt()).max(0.001);
    let (s, d): (Vec<[f64; 2]>, Vec<[f64; 2]>) = src
        .iter()
        .zip(dst)
        .zip(&r)
        .filter(|(_, &e)| e <= sigma * sigma)
        .map(|((s, d), _)| (*s, *d))
        .unzip();
    fit_similarity(&s, &d)
}

/// How the landmarks are fitted to the template.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fit {
    /// Least squares over the five points.
    #[default]
    Lstsq,
    /// Least median of squares, as facexlib (OpenCV's LMEDS): robust to one bad landmark.
    Lmeds,
}

/// The photo → crop transform of a face's landmarks onto the template of a `size`² crop.
pub fn face_to_template(landmarks: &[[f32; 2]; 5], size: usize) -> Option<Affine> {
    face_to_template_by(landmarks, size, Fit::Lstsq)
}

/// [`face_to_template`] with the given fit.
pub fn face_to_template_by(landmarks: &[[f32; 2]; 5], size: usize, fit: Fit) -> Option<Affine> {
    let k = size as f64 / 512.0;
    let dst: Vec<[f64; 2]> = FFHQ_512.iter().map(|p| [p[0] * k, p[1] * k]).collect();
    let src: Vec<[f64; 2]> = landmarks
        .iter()
        .map(|p| [p[0] as f64, p[1] as f64])
        .collect();
    match fit {
        Fit::Lstsq => fit_similarity(&src, &dst),
        Fit::Lmeds => fit_similarity_lmeds(&src, &dst),
    }
}

/// A planar image `[C, h, w]` of f32 samples.
#[derive(Clone, Debug)]
pub struct Planes {
    pub channels: usize,
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl Planes {
    pub fn from_rgb8(img: &image::RgbImage) -> Planes {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let mut data = vec![0.0; 3 * w * h];
        for (x, y, p) in img.enumerate_pixels() {
            for c in 0..3 {
                data[c * w * h + y as usize * w + x as usize] = p[c] as f32;
            }
        }
        Planes {
            channels: 3,
            width: w,
            height: h,
            data,
        }
    }

    pub fn plane(&self, c: usize) -> &[f32] {
        &self.data[c * self.width * self.height..(c + 1) * self.width * self.height]
    }
}

/// `out(x, y) = src(M⁻¹·(x, y))` for an `ow`×`oh` output, where `to_out` maps source pixel
/// coordinates to output ones (OpenCV's `warpAffine` convention: pixel centres at integer
/// coordinates). Bilinear; a neighbour outside the source reads `border[c]`, so edges
/// blend into the border as OpenCV's constant border does.
pub fn warp_affine(src: &Planes, to_out: &Affine, ow: usize, oh: usize, border: &[f32]) -> Planes {
    let inv = to_out.inverse().expect("a warp needs an invertible map");
    let (w, h) = (src.width as i64, src.height as i64);
    let mut data = vec![0.0f32; src.channels * ow * oh];
    for y in 0..oh {
        for x in 0..ow {
            let [sx, sy] = inv.apply([x as f64, y as f64]);
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = ((sx - x0) as f32, (sy - y0) as f32);
            let (x0, y0) = (x0 as i64, y0 as i64);
            let inside = |xx: i64, yy: i64| xx >= 0 && yy >= 0 && xx < w && yy < h;
            for c in 0..src.channels {
                let p = src.plane(c);
                let at = |xx: i64, yy: i64| {
                    if inside(xx, yy) {
                        p[(yy * w + xx) as usize]
                    } else {
                        border[c]
                    }
                };
                let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1, y0) * fx;
                let bot = at(x0, y0 + 1) * (1.0 - fx) + at(x0 + 1, y0 + 1) * fx;
                data[c * ow * oh + y * ow + x] = top * (1.0 - fy) + bot * fy;
            }
        }
    }
    Planes {
        channels: src.channels,
        width: ow,
        height: oh,
        data,
    }
}

/// The aligned `size`² crop of a face: the transform used and the crop on 0..255.
pub fn align_face(
    photo: &Planes,
    landmarks: &[[f32; 2]; 5],
    size: usize,
) -> Option<(Affine, Planes)> {
    align_face_by(photo, landmarks, size, Fit::Lstsq)
}

/// [`align_face`] with the given fit.
pub fn align_face_by(
    photo: &Planes,
    landmarks: &[[f32; 2]; 5],
    size: usize,
    fit: Fit,
) -> Option<(Affine, Planes)> {
    let m = face_to_template_by(landmarks, size, fit)?;
    m.inverse()?;
    Some((m, warp_affine(photo, &m, size, size, &BORDER_RGB)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points moved by a known similarity (plus tiny noise) give that similarity back.
    #[test]
    fn fit_recovers_a_known_similarity() {
        let m = Affine::similarity(0.62, 0.3, 41.0, -17.5);
        let src: Vec<[f64; 2]> = FFHQ_512.to_vec();
        let dst: Vec<[f64; 2]> = src.iter().map(|&p| m.apply(p)).collect();
        let fit = fit_similarity(&src, &dst).unwrap();
        for r in 0..2 {
            for c in 0..3 {
                assert!((fit.0[r][c] - m.0[r][c]).abs() < 1e-9, "{fit:?} vs {m:?}");
            }
        }
        let inv = fit.inverse().unwrap();
        let p = inv.apply(fit.apply([10.0, 300.0]));
        assert!((p[0] - 10.0).abs() < 1e-9 && (p[1] - 300.0).abs() < 1e-9);
        assert!((fit.scale() - 0.62).abs() < 1e-12);
        assert!(fit_similarity(&[[1.0, 1.0]; 5], &FFHQ_512).is_none());
    }

    /// One landmark thrown far off: LMEDS ignores it (the fit of the other four), least
    /// squares does not; without an outlier both agree.
    #[test]
    fn lmeds_ignores_one_outlier() {
        let m = Affine::similarity(0.8, -0.2, 12.0, 30.0);
        let src: Vec<[f64; 2]> = FFHQ_512.to_vec();
        let mut dst: Vec<[f64; 2]> = src.iter().map(|&p| m.apply(p)).collect();
        let clean = fit_similarity_lmeds(&src, &dst).unwrap();
        dst[2][0] += 60.0;
        let robust = fit_similarity_lmeds(&src, &dst).unwrap();
        let lsq = fit_similarity(&src, &dst).unwrap();
        let d = |a: &Affine, b: &Affine| {
            (0..2)
                .flat_map(|r| (0..3).map(move |c| (r, c)))
                .map(|(r, c)| (a.0[r][c] - b.0[r][c]).abs())
                .fold(0.0, f64::max)
        };
        assert!(d(&clean, &m) < 1e-9, "{clean:?}");
        assert!(d(&robust, &m) < 1e-9, "{robust:?}");
        assert!(
            d(&lsq, &m) > 1.0,
            "least squares moves with the outlier: {lsq:?}"
        );
    }

    /// An integer translation is an exact pixel shift, with the border where the source
    /// runs out.
    #[test]
    fn warp_by_a_translation_shifts_pixels() {
        let src = Planes {
            channels: 2,
            width: 5,
            height: 4,
            data: (0..40).map(|v| v as f32 * 1.5 + 0.25).collect(),
        };
        let out = warp_affine(
            &src,
            &Affine::similarity(1.0, 0.0, 2.0, -1.0),
            6,
            3,
            &[-1.0, -2.0],
        );
        for c in 0..2 {
            for y in 0..3 {
                for x in 0..6 {
                    let (sx, sy) = (x as i64 - 2, y as i64 + 1);
                    let want = if (0..5).contains(&sx) && sy < 4 {
                        src.data[c * 20 + sy as usize * 5 + sx as usize]
                    } else {
                        [-1.0, -2.0][c]
                    };
                    assert_eq!(out.data[c * 18 + y * 6 + x], want, "{c} {y} {x}");
                }
            }
        }
    }
}
