//! dynface: DynFaceRestore face restoration on a small graph engine with reverse mode.
pub mod blur;
pub mod tensor;
