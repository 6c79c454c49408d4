//! One error type for checkpoint I/O so callers can tell a refused pickle from a
//! truncated file without parsing messages; every message names the file or key.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not what it claims to be (truncated, bad header, inconsistent sizes).
    #[error("{0}")]
    Format(String),
    /// A pickle names a global outside the allow-list; nothing was executed.
    #[error("{file}: pickle refers to global `{global}`, which is not on the allow-list of plain tensor containers; refusing to load (nothing was executed)")]
    ForbiddenGlobal { file: String, global: String },
    /// A size limit would be exceeded; checked before allocating.
    #[error("{0}")]
    Limit(String),
    /// Type mismatch: a tensor is not of the kind the caller asked for.
    #[error("{0}")]
    DType(String),
    /// Key/shape mismatch against an expected spec; lists every problem at once.
    #[error("{0}")]
    Mismatch(String),
    #[error("{0}")]
    Download(String),
}

impl WeightsError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        WeightsError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, WeightsError>;
