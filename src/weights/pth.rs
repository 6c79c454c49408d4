//! PyTorch `.pth` reader: the zip container `torch.save` writes since 1.6 and the
//! older "legacy" stream (magic, protocol, sys info, object, storage keys, raw
//! storages). Pickles go through the allow-listed interpreter in `pickle.rs`; tensor
//! views (offset + strides) are materialised contiguous.

use super::error::{Result, WeightsError};
use super::pickle::{
    unpickle, Input, Obj, PickleLimits, StorageRef, StorageType, TensorRef, Unpickled, Value,
};
use super::store::{WeightData, WeightStore, WeightTensor};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// Wrapper keys tried, in order, when the top level holds no tensors itself.
pub const WRAPPER_KEYS: [&str; 4] = ["state_dict", "params_ema", "model", "params"];

const LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;
const LEGACY_PROTOCOL: i128 = 1001;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PthFormat {
    Zip,
    Legacy,
}

#[derive(Clone, Debug)]
pub struct PthOptions {
    /// Take the state dict from this top-level key instead of guessing.
    pub key: Option<String>,
    /// Largest single tensor accepted, in bytes.
    pub max_tensor_bytes: u64,
    /// Most bytes all tensors together may expand to. `None`: 4 × the file size +
    /// 64 MiB. Only overlapping views (e.g. stride 0 from `expand`) can exceed the
    /// file size, so this stops a tiny file from demanding gigabytes.
    pub max_total_bytes: Option<u64>,
    /// Deepest dict nesting followed when flattening.
    pub max_depth: usize,
    pub pickle: PickleLimits,
}

impl Default for PthOptions {
    fn default() -> Self {
        PthOptions {
            key: None,
            max_tensor_bytes: 16 << 30,
            max_total_bytes: None,
            max_depth: 32,
            pickle: PickleLimits::default(),
        }
    }
}

#[derive(Debug)]
pub struct PthLoad {
    pub store: WeightStore,
    pub format: PthFormat,
    /// The wrapper key the tensors came from, if any.
    pub wrapper: Option<String>,
    /// Skipped non-tensor entries, narrowed f64 tensors, and similar notes.
    pub warnings: Vec<String>,
}

fn fmt_err(origin: &str, msg: impl std::fmt::Display) -> WeightsError {
    WeightsError::Format(format!("{origin}: {msg}"))
}

/// Reads a `.pth` file without executing anything in it.
pub fn load_pth(path: &Path, opts: &PthOptions) -> Result<PthLoad> {
    let origin = path.display().to_string();
    let f = File::open(path).map_err(|e| WeightsError::io(path, e))?;
    let file_len = f.metadata().map_err(|e| WeightsError::io(path, e))?.len();
    read_pth(BufReader::new(f), file_len, &origin, opts)
}

/// [`load_pth`] on any seekable source of `len` bytes (an in-memory buffer, for the fuzz
/// targets); `origin` names it in errors.
pub fn read_pth<R: Read + Seek>(
    mut f: R,
    len: u64,
    origin: &str,
    opts: &PthOptions,
) -> Result<PthLoad> {
    let io = |e: std::io::Error| fmt_err(origin, format!("read error: {e}"));
    let mut head = [0u8; 4];
    let n = read_up_to(&mut f, &mut head).map_err(io)?;
    f.seek(SeekFrom::Start(0)).map_err(io)?;
    if n >= 4 && &head == b"PK\x03\x04" {
        load_zip(f, len, origin, opts)
    } else if n >= 1 && head[0] == 0x80 {
        load_legacy(f, len, origin, opts)
    } else {
        Err(fmt_err(
            origin,
            format!(
                "not a PyTorch checkpoint: starts with {:02x?}, expected a zip archive (PK..) or a pickle (0x80)",
                &head[..n]
            ),
        ))
    }
}

