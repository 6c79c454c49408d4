//! RetinaFace's host side, as facexlib 0.3.0's `retinaface_utils.py` and
//! `RetinaFace.detect_faces` do it: the prior boxes of each level, decoding of box and
//! landmark offsets against them, the score threshold, and NMS (torchvision's IoU rule).
//! Priors and decoding are in f64 (facexlib builds priors in Python floats; its f32 run
//! rounds them once), boxes are rounded to f32 for NMS as facexlib does.

use super::boxes::{nms, Overlap};
use super::Face;

/// The prior-box configuration both published networks were trained with.
pub const MIN_SIZES: [[f64; 2]; 3] = [[16.0, 32.0], [64.0, 128.0], [256.0, 512.0]];
pub const STEPS: [usize; 3] = [8, 16, 32];
/// Box-centre and box-size variances of the offset encoding.
pub const VARIANCE: [f64; 2] = [0.1, 0.2];

/// Number of priors for an `h`×`w` network input.
pub fn prior_count(h: usize, w: usize) -> usize {
    STEPS
        .iter()
        .map(|&s| h.div_ceil(s) * w.div_ceil(s) * MIN_SIZES[0].len())
        .sum()
}

/// The priors `[cx, cy, w, h]` as fractions of the input, rounded to f32 like facexlib's
/// `torch.Tensor(anchors)`: level by level, rows, columns, then the two sizes.
pub fn priors(h: usize, w: usize) -> Vec<[f32; 4]> {
    let mut v = Vec::with_capacity(prior_count(h, w));
    let (hf, wf) = (h as f64, w as f64);
    for (k, &step) in STEPS.iter().enumerate() {
        for i in 0..h.div_ceil(step) {
            for j in 0..w.div_ceil(step) {
                for &m in &MIN_SIZES[k] {
                    let cx = (j as f64 + 0.5) * step as f64 / wf;
                    let cy = (i as f64 + 0.5) * step as f64 / hf;
                    v.push([cx as f32, cy as f32, (m / wf) as f32, (m / hf) as f32]);
                }
            }
        }
    }
    v
}

/// Box offsets against a prior → `[x1, y1, x2, y2]` as fractions of the input.
pub fn decode_box(loc: [f64; 4], p: [f32; 4]) -> [f64; 4] {
    let p = p.map(f64::from);
    let cx = p[0] + loc[0] * VARIANCE[0] * p[2];
    let cy = p[1] + loc[1] * VARIANCE[0] * p[3];
    let bw = p[2] * (loc[2] * VARIANCE[1]).exp();
    let bh = p[3] * (loc[3] * VARIANCE[1]).exp();
    let (x1, y1) = (cx - bw / 2.0, cy - bh / 2.0);
    [x1, y1, bw + x1, bh + y1]
}

/// Landmark offsets `(x, y)×5` against a prior → five points as fractions of the input.
pub fn decode_landmarks(pre: &[f64], p: [f32; 4]) -> [[f64; 2]; 5] {
    let p = p.map(f64::from);
    std::array::from_fn(|k| {
        [
            p[0] + pre[2 * k] * VARIANCE[0] * p[2],
            p[1] + pre[2 * k + 1] * VARIANCE[0] * p[3],
        ]
    })
}

/// The network's outputs for one image, flattened: `loc [P·4]`, `conf [P·2]` (softmax),
/// `landmarks [P·10]`.
pub struct HeadOutputs {
    pub loc: Vec<f64>,
    pub conf: Vec<f64>,
    pub landmarks: Vec<f64>,
}

/// Thresholds of [`postprocess`]; facexlib's `detect_faces` defaults.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Thresholds {
    /// A prior is a candidate when its face probability is above this.
    pub score: f32,
    /// NMS drops a box whose IoU with a kept, higher-scoring one is above this.
    pub nms: f32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            score: 0.8,
            nms: 0.4,
        }
    }
}

