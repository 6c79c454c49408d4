//! guided-diffusion's "ADM" UNet (DifFace's FFHQ 512 diffusion prior) built on the graph.

pub mod attention;
pub mod config;
pub mod cost;
pub mod layers;
pub mod model;
pub mod resample;
pub mod resblock;
pub mod traffic;
pub mod weights;

pub use config::UNetConfig;
pub use cost::graph_macs;
pub use model::{build_unet, parameter_count, unet_spec};