fn read_up_to(f: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn storage_bytes(s: &StorageRef, origin: &str) -> Result<u64> {
    s.numel
        .checked_mul(s.dtype.size_bytes() as u64)
        .ok_or_else(|| fmt_err(origin, format!("storage `{}` size overflows", s.key)))
}

fn load_zip<R: Read + Seek>(
    f: R,
    file_len: u64,
    origin: &str,
    opts: &PthOptions,
) -> Result<PthLoad> {
    let mut zip = zip::ZipArchive::new(f)
        .map_err(|e| fmt_err(origin, format!("not a readable zip archive: {e}")))?;
    let pkl_names: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok().map(|c| c.into_owned()))
        .filter(|n| {
            n.strip_suffix("data.pkl")
                .is_some_and(|p| p.is_empty() || (p.ends_with('/') && p.matches('/').count() == 1))
        })
        .collect();
    let pkl_name = match pkl_names.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(fmt_err(
                origin,
                "zip archive has no `<folder>/data.pkl`; not a torch.save checkpoint",
            ))
        }
        many => {
            return Err(fmt_err(
                origin,
                format!("zip archive has several data.pkl entries: {many:?}"),
            ))
        }
    };
    let prefix = pkl_name.strip_suffix("data.pkl").unwrap_or("").to_string();
    // Older torch versions write no byteorder entry (and were little-endian only).
    let bo_name = format!("{prefix}byteorder");
    if zip.index_for_name(&bo_name).is_some() {
        let bo = read_entry(&mut zip, &bo_name, 16, file_len, origin)?;
        if bo.trim_ascii() != b"little" {
            return Err(fmt_err(
                origin,
                format!(
                    "byte order `{}` is not supported",
                    String::from_utf8_lossy(&bo)
                ),
            ));
        }
    }
    let pkl = read_entry(
        &mut zip,
        &pkl_name,
        opts.pickle.max_string,
        file_len,
        origin,
    )?;
    let mut r = pkl.as_slice();
    let mut input = Input::new(&mut r, pkl.len() as u64);
    let unpickled = unpickle(&mut input, &format!("{origin}: {pkl_name}"), opts.pickle)?;

    let (named, wrapper, mut warnings) = select_tensors(&unpickled, origin, opts)?;
    // Storages are read on first use and dropped after last use, so peak memory is
    // the output plus one storage rather than twice the file.
    let mut load = |s: &StorageRef| -> Result<Vec<u8>> {
        let want = storage_bytes(s, origin)?;
        let name = format!("{prefix}data/{}", s.key);
        let bytes = read_entry(&mut zip, &name, want, file_len, origin)?;
        if bytes.len() as u64 != want {
            return Err(fmt_err(
                origin,
                format!(
                    "storage `{}`: pickle claims {} elements of {:?} ({want} bytes) but entry `{name}` holds {} bytes",
                    s.key,
                    s.numel,
                    s.dtype,
                    bytes.len()
                ),
            ));
        }
        Ok(bytes)
    };
    let store = materialise(&named, &mut load, file_len, origin, opts, &mut warnings)?;
    Ok(PthLoad {
        store,
        format: PthFormat::Zip,
        wrapper,
        warnings,
    })
}

/// Reads a whole entry after checking its declared size against `max` and against
/// what its compressed bytes could possibly expand to, so a lying header cannot make
/// us allocate.
fn read_entry<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    max: u64,
    file_len: u64,
    origin: &str,
) -> Result<Vec<u8>> {
    let entry = zip
        .by_name(name)
        .map_err(|e| fmt_err(origin, format!("archive entry `{name}`: {e}")))?;
    let size = entry.size();
    let packed = entry.compressed_size();
    // Deflate expands at most ~1032:1; stored entries not at all.
    let bound = if entry.compression() == zip::CompressionMethod::Stored {
        packed
    } else {
        packed.saturating_mul(1032).saturating_add(64)
    };
    if size > max || size > bound || packed > file_len {
        return Err(fmt_err(
            origin,
            format!(
                "archive entry `{name}` declares {size} bytes ({packed} packed, file is {file_len}); expected at most {}",
                max.min(bound)
            ),
        ));
    }
    let mut buf = Vec::with_capacity(size as usize);
    entry
        .take(size + 1)
        .read_to_end(&mut buf)
        .map_err(|e| fmt_err(origin, format!("archive entry `{name}`: {e}")))?;
    if buf.len() as u64 != size {
        return Err(fmt_err(
            origin,
            format!(
                "archive entry `{name}` holds {} bytes, header said {size}",
                buf.len()
            ),
        ));
    }
    Ok(buf)
}