/// Faces from the outputs of an `h`×`w` network input, in pixels of the photo the input
/// was resized from by `resize` (1 when the photo was not resized): best score first.
pub fn postprocess(out: &HeadOutputs, h: usize, w: usize, resize: f64, t: Thresholds) -> Vec<Face> {
    let pri = priors(h, w);
    assert_eq!(out.loc.len(), pri.len() * 4, "box offsets per prior");
    assert_eq!(out.conf.len(), pri.len() * 2, "scores per prior");
    assert_eq!(out.landmarks.len(), pri.len() * 10, "landmarks per prior");
    let (sx, sy) = (w as f64 / resize, h as f64 / resize);
    let mut cand: Vec<Face> = vec![];
    for (i, &p) in pri.iter().enumerate() {
        let score = out.conf[2 * i + 1];
        if score <= t.score as f64 {
            continue;
        }
        let b = decode_box(std::array::from_fn(|c| out.loc[4 * i + c]), p);
        let l = decode_landmarks(&out.landmarks[10 * i..10 * i + 10], p);
        cand.push(Face {
            bbox: [
                (b[0] * sx) as f32,
                (b[1] * sy) as f32,
                (b[2] * sx) as f32,
                (b[3] * sy) as f32,
            ],
            score: score as f32,
            landmarks: l.map(|[x, y]| [(x * sx) as f32, (y * sy) as f32]),
        });
    }
    let boxes: Vec<[f32; 4]> = cand.iter().map(|f| f.bbox).collect();
    let scores: Vec<f32> = cand.iter().map(|f| f.score).collect();
    nms(&boxes, &scores, t.nms, Overlap::Union)
        .into_iter()
        .map(|i| cand[i].clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priors_cover_each_level_in_order() {
        // 100×60: levels 13×8, 7×4, 4×2 cells, two priors each.
        let p = priors(60, 100);
        assert_eq!(p.len(), 2 * (13 * 8 + 7 * 4 + 4 * 2));
        assert_eq!(p.len(), prior_count(60, 100));
        // facexlib divides in Python floats and rounds once to f32.
        let f = |a: f64, b: f64| (a / b) as f32;
        // First cell of level 0: centre (4, 4) px, sizes 16 and 32 px.
        assert_eq!(
            p[0],
            [f(4.0, 100.0), f(4.0, 60.0), f(16.0, 100.0), f(16.0, 60.0)]
        );
        assert_eq!(
            p[1],
            [f(4.0, 100.0), f(4.0, 60.0), f(32.0, 100.0), f(32.0, 60.0)]
        );
        // Second cell: one column (8 px) to the right.
        assert_eq!(p[2][0], f(12.0, 100.0));
        // First prior of level 2: centre (16, 16) px, size 256.
        let l2 = 2 * (13 * 8 + 7 * 4);
        assert_eq!(
            p[l2],
            [
                f(16.0, 100.0),
                f(16.0, 60.0),
                f(256.0, 100.0),
                f(256.0, 60.0)
            ]
        );
    }

    #[test]
    fn zero_offsets_decode_to_the_prior() {
        let p = [0.5f32, 0.25, 0.2, 0.1];
        let b = decode_box([0.0; 4], p);
        let pf = p.map(f64::from);
        let want = [
            pf[0] - pf[2] / 2.0,
            pf[1] - pf[3] / 2.0,
            pf[0] + pf[2] / 2.0,
            pf[1] + pf[3] / 2.0,
        ];
        for (g, w) in b.iter().zip(want) {
            assert!((g - w).abs() < 1e-15, "{b:?} vs {want:?}");
        }
        // A unit centre offset moves by variance × prior size; log-size 1 scales by e^0.2.
        let b = decode_box([1.0, 0.0, 5.0, 0.0], p);
        let cx = (b[0] + b[2]) / 2.0;
        assert!((cx - (pf[0] + 0.1 * pf[2])).abs() < 1e-15);
        assert!(((b[2] - b[0]) - pf[2] * 1f64.exp()).abs() < 1e-12);
        let l = decode_landmarks(&[1.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0], p);
        assert!((l[0][0] - (pf[0] + 0.1 * pf[2])).abs() < 1e-15);
        assert!((l[0][1] - (pf[1] - 0.1 * pf[3])).abs() < 1e-15);
        assert!((l[4][1] - (pf[1] + 0.2 * pf[3])).abs() < 1e-15);
    }
}
