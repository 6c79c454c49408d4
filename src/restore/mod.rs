//! The product: METHOD.md's whole pipeline on image files (the `dynface restore` command
//! itself, its flags, progress and batch loop, is `cli/restore.rs`).

pub mod dump;
pub mod fault;
pub mod images;
pub mod inputs;
pub mod models;
pub mod pipeline;
pub mod preset;
pub mod random;
pub mod report;
pub mod shard;

pub use models::{load_models, LoadedModels, ModelSet};
pub use pipeline::Pipeline;
pub use preset::Preset;
pub use random::write_random_set;
pub use report::{ImageReport, RunReport};
