//! RetinaFace (Deng et al. 2020) as facexlib 0.3.0's `RetinaFace.detect_faces` runs it at
//! the photo's own size (`use_origin_size=True`, its default): the photo as BGR minus the
//! mean (104, 117, 123) through the network on the graph engine (any backend), then priors,
//! decoding, the score threshold and NMS on the host ([`super::retinaface_decode`]).

use super::retinaface_decode::{postprocess, HeadOutputs, Thresholds};
use super::retinaface_nets::{retinaface, Variant};
use super::{Face, RgbPlanes};
use crate::backend::Backend;
use crate::exec::Executor;
use crate::graph::plan::PlanOptions;
use crate::graph::Graph;
use crate::models::WeightMap;
use crate::tensor::{Scalar, Tensor};
use anyhow::Result;

/// The per-channel means facexlib subtracts, in its BGR channel order.
pub const MEAN_BGR: [f32; 3] = [104.0, 117.0, 123.0];

pub struct RetinaFace<B: Backend + Clone> {
    backend: B,
    weights: WeightMap,
    pub variant: Variant,
    pub thresholds: Thresholds,
}

/// `[1, 3, H, W]` network input from planar RGB on 0..255: BGR order minus [`MEAN_BGR`].
pub fn network_input(img: &RgbPlanes) -> Tensor<f32> {
    let n = img.width * img.height;
    assert_eq!(img.data.len(), 3 * n, "planar RGB of width × height");
    let mut v = Vec::with_capacity(3 * n);
    for (c, mean) in MEAN_BGR.iter().enumerate() {
        let rgb = 2 - c;
        v.extend(img.data[rgb * n..(rgb + 1) * n].iter().map(|&p| p - mean));
    }
    Tensor::new(vec![1, 3, img.height, img.width], v)
}

impl<B: Backend + Clone> RetinaFace<B> {
    pub fn new(backend: B, variant: Variant, weights: WeightMap, thresholds: Thresholds) -> Self {
        RetinaFace {
            backend,
            weights,
            variant,
            thresholds,
        }
    }

    /// The network's three outputs for one `[1, 3, H, W]` input ([`network_input`]).
    pub fn heads(&self, x: &Tensor<f32>) -> Result<HeadOutputs> {
        anyhow::ensure!(
            x.shape.len() == 4 && x.shape[0] == 1 && x.shape[1] == 3,
            "RetinaFace takes one [1, 3, H, W] image, got {:?}",
            x.shape
        );
        let mut g = Graph::new();
        let input = g.input("x", &x.shape);
        let o = retinaface(&mut g, input, self.variant)?;
        let outs = [o.loc, o.conf, o.landmarks];
        let mut ex = Executor::new(self.backend.clone(), &g, &outs, PlanOptions::default())?;
        ex.bind_all(|k| self.weights.get(k).cloned())?;
        let xe = Tensor::new(
            x.shape.clone(),
            x.data.iter().map(|&v| B::Elem::of_f32(v)).collect(),
        );
        ex.set_input("x", &xe)?;
        ex.run()?;
        let mut got = outs
            .iter()
            .map(|&o| Ok(ex.output(o)?.data.iter().map(|v| v.as_f64()).collect()))
            .collect::<Result<Vec<Vec<f64>>>>()?
            .into_iter();
        let mut next = || got.next().expect("three outputs");
        Ok(HeadOutputs {
            loc: next(),
            conf: next(),
            landmarks: next(),
        })
    }

    /// Every face in `img` above the score threshold, best score first.
    pub fn detect(&self, img: &RgbPlanes) -> Result<Vec<Face>> {
        let x = network_input(img);
        let out = self.heads(&x)?;
        Ok(postprocess(
            &out,
            img.height,
            img.width,
            1.0,
            self.thresholds,
        ))
    }
}
