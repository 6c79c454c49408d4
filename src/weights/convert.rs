//! `dynface weights convert`: `.pth` → safetensors, written atomically.

use super::error::{Result, WeightsError};
use super::pth::{load_pth, PthOptions};
use super::safetensors_io::save_safetensors;
use crate::tensor::DType;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct ConvertReport {
    pub output: PathBuf,
    pub tensors: usize,
    pub bytes: usize,
    pub wrapper: Option<String>,
    pub stripped_module_prefix: usize,
    pub warnings: Vec<String>,
}

/// Reads `input`, strips a `module.` prefix, optionally re-encodes floats, and
/// writes `output` atomically. NaN/Inf tensors are reported as warnings.
pub fn convert_pth_to_safetensors(
    input: &Path,
    output: &Path,
    key: Option<&str>,
    dtype: Option<DType>,
) -> Result<ConvertReport> {
    let opts = PthOptions {
        key: key.map(str::to_string),
        ..PthOptions::default()
    };
    let loaded = load_pth(input, &opts)?;
    let mut store = loaded.store;
    let stripped = store.strip_module_prefix()?;
    if let Some(d) = dtype {
        store = store.cast_floats(d);
    }
    let mut warnings = loaded.warnings;
    warnings.extend(store.non_finite_warnings());
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    if let Some(name) = input.file_name() {
        meta.insert("source".to_string(), name.to_string_lossy().into_owned());
    }
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    crate::disk_space::ensure_free(
        dir,
        store.nbytes() as u64,
        &format!("writing {}", output.display()),
    )
    .map_err(|x| WeightsError::Limit(format!("{x:#}")))?;
    save_safetensors(&store, output, Some(meta))?;
    Ok(ConvertReport {
        output: output.to_path_buf(),
        tensors: store.len(),
        bytes: store.nbytes(),
        wrapper: loaded.wrapper,
        stripped_module_prefix: stripped,
        warnings,
    })
}

pub fn default_output(input: &Path) -> PathBuf {
    input.with_extension("safetensors")
}
