//! The product: `dynface restore`, METHOD.md's whole pipeline on image files.

pub mod device;
pub mod dump;
pub mod images;
pub mod models;
pub mod pipeline;
pub mod preset;
pub mod random;
pub mod shard;

pub use models::{load_models, LoadedModels, ModelSet};
pub use pipeline::Pipeline;
pub use random::{run_random, write_random_set, RandomArgs};
