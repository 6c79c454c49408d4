//! Checkpoint I/O: an ordered store of named tensors, safetensors load/save, a safe
//! reader for PyTorch `.pth` files, conversion between the two, and the download of
//! the public checkpoints named in `weights/manifest.json`.
//!
//! Nothing here executes code from a checkpoint: the `.pth` reader interprets pickles
//! with its own small stack machine that only knows an allow-list of globals.
//!
//! CLI wiring (for `cli/mod.rs`):
//! ```text
//! #[derive(clap::Subcommand)]
//! enum WeightsCmd {
//!     /// FILE.pth -o FILE.safetensors [--key KEY] [--dtype f32|f16|bf16]
//!     Convert(dynface::weights::ConvertArgs),
//!     /// [NAME...] [--dir DIR] [--manifest FILE] [--no-convert]
//!     Download(dynface::weights::DownloadArgs),
//! }
//! // match cmd { WeightsCmd::Convert(a) => { run_convert(&a)?; } WeightsCmd::Download(a) => { run_download(&a)?; } }
//! ```

pub mod convert;
pub mod download;
pub mod error;
pub mod fsutil;
pub mod manifest;
pub mod pickle;
pub mod pth;
pub mod safetensors_io;
pub mod store;

pub use convert::{convert_pth_to_safetensors, run_convert, ConvertArgs, ConvertReport};
pub use download::{run_download, DownloadArgs};
pub use error::WeightsError;
pub use manifest::{Manifest, ManifestEntry};
pub use pth::{load_pth, PthFormat, PthLoad, PthOptions};
pub use safetensors_io::{load_safetensors, save_safetensors};
pub use store::{WeightData, WeightStore, WeightTensor, WeightType};
