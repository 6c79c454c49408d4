//! The diffusion prior's noise schedule: β tables, ᾱ in f64, respacing onto a shorter chain
//! (the model keeps seeing ORIGINAL step indices), the DDPM posterior and the learned-range
//! variance of METHOD.md §4.

pub mod respace;
pub mod schedule;
pub mod variance;

pub use respace::space_timesteps;
pub use schedule::{BetaSchedule, Schedule};
pub use variance::VarianceMode;

#[derive(Debug, thiserror::Error)]
pub enum DiffusionError {
    #[error("respacing {spec:?}: {msg}")]
    Respacing { spec: String, msg: String },
    #[error("schedule: {0}")]
    Schedule(String),
}

pub type Result<T> = std::result::Result<T, DiffusionError>;
