//! Guided diffusion sampling (METHOD.md Eq. 3–7, 13, 15): DDPM / DDIM reverse steps on a
//! respaced chain, DPS guidance through a Gaussian blur with per-image widths σ_i refined by
//! gradient descent, several guidance images entering at their own start steps, and a
//! per-pixel scale hook. The sampler owns no model: the denoiser is a graph-building closure.

pub mod config;
pub mod graph;
pub mod prepare;
mod run;
pub mod scale;
pub mod step;

pub use config::{default_weights, guidance_sigmas, Eta, SamplerConfig, StepKind};
pub use graph::{DenoiserInputs, GuidedGraph};
pub use prepare::multi_guidance;
pub use run::{Guidance, SampleOutput, Sampler, StepTrace, StepValues};
pub use scale::{ScaleContext, ScaleMap, UnitScale};

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