fn load_legacy<R: Read + Seek>(
    mut reader: R,
    file_len: u64,
    origin: &str,
    opts: &PthOptions,
) -> Result<PthLoad> {
    let mut input = Input::new(&mut reader, file_len);
    let small = PickleLimits {
        max_objects: 10_000,
        max_string: 1 << 20,
        ..opts.pickle
    };
    let magic = unpickle(&mut input, origin, small)?;
    if magic.root != Value::Int(LEGACY_MAGIC) {
        return Err(fmt_err(
            origin,
            "pickle stream without the PyTorch magic number; not a legacy torch.save file",
        ));
    }
    let proto = unpickle(&mut input, origin, small)?;
    if proto.root != Value::Int(LEGACY_PROTOCOL) {
        return Err(fmt_err(
            origin,
            format!(
                "legacy protocol {:?} is not supported (expected 1001)",
                proto.root
            ),
        ));
    }
    let sys = unpickle(&mut input, origin, small)?;
    if let Some(Obj::Dict(d)) = sys.obj(&sys.root) {
        if d.get_str("little_endian") == Some(&Value::Bool(false)) {
            return Err(fmt_err(
                origin,
                "big-endian legacy checkpoints are not supported",
            ));
        }
    }
    let main = unpickle(&mut input, origin, opts.pickle)?;
    let keys_pkl = unpickle(&mut input, origin, opts.pickle)?;
    let keys: Vec<String> = match keys_pkl.obj(&keys_pkl.root) {
        Some(Obj::List(items)) => items
            .iter()
            .map(|v| match v {
                Value::Str(s) => Ok(s.to_string()),
                _ => Err(fmt_err(origin, "storage key list holds a non-string")),
            })
            .collect::<Result<_>>()?,
        _ => return Err(fmt_err(origin, "storage key list is not a list")),
    };

    let (named, wrapper, mut warnings) = select_tensors(&main, origin, opts)?;
    // Every storage named by any persistent id, so the raw section can be checked.
    let mut declared: HashMap<String, StorageRef> = HashMap::new();
    for o in &main.objs {
        if let Obj::Storage(s) = o {
            declared.insert(s.key.clone(), s.clone());
        }
    }
    let needed: HashSet<&str> = named.iter().map(|(_, t)| t.storage.key.as_str()).collect();
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    for key in &keys {
        let Some(s) = declared.get(key) else {
            return Err(fmt_err(
                origin,
                format!("storage `{key}` listed but never referenced"),
            ));
        };
        let head = input
            .bytes(8)
            .map_err(|e| fmt_err(origin, format!("storage `{key}`: {e}")))?;
        let numel = u64::from_le_bytes(head.try_into().expect("8 bytes"));
        if numel != s.numel {
            return Err(fmt_err(
                origin,
                format!(
                    "storage `{key}`: header says {numel} elements, pickle says {}",
                    s.numel
                ),
            ));
        }
        let nbytes = storage_bytes(s, origin)?;
        if nbytes > input.remaining() {
            return Err(fmt_err(
                origin,
                format!(
                    "truncated: storage `{key}` needs {nbytes} bytes but only {} remain",
                    input.remaining()
                ),
            ));
        }
        if needed.contains(key.as_str()) {
            let bytes = input
                .bytes(nbytes)
                .map_err(|e| fmt_err(origin, format!("storage `{key}`: {e}")))?;
            storages.insert(key.clone(), bytes);
        } else {
            // Unreferenced storage: skip without reading it into memory.
            input
                .skip(nbytes)
                .map_err(|e| fmt_err(origin, format!("storage `{key}`: {e}")))?;
        }
    }
    for (_, t) in &named {
        if !storages.contains_key(&t.storage.key) {
            return Err(fmt_err(
                origin,
                format!(
                    "storage `{}` is used by a tensor but missing from the file",
                    t.storage.key
                ),
            ));
        }
    }
    let mut load = |s: &StorageRef| -> Result<Vec<u8>> {
        storages.remove(&s.key).ok_or_else(|| {
            fmt_err(
                origin,
                format!("storage `{}` is missing from the file", s.key),
            )
        })
    };
    let store = materialise(&named, &mut load, file_len, origin, opts, &mut warnings)?;
    Ok(PthLoad {
        store,
        format: PthFormat::Legacy,
        wrapper,
        warnings,
    })
}

type Named = Vec<(String, TensorRef)>;

