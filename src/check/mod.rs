//! Correctness checking of the graph engine, in the spirit of ggml's test-backend-ops: one
//! table of small op cases ([`cases`]) that every checker runs, a vector-Jacobian product
//! checker against finite differences in f64 ([`vjp`]), and the dot-product test for linear
//! operators ([`dot_test`]). [`table`] runs the case table on any backend (CPU f32, the
//! kernels on the emulator or a GPU, fp32 or bf16) against the f64 CPU, element by element
//! ([`compare`]); [`variants`] runs every conv / gemm kernel variant; [`skip`] records a check
//! that could not run so it is counted, and fails CI; [`cli`] is `dynface kernels check
//! --parity`.

pub mod cases;
pub mod compare;
pub mod cost;
pub mod dot_test;
pub mod kernel_cases;
pub mod network_vjp;
pub mod parity;
pub mod skip;
pub mod table;
pub mod variants;
pub mod vjp;
pub mod weight_cases;
pub mod weight_vjp;

use crate::backend::BackendError;
use crate::exec::ExecError;

/// Why a check could not produce a verdict.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The backend does not implement an op of the case yet: the caller must say it
    /// skipped the case, never count it as passed.
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("graph: {0}")]
    Graph(#[from] crate::graph::GraphError),
    #[error("exec: {0}")]
    Exec(String),
}

impl From<ExecError> for CheckError {
    fn from(e: ExecError) -> Self {
        match e {
            ExecError::Op {
                source: BackendError::Unsupported(m),
                label,
                ..
            } => CheckError::Unsupported(format!("{label}: {m}")),
            ExecError::Backend(BackendError::Unsupported(m)) => CheckError::Unsupported(m),
            other => CheckError::Exec(other.to_string()),
        }
    }
}
