//! dynface: DynFaceRestore face restoration on a small graph engine with reverse mode.
//!
//! Layers, bottom up: `tensor` → `graph` (ops, shapes, reverse mode, memory plan) →
//! `backend` (CPU reference, CUDA) → `exec` (runs a planned graph on a backend) → models →
//! sampler → CLI. See ARCHITECTURE.md.

pub mod atomic_file;
pub mod backend;
pub mod bench;
pub mod blur;
pub mod check;
pub mod cli;
pub mod dblm;
pub mod degrade;
pub mod demo;
pub mod diffusion;
pub mod disk_space;
pub mod dsst;
pub mod exec;
pub mod face;
pub mod graph;
pub mod metrics;
pub mod models;
pub mod report;
pub mod restore;
pub mod sampler;
pub mod tensor;
pub mod trace;
pub mod train;
pub mod weights;
