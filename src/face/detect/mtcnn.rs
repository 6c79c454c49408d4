//! The MTCNN cascade (Zhang et al. 2016) as facenet-pytorch 2.6.0 runs it: an image pyramid
//! through P-Net, per-scale and global NMS, regression and squaring; 24² crops through R-Net;
//! 48² crops through O-Net for the final score, box and five landmarks. The networks run
//! on the graph engine (any backend); pyramid, crops and NMS are host work.

use super::area_resize::area_resize;
use super::boxes::{apply_regression, crop_window, nms, square, Overlap};
use super::mtcnn_nets::{onet, pnet, rnet};
use super::Face;
use crate::backend::Backend;
use crate::exec::Executor;
use crate::graph::plan::PlanOptions;
use crate::graph::{Graph, NodeId};
use crate::models::WeightMap;
use crate::tensor::{Scalar, Tensor};
use anyhow::Result;

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MtcnnOptions {
    /// Smallest face searched for, in pixels (sets the pyramid's first scale, 12 / min_face).
    pub min_face: f32,
    /// Score thresholds of P-Net, R-Net and O-Net.
    pub thresholds: [f32; 3],
    /// Ratio between pyramid levels.
    pub factor: f32,
    /// Most crops per R-Net / O-Net run (bounds memory on photos with many candidates).
    pub max_batch: usize,
}

impl Default for MtcnnOptions {
    /// facenet-pytorch's defaults.
    fn default() -> Self {
        MtcnnOptions {
            min_face: 20.0,
            thresholds: [0.6, 0.7, 0.7],
            factor: 0.709,
            max_batch: 256,
        }
    }
}

/// A planar RGB image on 0..255, `[3, h, w]` row-major.
pub struct RgbPlanes<'a> {
    pub data: &'a [f32],
    pub width: usize,
    pub height: usize,
}

pub struct Mtcnn<B: Backend + Clone> {
    backend: B,
    weights: WeightMap,
    pub opts: MtcnnOptions,
}

/// A box between stages: coordinates, score, and the regression the stage predicted.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    b: [f32; 4],
    score: f32,
    reg: [f32; 4],
}

fn normalise(v: &mut [f32]) {
    for x in v {
        *x = (*x - 127.5) * 0.0078125;
    }
}

impl<B: Backend + Clone> Mtcnn<B> {
    pub fn new(backend: B, weights: WeightMap, opts: MtcnnOptions) -> Self {
        Mtcnn {
            backend,
            weights,
            opts,
        }
    }

    /// Runs one network on `x` and returns its outputs as f32.
    fn run(
        &self,
        x: Tensor<f32>,
        build: impl FnOnce(&mut Graph, NodeId) -> crate::graph::Result<Vec<NodeId>>,
    ) -> Result<Vec<Tensor<f32>>> {
        let mut g = Graph::new();
        let input = g.input("x", &x.shape);
        let outs = build(&mut g, input)?;
        let mut ex = Executor::new(self.backend.clone(), &g, &outs, PlanOptions::default())?;
        ex.bind_all(|k| self.weights.get(k).cloned())?;
        let xe = Tensor::new(
            x.shape.clone(),
            x.data.iter().map(|&v| B::Elem::of_f32(v)).collect(),
        );
        ex.set_input("x", &xe)?;
        ex.run()?;
        outs.iter()
            .map(|&o| {
                let t = ex.output(o)?;
                Ok(Tensor::new(
                    t.shape.clone(),
                    t.data.iter().map(|v| v.as_f32()).collect(),
                ))
            })
            .collect()
    }

    /// The pyramid's scales: 12 / min_face, then × factor while the short side stays ≥ 12.
    pub fn scales(&self, width: usize, height: usize) -> Vec<f32> {
        let m = 12.0 / self.opts.min_face;
        let mut minl = width.min(height) as f32 * m;
        let mut s = m;
        let mut v = vec![];
        while minl >= 12.0 {
            v.push(s);
            s *= self.opts.factor;
            minl *= self.opts.factor;
        }
        v
    }

    fn stage1(&self, img: &RgbPlanes) -> Result<Vec<Candidate>> {
        let (w, h) = (img.width, img.height);
        let mut all = vec![];
        for scale in self.scales(w, h) {
            let hs = (h as f32 * scale + 1.0) as usize;
            let ws = (w as f32 * scale + 1.0) as usize;
            let mut data = area_resize(img.data, w, h, (0, 0, w, h), ws, hs);
            normalise(&mut data);
            let outs = self.run(Tensor::new(vec![1, 3, hs, ws], data), |g, x| {
                let o = pnet(g, x)?;
                Ok(vec![o.reg, o.prob])
            })?;
            let (reg, prob) = (&outs[0], &outs[1]);
            let (ph, pw) = (prob.shape[2], prob.shape[3]);
            let mut cands = vec![];
            for y in 0..ph {
                for x in 0..pw {
                    let p = prob.data[y * pw + x];
                    if p < self.opts.thresholds[0] {
                        continue;
                    }
                    let r = |c: usize| reg.data[c * ph * pw + y * pw + x];
                    let (fx, fy) = (x as f32, y as f32);
                    // Each output cell sees a 12×12 window at stride 2 of the scaled image.
                    let b = [
                        ((2.0 * fx + 1.0) / scale).floor(),
                        ((2.0 * fy + 1.0) / scale).floor(),
                        ((2.0 * fx + 12.0) / scale).floor(),
                        ((2.0 * fy + 12.0) / scale).floor(),
                    ];
                    cands.push(Candidate {
                        b,
                        score: p,
                        reg: [r(0), r(1), r(2), r(3)],
                    });
                }
            }
            all.extend(keep(&cands, 0.5, Overlap::Union));
        }
        let all = keep(&all, 0.7, Overlap::Union);
        Ok(all
            .into_iter()
            .map(|c| {
                // Stage 1 regresses on the plain width (no +1), as facenet-pytorch does.
                let (bw, bh) = (c.b[2] - c.b[0], c.b[3] - c.b[1]);
                let b = [
                    c.b[0] + c.reg[0] * bw,
                    c.b[1] + c.reg[1] * bh,
                    c.b[2] + c.reg[2] * bw,
                    c.b[3] + c.reg[3] * bh,
                ];
                Candidate { b: square(b), ..c }
            })
            .collect())
    }

