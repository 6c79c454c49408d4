//! safetensors load/save. Loading reads the header first and checks every claim in
//! it against the file length before allocating any tensor, then reads each tensor
//! straight into its typed buffer (no second copy of the whole file).

use super::error::{Result, WeightsError};
use super::fsutil::write_atomically;
use super::store::{checked_numel, WeightData, WeightStore, WeightTensor, WeightType};
use safetensors::tensor::{Dtype, Metadata, TensorInfo};
use safetensors::View;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// Larger JSON headers are refused (same bound as the safetensors crate).
const MAX_HEADER_BYTES: u64 = 100_000_000;

fn fmt_err(path: &Path, msg: impl std::fmt::Display) -> WeightsError {
    WeightsError::Format(format!("{}: {msg}", path.display()))
}

fn weight_type(name: &str, dtype: Dtype, path: &Path) -> Result<WeightType> {
    match dtype {
        Dtype::F32 => Ok(WeightType::F32),
        Dtype::F16 => Ok(WeightType::F16),
        Dtype::BF16 => Ok(WeightType::BF16),
        Dtype::I64 => Ok(WeightType::I64),
        other => Err(WeightsError::DType(format!(
            "{}: tensor `{name}` has dtype {other:?}; supported are F32, F16, BF16 and I64",
            path.display()
        ))),
    }
}

/// Loads every tensor of a safetensors file, in file (offset) order.
pub fn load_safetensors(path: &Path) -> Result<WeightStore> {
    let f = File::open(path).map_err(|e| WeightsError::io(path, e))?;
    let file_len = f.metadata().map_err(|e| WeightsError::io(path, e))?.len();
    read_safetensors(BufReader::new(f), file_len, path)
}

/// [`load_safetensors`] on any seekable source of `file_len` bytes (an in-memory buffer,
/// for the fuzz targets); `path` names it in errors.
pub fn read_safetensors<R: Read + Seek>(
    mut f: R,
    file_len: u64,
    path: &Path,
) -> Result<WeightStore> {
    if file_len < 8 {
        return Err(fmt_err(
            path,
            format!("truncated: {file_len} bytes, a safetensors file starts with an 8-byte header length"),
        ));
    }
    let mut len8 = [0u8; 8];
    f.read_exact(&mut len8)
        .map_err(|e| WeightsError::io(path, e))?;
    let header_len = u64::from_le_bytes(len8);
    if header_len > file_len - 8 {
        return Err(fmt_err(
            path,
            format!(
                "header claims {header_len} bytes but only {} follow the length field (truncated or not a safetensors file)",
                file_len - 8
            ),
        ));
    }
    if header_len > MAX_HEADER_BYTES {
        return Err(WeightsError::Limit(format!(
            "{}: header of {header_len} bytes exceeds the {MAX_HEADER_BYTES}-byte limit",
            path.display()
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    f.read_exact(&mut header)
        .map_err(|e| WeightsError::io(path, e))?;
    let text = std::str::from_utf8(&header)
        .map_err(|_| fmt_err(path, "header is not valid UTF-8 (not a safetensors file?)"))?;
    let meta: Metadata =
        serde_json::from_str(text).map_err(|e| fmt_err(path, format!("bad header JSON: {e}")))?;
    let data_len = file_len - 8 - header_len;
    let data_start = 8 + header_len;

    let mut infos: Vec<(String, &TensorInfo)> = meta.tensors().into_iter().collect();
    infos.sort_by_key(|(_, i)| i.data_offsets);
    // Check every tensor's claims before allocating anything.
    let mut types = Vec::with_capacity(infos.len());
    let mut end_max = 0u64;
    for (name, info) in &infos {
        let wt = weight_type(name, info.dtype, path)?;
        let (s, e) = info.data_offsets;
        let n = checked_numel(&info.shape).ok_or_else(|| {
            fmt_err(
                path,
                format!("tensor `{name}`: shape {:?} overflows", info.shape),
            )
        })?;
        let want = (n as u64).checked_mul(wt.size_bytes() as u64);
        if e < s || want != Some((e - s) as u64) {
            return Err(fmt_err(
                path,
                format!(
                    "tensor `{name}`: shape {:?} of {} needs {} bytes but its data offsets [{s}, {e}) span {} bytes",
                    info.shape,
                    wt,
                    n.saturating_mul(wt.size_bytes()),
                    e.wrapping_sub(s) as i64
                ),
            ));
        }
        if e as u64 > data_len {
            return Err(fmt_err(
                path,
                format!(
                    "truncated: tensor `{name}` ends at data byte {e} but the file holds only {data_len} data bytes"
                ),
            ));
        }
        end_max = end_max.max(e as u64);
        types.push(wt);
    }
    if end_max != data_len {
        return Err(fmt_err(
            path,
            format!("header describes {end_max} data bytes but the file holds {data_len}"),
        ));
    }

    let mut store = WeightStore::new();
    for ((name, info), wt) in infos.iter().zip(types) {
        let n = checked_numel(&info.shape).unwrap_or(0);
        let mut data = match wt {
            WeightType::F32 => WeightData::F32(vec![0.0; n]),
            WeightType::F16 => WeightData::F16(vec![half::f16::ZERO; n]),
            WeightType::BF16 => WeightData::BF16(vec![half::bf16::ZERO; n]),
            WeightType::I64 => WeightData::I64(vec![0; n]),
        };
        let buf: &mut [u8] = match &mut data {
            WeightData::F32(v) => bytemuck::cast_slice_mut(v),
            WeightData::F16(v) => bytemuck::cast_slice_mut(v),
            WeightData::BF16(v) => bytemuck::cast_slice_mut(v),
            WeightData::I64(v) => bytemuck::cast_slice_mut(v),
        };
        f.seek(SeekFrom::Start(data_start + info.data_offsets.0 as u64))
            .and_then(|_| f.read_exact(buf))
            .map_err(|e| WeightsError::io(path, e))?;
        store.insert(name.clone(), WeightTensor::new(info.shape.clone(), data)?);
    }
    Ok(store)
}

struct ViewOf<'a>(&'a WeightTensor);

impl View for ViewOf<'_> {
    fn dtype(&self) -> Dtype {
        match self.0.dtype() {
            WeightType::F32 => Dtype::F32,
            WeightType::F16 => Dtype::F16,
            WeightType::BF16 => Dtype::BF16,
            WeightType::I64 => Dtype::I64,
        }
    }
    fn shape(&self) -> &[usize] {
        &self.0.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.0.data.as_bytes())
    }
    fn data_len(&self) -> usize {
        self.0.data.as_bytes().len()
    }
}

/// Writes `store` atomically (`NAME.tmp`, fsync, rename). `metadata` goes into the
/// header's `__metadata__` (e.g. the source file).
pub fn save_safetensors(
    store: &WeightStore,
    path: &Path,
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    write_atomically(path, |tmp| {
        let views = store.iter().map(|(n, t)| (n.to_string(), ViewOf(t)));
        safetensors::serialize_to_file(views, &metadata, tmp)
            .map_err(|e| fmt_err(tmp, format!("cannot write safetensors: {e}")))
    })
}
