//! dynface: DynFaceRestore face restoration on a small graph engine with reverse mode.
//!
//! Layers, bottom up: `tensor` → `graph` (ops, shapes, reverse mode, memory plan) →
//! `backend` (CPU reference, CUDA) → `exec` (runs a planned graph on a backend) → models →
//! sampler → CLI. See ARCHITECTURE.md.

pub mod backend;
pub mod bench;
pub mod exec;
pub mod graph;
pub mod tensor;
