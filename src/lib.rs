//! dynface: DynFaceRestore face restoration on a small graph engine with reverse mode.
pub mod atomic_file;
pub mod blur;
pub mod degrade;
pub mod metrics;
pub mod sigma_star;
pub mod tensor;
