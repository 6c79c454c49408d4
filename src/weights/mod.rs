//! Checkpoint I/O: an ordered store of named tensors, safetensors load/save, a safe
//! reader for PyTorch `.pth` files, conversion between the two, and the download of
//! the public checkpoints named in `weights/manifest.json`.
//!
//! Nothing here executes code from a checkpoint: the `.pth` reader interprets pickles
//! with its own small stack machine that only knows an allow-list of globals.
//!
//! The `dynface weights` commands are `cli/weights.rs`.

pub mod convert;
pub mod download;
pub mod error;
pub mod fsutil;
pub mod manifest;
pub mod pickle;
pub mod pth;
pub mod safetensors_io;
pub mod store;

pub use convert::{convert_pth_to_safetensors, ConvertReport};
pub use error::WeightsError;
pub use manifest::{Manifest, ManifestEntry};
pub use pth::{load_pth, PthFormat, PthLoad, PthOptions};
pub use safetensors_io::{load_safetensors, save_safetensors};
pub use store::{WeightData, WeightStore, WeightTensor, WeightType};