    /// The `size`² normalised crops of the boxes that overlap the image, and those boxes.
    fn crops(
        &self,
        img: &RgbPlanes,
        boxes: &[Candidate],
        size: usize,
    ) -> (Vec<f32>, Vec<Candidate>) {
        let mut data = vec![];
        let mut kept = vec![];
        for c in boxes {
            if let Some(win) = crop_window(c.b, img.width, img.height) {
                let mut crop = area_resize(img.data, img.width, img.height, win, size, size);
                normalise(&mut crop);
                data.extend_from_slice(&crop);
                kept.push(*c);
            }
        }
        (data, kept)
    }

    fn stage2(&self, img: &RgbPlanes, boxes: Vec<Candidate>) -> Result<Vec<Candidate>> {
        let (data, boxes) = self.crops(img, &boxes, 24);
        let per = 3 * 24 * 24;
        let mut out = vec![];
        for (ci, chunk) in boxes.chunks(self.opts.max_batch).enumerate() {
            let n = chunk.len();
            let x = data[ci * self.opts.max_batch * per..][..n * per].to_vec();
            let o = self.run(Tensor::new(vec![n, 3, 24, 24], x), |g, x| {
                let o = rnet(g, x)?;
                Ok(vec![o.reg, o.prob])
            })?;
            for (i, c) in chunk.iter().enumerate() {
                let score = o[1].data[i];
                if score > self.opts.thresholds[1] {
                    let r = &o[0].data[i * 4..i * 4 + 4];
                    out.push(Candidate {
                        b: c.b,
                        score,
                        reg: [r[0], r[1], r[2], r[3]],
                    });
                }
            }
        }
        Ok(keep(&out, 0.7, Overlap::Union)
            .into_iter()
            .map(|c| Candidate {
                b: square(apply_regression(c.b, c.reg)),
                ..c
            })
            .collect())
    }

    fn stage3(&self, img: &RgbPlanes, boxes: Vec<Candidate>) -> Result<Vec<Face>> {
        let (data, boxes) = self.crops(img, &boxes, 48);
        let per = 3 * 48 * 48;
        let mut faces = vec![];
        for (ci, chunk) in boxes.chunks(self.opts.max_batch).enumerate() {
            let n = chunk.len();
            let x = data[ci * self.opts.max_batch * per..][..n * per].to_vec();
            let o = self.run(Tensor::new(vec![n, 3, 48, 48], x), |g, x| {
                let o = onet(g, x)?;
                Ok(vec![o.reg, o.landmarks, o.prob])
            })?;
            for (i, c) in chunk.iter().enumerate() {
                let score = o[2].data[i];
                if score <= self.opts.thresholds[2] {
                    continue;
                }
                let r = &o[0].data[i * 4..i * 4 + 4];
                let l = &o[1].data[i * 10..i * 10 + 10];
                // Landmarks are fractions of the box O-Net saw (before its regression),
                // one-based like the crop window.
                let (bw, bh) = (c.b[2] - c.b[0] + 1.0, c.b[3] - c.b[1] + 1.0);
                let landmarks = std::array::from_fn(|k| {
                    [bw * l[k] + c.b[0] - 1.0, bh * l[5 + k] + c.b[1] - 1.0]
                });
                faces.push(Face {
                    bbox: apply_regression(c.b, [r[0], r[1], r[2], r[3]]),
                    score,
                    landmarks,
                });
            }
        }
        let boxes: Vec<[f32; 4]> = faces.iter().map(|f| f.bbox).collect();
        let scores: Vec<f32> = faces.iter().map(|f| f.score).collect();
        Ok(nms(&boxes, &scores, 0.7, Overlap::Min)
            .into_iter()
            .map(|i| faces[i].clone())
            .collect())
    }

    /// Every face in `img`, best score first.
    pub fn detect(&self, img: &RgbPlanes) -> Result<Vec<Face>> {
        assert_eq!(img.data.len(), 3 * img.width * img.height);
        let b1 = self.stage1(img)?;
        if b1.is_empty() {
            return Ok(vec![]);
        }
        let b2 = self.stage2(img, b1)?;
        if b2.is_empty() {
            return Ok(vec![]);
        }
        self.stage3(img, b2)
    }
}

/// The candidates NMS keeps, in its order.
fn keep(c: &[Candidate], thresh: f32, how: Overlap) -> Vec<Candidate> {
    let boxes: Vec<[f32; 4]> = c.iter().map(|c| c.b).collect();
    let scores: Vec<f32> = c.iter().map(|c| c.score).collect();
    nms(&boxes, &scores, thresh, how)
        .into_iter()
        .map(|i| c[i])
        .collect()
}
