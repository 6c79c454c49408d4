//! The networks of DynFaceRestore, each a function that adds itself to a [`Graph`] with its
//! weights as constants named by the official checkpoint keys.

pub mod dgsa;
pub mod dists;
pub mod sde;
pub mod swinir;
pub mod unet;

use crate::tensor::Tensor;
use std::collections::HashMap;

/// Weights by checkpoint key, already converted to f32.
pub type WeightMap = HashMap<String, Tensor<f32>>;
