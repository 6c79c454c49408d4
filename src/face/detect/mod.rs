//! Face detection on whole photos: RetinaFace as facexlib ships it (ResNet-50 or
//! MobileNet-0.25; its checkpoints cannot reach these machines, so it is golden-tested with
//! random weights) and MTCNN with facenet-pytorch's public weights (the only detector
//! checkpoint these machines can reach). A detection is a box, a score and the five
//! landmarks the FFHQ alignment uses.

pub mod area_resize;
pub mod boxes;
pub mod mtcnn;
pub mod mtcnn_nets;
pub mod mtcnn_weights;
pub mod retinaface;
pub mod retinaface_decode;
pub mod retinaface_nets;
pub mod retinaface_weights;

pub use mtcnn::{Mtcnn, MtcnnOptions, RgbPlanes};
pub use retinaface::RetinaFace;

use crate::backend::Backend;

/// One of the detectors, loaded.
pub enum Detector<B: Backend + Clone> {
    Mtcnn(Mtcnn<B>),
    RetinaFace(RetinaFace<B>),
}

impl<B: Backend + Clone> Detector<B> {
    /// Every face in `img`, best score first.
    pub fn detect(&self, img: &RgbPlanes) -> anyhow::Result<Vec<Face>> {
        match self {
            Detector::Mtcnn(d) => d.detect(img),
            Detector::RetinaFace(d) => d.detect(img),
        }
    }

    /// The shortest photo side the detector can find a face in: MTCNN's 12 px cell;
    /// RetinaFace's smallest prior is 16 px.
    pub fn min_side(&self) -> u32 {
        match self {
            Detector::Mtcnn(_) => 12,
            Detector::RetinaFace(_) => 16,
        }
    }
}

/// One detected face, in pixels of the (upright) photo.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Face {
    /// `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
    pub score: f32,
    /// Left eye, right eye, nose, left and right mouth corner (as seen in the image).
    pub landmarks: [[f32; 2]; 5],
}

impl Face {
    /// Distance between the eyes, in pixels.
    pub fn eye_distance(&self) -> f32 {
        let [l, r] = [self.landmarks[0], self.landmarks[1]];
        ((l[0] - r[0]).powi(2) + (l[1] - r[1]).powi(2)).sqrt()
    }
}
