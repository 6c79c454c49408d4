//! Guided diffusion sampling (METHOD.md Eq. 3–7, 13, 15): DDPM / DDIM reverse steps on a
//! respaced chain, DPS guidance through a Gaussian blur with per-image widths σ_i refined by
//! gradient descent, several guidance images entering at their own start steps, and a
//! per-pixel scale hook. The sampler owns no model: the denoiser is a graph-building closure.
//!
//! Where the update runs (`SamplerConfig::update_on`): `Device` (default) puts the reverse
//! step, the guidance step and the σ refinement into the step graph (`device.rs`), so a step
//! is one graph run (or one replay of the recorded graph) and x_t never leaves the backend;
//! `Host` does the update in f64 on the host (`step.rs`), the reference the device step is
//! tested against. A scale map that needs x̂₀ must then be in the graph too
//! (`Sampler::with_scale`, as the pipeline builds DGSA); host-side `ScaleMap`s other than
//! `UnitScale` need `UpdateOn::Host`.

pub mod config;
mod device;
pub mod graph;
mod run;
pub mod scale;
pub mod snapshot;
pub mod step;

pub use config::{default_weights, Eta, SamplerConfig, StepKind, UpdateOn};
pub use graph::{DenoiserInputs, GuidedGraph, ScaleBuilder, ScaleInputs};
pub use run::{Guidance, RunTiming, SampleOutput, Sampler, StepTrace, StepValues};
pub use scale::{ScaleContext, ScaleMap, UnitScale};
pub use snapshot::ScaleSnapshot;

#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    #[error("sampler config: {0}")]
    Config(String),
    #[error("sampler input: {0}")]
    Input(String),
    #[error("sampler graph: {0}")]
    Graph(#[from] crate::graph::GraphError),
    #[error("sampler run: {0}")]
    Exec(#[from] crate::exec::ExecError),
    #[error(transparent)]
    Diffusion(#[from] crate::diffusion::DiffusionError),
    #[error("scale map: {0}")]
    Scale(anyhow::Error),
}

pub type Result<T> = std::result::Result<T, SamplerError>;
