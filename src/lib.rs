//! dynface: DynFaceRestore face restoration on a small graph engine with reverse mode.
pub mod tensor;
pub mod weights;