/// Picks the state dict (explicit key, the top level, or a known wrapper) and
/// flattens it into `(name, tensor)` pairs.
fn select_tensors(
    u: &Unpickled,
    origin: &str,
    opts: &PthOptions,
) -> Result<(Named, Option<String>, Vec<String>)> {
    let Some(Obj::Dict(top)) = u.obj(&u.root) else {
        return Err(fmt_err(origin, "top-level object is not a dict"));
    };
    let top_keys = || {
        top.entries
            .iter()
            .map(|(k, _)| key_text(k))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let is_dict = |v: &Value| matches!(u.obj(v), Some(Obj::Dict(_)));
    let is_tensor = |v: &Value| matches!(u.obj(v), Some(Obj::Tensor(_)));
    let (root, wrapper) = if let Some(k) = &opts.key {
        match top.get_str(k) {
            Some(v) if is_dict(v) => (v.clone(), Some(k.clone())),
            Some(_) => return Err(fmt_err(origin, format!("key `{k}` does not hold a dict"))),
            None => {
                return Err(fmt_err(
                    origin,
                    format!("no top-level key `{k}`; the file has: {}", top_keys()),
                ))
            }
        }
    } else if top.entries.iter().any(|(_, v)| is_tensor(v)) {
        (u.root.clone(), None)
    } else if let Some(k) = WRAPPER_KEYS
        .iter()
        .find(|k| top.get_str(k).is_some_and(is_dict))
    {
        (top.get_str(k).expect("found").clone(), Some(k.to_string()))
    } else {
        (u.root.clone(), None)
    };
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let mut visiting = HashSet::new();
    flatten(
        u,
        &root,
        "",
        0,
        opts,
        origin,
        &mut visiting,
        &mut out,
        &mut warnings,
    )?;
    if out.is_empty() {
        return Err(fmt_err(
            origin,
            format!(
                "no tensors found; top-level keys: {} (use --key to pick the state dict)",
                top_keys()
            ),
        ));
    }
    Ok((out, wrapper, warnings))
}

fn key_text(k: &Value) -> String {
    match k {
        Value::Str(s) => s.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

#[allow(clippy::too_many_arguments)]
fn flatten(
    u: &Unpickled,
    v: &Value,
    prefix: &str,
    depth: usize,
    opts: &PthOptions,
    origin: &str,
    visiting: &mut HashSet<usize>,
    out: &mut Named,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let Value::Obj(id) = v else {
        unreachable!("flatten is called on dicts")
    };
    if depth > opts.max_depth {
        return Err(WeightsError::Limit(format!(
            "{origin}: dicts nested deeper than {} levels at `{prefix}`",
            opts.max_depth
        )));
    }
    if !visiting.insert(*id) {
        return Err(fmt_err(
            origin,
            format!("dict at `{prefix}` contains itself"),
        ));
    }
    let Some(Obj::Dict(d)) = u.objs.get(*id) else {
        unreachable!("checked by callers")
    };
    for (k, val) in &d.entries {
        let name = if prefix.is_empty() {
            key_text(k)
        } else {
            format!("{prefix}.{}", key_text(k))
        };
        match u.obj(val) {
            Some(Obj::Tensor(t)) => out.push((name, t.clone())),
            Some(Obj::Dict(_)) => flatten(
                u,
                val,
                &name,
                depth + 1,
                opts,
                origin,
                visiting,
                out,
                warnings,
            )?,
            _ => warnings.push(format!("skipped non-tensor entry `{name}`")),
        }
    }
    visiting.remove(id);
    Ok(())
}

/// Copies each tensor's elements out of its storage in row-major order.
fn materialise(
    named: &Named,
    load: &mut dyn FnMut(&StorageRef) -> Result<Vec<u8>>,
    file_len: u64,
    origin: &str,
    opts: &PthOptions,
    warnings: &mut Vec<String>,
) -> Result<WeightStore> {
    let budget = opts
        .max_total_bytes
        .unwrap_or(file_len.saturating_mul(4).saturating_add(64 << 20));
    let total = named.iter().fold(0u64, |acc, (_, t)| {
        let es = t.storage.dtype.size_bytes() as u64;
        let n = t.shape.iter().try_fold(es, |a, &d| a.checked_mul(d));
        acc.saturating_add(n.unwrap_or(u64::MAX))
    });
    if total > budget {
        return Err(WeightsError::Limit(format!(
            "{origin}: the tensors would expand to {total} bytes from a {file_len}-byte file \
             (limit {budget}); refusing sizes the file cannot back"
        )));
    }
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for (_, t) in named {
        *uses.entry(t.storage.key.as_str()).or_default() += 1;
    }
    let mut cache: HashMap<&str, (&StorageRef, Vec<u8>)> = HashMap::new();
    let mut store = WeightStore::new();
    let mut narrowed = Vec::new();
    for (name, t) in named {
        let key = t.storage.key.as_str();
        if !cache.contains_key(key) {
            cache.insert(key, (&t.storage, load(&t.storage)?));
        }
        let (first, src) = &cache[key];
        if (first.dtype, first.numel) != (t.storage.dtype, t.storage.numel) {
            return Err(fmt_err(
                origin,
                format!(
                    "storage `{key}` is declared both as {} x {:?} and {} x {:?}",
                    first.numel, first.dtype, t.storage.numel, t.storage.dtype
                ),
            ));
        }
        let bytes = gather(name, t, src, origin, opts)?;
        let left = uses.get_mut(key).expect("counted above");
        *left -= 1;
        if *left == 0 {
            cache.remove(key);
        }
        let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
        let data = decode(t.storage.dtype, &bytes);
        if t.storage.dtype == StorageType::F64 {
            narrowed.push(name.clone());
        }
        if store.contains(name) {
            return Err(fmt_err(
                origin,
                format!("duplicate tensor name `{name}` after flattening"),
            ));
        }
        store.insert(name.clone(), WeightTensor::new(shape, data)?);
    }
    if !narrowed.is_empty() {
        warnings.push(format!(
            "f64 tensors narrowed to f32: {}",
            narrowed.join(", ")
        ));
    }
    Ok(store)
}

/// Checks the view lies inside its storage, then copies it contiguous.
fn gather(
    name: &str,
    t: &TensorRef,
    src: &[u8],
    origin: &str,
    opts: &PthOptions,
) -> Result<Vec<u8>> {
    let es = t.storage.dtype.size_bytes() as u64;
    let bad = |msg: String| fmt_err(origin, format!("tensor `{name}`: {msg}"));
    let numel = t
        .shape
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("size {:?} overflows", t.shape)))?;
    let nbytes = numel
        .checked_mul(es)
        .filter(|&b| b <= opts.max_tensor_bytes)
        .ok_or_else(|| {
            WeightsError::Limit(format!(
                "{origin}: tensor `{name}` of size {:?} exceeds the {}-byte limit",
                t.shape, opts.max_tensor_bytes
            ))
        })?;
    if numel == 0 {
        return Ok(Vec::new());
    }
    // Furthest element the view touches: offset + sum((size-1)*stride).
    let last = t
        .shape
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset, |a, (&d, &s)| {
            (d - 1).checked_mul(s).and_then(|x| a.checked_add(x))
        })
        .ok_or_else(|| bad("view extent overflows".into()))?;
    if last >= t.storage.numel || (last + 1) * es > src.len() as u64 {
        return Err(bad(format!(
            "view (offset {}, size {:?}, stride {:?}) reaches element {last} of storage `{}` with {} elements",
            t.offset, t.shape, t.stride, t.storage.key, t.storage.numel
        )));
    }
    let es = es as usize;
    let mut out = Vec::with_capacity(nbytes as usize);
    let contiguous =
        crate::tensor::strides(&t.shape.iter().map(|&d| d as usize).collect::<Vec<_>>());
    let is_contig = t
        .shape
        .iter()
        .zip(&t.stride)
        .zip(&contiguous)
        .all(|((&d, &s), &c)| d == 1 || s as usize == c);
    let off = t.offset as usize;
    if is_contig {
        out.extend_from_slice(&src[off * es..(off + numel as usize) * es]);
        return Ok(out);
    }
    // Odometer over the index space; the extent check above bounds every position.
    let rank = t.shape.len();
    let mut idx = vec![0u64; rank];
    for _ in 0..numel {
        let pos = off
            + idx
                .iter()
                .zip(&t.stride)
                .map(|(&i, &s)| (i * s) as usize)
                .sum::<usize>();
        out.extend_from_slice(&src[pos * es..(pos + 1) * es]);
        for d in (0..rank).rev() {
            idx[d] += 1;
            if idx[d] < t.shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(out)
}

/// Storage bytes to the store's element types: f64 narrows to f32; integer and
/// bool storages widen to i64.
fn decode(dtype: StorageType, b: &[u8]) -> WeightData {
    match dtype {
        StorageType::F32 => WeightData::F32(bytemuck::pod_collect_to_vec(b)),
        StorageType::F16 => WeightData::F16(bytemuck::pod_collect_to_vec(b)),
        StorageType::BF16 => WeightData::BF16(bytemuck::pod_collect_to_vec(b)),
        StorageType::F64 => WeightData::F32(
            b.chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
                .collect(),
        ),
        StorageType::I64 => WeightData::I64(bytemuck::pod_collect_to_vec(b)),
        StorageType::I32 => WeightData::I64(
            b.chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as i64)
                .collect(),
        ),
        StorageType::U8 => WeightData::I64(b.iter().map(|&x| x as i64).collect()),
        StorageType::Bool => WeightData::I64(b.iter().map(|&x| (x != 0) as i64).collect()),
    }
}
