//! The product: METHOD.md's whole pipeline on image files (the `dynface restore` command
//! itself, its flags and progress bars, is `cli/restore.rs`; its batch loop over one device
//! or several is `workers.rs`).

pub mod colormap;
pub mod dump;
pub mod fault;
pub mod images;
pub mod inputs;
pub mod models;
pub mod pipeline;
pub mod preset;
pub mod queue;
pub mod random;
pub mod report;
pub mod shard;
pub mod workers;

pub use models::{load_models, LoadedModels, ModelSet};
pub use pipeline::Pipeline;
pub use preset::Preset;
pub use random::write_random_set;
pub use report::{ImageReport, RunReport};
