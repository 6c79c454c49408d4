//! Face detection on whole photos: MTCNN with facenet-pytorch's public weights (the only
//! detector checkpoint these machines can reach). A detection is a box, a score and the
//! five landmarks the FFHQ alignment uses.

pub mod area_resize;
pub mod boxes;
pub mod mtcnn;
pub mod mtcnn_nets;
pub mod mtcnn_weights;

pub use mtcnn::{Mtcnn, MtcnnOptions, RgbPlanes};

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
