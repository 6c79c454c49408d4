//! `WeightStore`: checkpoint tensors by name, in file order, with validation against
//! the parameter spec a model expects.

use super::error::{Result, WeightsError};
use crate::tensor::{DType, Tensor};
use half::{bf16, f16};
use std::collections::HashMap;
use std::fmt;

/// Element type of a stored tensor: the float formats of `tensor::DType` plus `I64`
/// for integer buffers (e.g. `num_batches_tracked`, index tables) that must survive a
/// conversion unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightType {
    F32,
    F16,
    BF16,
    I64,
}

impl WeightType {
    pub fn size_bytes(self) -> usize {
        match self {
            WeightType::F32 => 4,
            WeightType::F16 | WeightType::BF16 => 2,
            WeightType::I64 => 8,
        }
    }

    /// The float format, or `None` for integer buffers.
    pub fn float(self) -> Option<DType> {
        match self {
            WeightType::F32 => Some(DType::F32),
            WeightType::F16 => Some(DType::F16),
            WeightType::BF16 => Some(DType::BF16),
            WeightType::I64 => None,
        }
    }
}

impl From<DType> for WeightType {
    fn from(d: DType) -> Self {
        match d {
            DType::F32 => WeightType::F32,
            DType::F16 => WeightType::F16,
            DType::BF16 => WeightType::BF16,
        }
    }
}

impl fmt::Display for WeightType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WeightType::F32 => "f32",
            WeightType::F16 => "f16",
            WeightType::BF16 => "bf16",
            WeightType::I64 => "i64",
        })
    }
}

/// Typed element storage; the variant is the dtype, so the two can never disagree.
#[derive(Clone, Debug, PartialEq)]
pub enum WeightData {
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    I64(Vec<i64>),
}

impl WeightData {
    pub fn dtype(&self) -> WeightType {
        match self {
            WeightData::F32(_) => WeightType::F32,
            WeightData::F16(_) => WeightType::F16,
            WeightData::BF16(_) => WeightType::BF16,
            WeightData::I64(_) => WeightType::I64,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            WeightData::F32(v) => v.len(),
            WeightData::F16(v) => v.len(),
            WeightData::BF16(v) => v.len(),
            WeightData::I64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Little-endian bytes, as safetensors stores them.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            WeightData::F32(v) => bytemuck::cast_slice(v),
            WeightData::F16(v) => bytemuck::cast_slice(v),
            WeightData::BF16(v) => bytemuck::cast_slice(v),
            WeightData::I64(v) => bytemuck::cast_slice(v),
        }
    }
}

// Raw byte views above and the readers rely on the host being little-endian like the
// file formats; refuse to build rather than silently byte-swap wrongly.
#[cfg(target_endian = "big")]
compile_error!("dynface weights I/O assumes a little-endian host");

/// One named checkpoint tensor: row-major, contiguous.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightTensor {
    pub shape: Vec<usize>,
    pub data: WeightData,
}

impl WeightTensor {
    /// Checks that the element count matches the shape.
    pub fn new(shape: Vec<usize>, data: WeightData) -> Result<Self> {
        let n = checked_numel(&shape).ok_or_else(|| {
            WeightsError::Format(format!("shape {shape:?} overflows the element count"))
        })?;
        if n != data.len() {
            return Err(WeightsError::Format(format!(
                "shape {shape:?} needs {n} elements but {} were given",
                data.len()
            )));
        }
        Ok(WeightTensor { shape, data })
    }

    pub fn dtype(&self) -> WeightType {
        self.data.dtype()
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// Converts a float tensor to `Tensor<f32>`; integer buffers are refused because a
    /// silent cast would hide a key mix-up.
    pub fn to_f32(&self, name: &str) -> Result<Tensor<f32>> {
        let data = match &self.data {
            WeightData::F32(v) => v.clone(),
            WeightData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            WeightData::BF16(v) => v.iter().map(|x| x.to_f32()).collect(),
            WeightData::I64(_) => {
                return Err(WeightsError::DType(format!(
                    "tensor `{name}` is an i64 buffer, not a float tensor"
                )))
            }
        };
        Ok(Tensor::new(self.shape.clone(), data))
    }

    /// Integer buffers as `i64`; float tensors are refused.
    pub fn to_i64(&self, name: &str) -> Result<Vec<i64>> {
        match &self.data {
            WeightData::I64(v) => Ok(v.clone()),
            other => Err(WeightsError::DType(format!(
                "tensor `{name}` is {}, not an i64 buffer",
                other.dtype()
            ))),
        }
    }

    /// Re-encodes a float tensor in `dtype` (round to nearest); i64 buffers are kept.
    pub fn cast_float(&self, dtype: DType) -> WeightTensor {
        let data = match (&self.data, dtype) {
            (WeightData::I64(v), _) => WeightData::I64(v.clone()),
            (d, t) if d.dtype() == WeightType::from(t) => d.clone(),
            (d, t) => {
                let f = floats(d);
                match t {
                    DType::F32 => WeightData::F32(f),
                    DType::F16 => WeightData::F16(f.iter().map(|&x| f16::from_f32(x)).collect()),
                    DType::BF16 => WeightData::BF16(f.iter().map(|&x| bf16::from_f32(x)).collect()),
                }
            }
        };
        WeightTensor {
            shape: self.shape.clone(),
            data,
        }
    }

    /// Counts of NaN and infinite elements (always zero for integers).
    pub fn non_finite(&self) -> (usize, usize) {
        let count = |it: &mut dyn Iterator<Item = f32>| {
            it.fold((0, 0), |(n, i), x| {
                (n + x.is_nan() as usize, i + x.is_infinite() as usize)
            })
        };
        match &self.data {
            WeightData::F32(v) => count(&mut v.iter().copied()),
            WeightData::F16(v) => count(&mut v.iter().map(|x| x.to_f32())),
            WeightData::BF16(v) => count(&mut v.iter().map(|x| x.to_f32())),
            WeightData::I64(_) => (0, 0),
        }
    }
}

fn floats(d: &WeightData) -> Vec<f32> {
    match d {
        WeightData::F32(v) => v.clone(),
        WeightData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
        WeightData::BF16(v) => v.iter().map(|x| x.to_f32()).collect(),
        WeightData::I64(v) => v.iter().map(|&x| x as f32).collect(),
    }
}

/// Product of the dims, `None` on overflow.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// Named tensors in insertion (file) order with O(1) lookup.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WeightStore {
    entries: Vec<(String, WeightTensor)>,
    index: HashMap<String, usize>,
}

impl WeightStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts or replaces; a replaced entry keeps its position.
    pub fn insert(&mut self, name: impl Into<String>, t: WeightTensor) -> Option<WeightTensor> {
        let name = name.into();
        if let Some(&i) = self.index.get(&name) {
            return Some(std::mem::replace(&mut self.entries[i].1, t));
        }
        self.index.insert(name.clone(), self.entries.len());
        self.entries.push((name, t));
        None
    }

    pub fn get(&self, name: &str) -> Option<&WeightTensor> {
        self.index.get(name).map(|&i| &self.entries[i].1)
    }

    /// Like `get` but an error naming the key when absent.
    pub fn require(&self, name: &str) -> Result<&WeightTensor> {
        self.get(name)
            .ok_or_else(|| WeightsError::Mismatch(format!("checkpoint has no tensor `{name}`")))
    }

    pub fn remove(&mut self, name: &str) -> Option<WeightTensor> {
        let i = self.index.remove(name)?;
        let (_, t) = self.entries.remove(i);
        for (_, idx) in self.index.iter_mut() {
            if *idx > i {
                *idx -= 1;
            }
        }
        Some(t)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &WeightTensor)> {
        self.entries.iter().map(|(n, t)| (n.as_str(), t))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    /// The float tensor `name` as `Tensor<f32>`.
    pub fn tensor_f32(&self, name: &str) -> Result<Tensor<f32>> {
        self.require(name)?.to_f32(name)
    }

    /// Total bytes of tensor data.
    pub fn nbytes(&self) -> usize {
        self.entries
            .iter()
            .map(|(_, t)| t.numel() * t.dtype().size_bytes())
            .sum()
    }

    /// Removes the `module.` prefix that `nn.DataParallel` adds to every key.
    /// Refuses when stripping would make two keys collide.
    pub fn strip_module_prefix(&mut self) -> Result<usize> {
        let mut renamed = 0;
        let mut out = WeightStore::new();
        for (name, t) in std::mem::take(&mut self.entries) {
            let new = match name.strip_prefix("module.") {
                Some(rest) => {
                    renamed += 1;
                    rest.to_string()
                }
                None => name.clone(),
            };
            if out.contains(&new) {
                return Err(WeightsError::Mismatch(format!(
                    "stripping `module.` from `{name}` collides with existing key `{new}`"
                )));
            }
            out.insert(new, t);
        }
        *self = out;
        Ok(renamed)
    }

    /// Re-encodes every float tensor in `dtype`; i64 buffers stay i64.
    pub fn cast_floats(&self, dtype: DType) -> WeightStore {
        let mut out = WeightStore::new();
        for (n, t) in self.iter() {
            out.insert(n, t.cast_float(dtype));
        }
        out
    }

    /// Compares against the parameters a model expects and reports every missing,
    /// unexpected and wrong-shaped key in one error, so a user fixes them in one go.
    /// Names matching `ignorable` (exact, or `*suffix`) are skipped on both sides:
    /// they are buffers the model recomputes.
    pub fn validate(&self, expected: &[(String, Vec<usize>)], ignorable: &[&str]) -> Result<()> {
        let ignored = |name: &str| {
            ignorable.iter().any(|pat| match pat.strip_prefix('*') {
                Some(suffix) => name.ends_with(suffix),
                None => name == *pat,
            })
        };
        let mut missing = Vec::new();
        let mut shapes = Vec::new();
        let mut wanted = HashMap::new();
        for (name, shape) in expected {
            wanted.insert(name.as_str(), ());
            if ignored(name) {
                continue;
            }
            match self.get(name) {
                None => missing.push(format!("  missing: {name} (expected shape {shape:?})")),
                Some(t) if &t.shape != shape => shapes.push(format!(
                    "  wrong shape: {name}: checkpoint {:?}, model expects {shape:?}",
                    t.shape
                )),
                Some(_) => {}
            }
        }
        let unexpected: Vec<String> = self
            .iter()
            .filter(|(n, _)| !wanted.contains_key(n) && !ignored(n))
            .map(|(n, t)| format!("  unexpected: {n} (shape {:?})", t.shape))
            .collect();
        if missing.is_empty() && unexpected.is_empty() && shapes.is_empty() {
            return Ok(());
        }
        let mut msg = format!(
            "checkpoint does not match the model: {} missing, {} unexpected, {} wrong shape",
            missing.len(),
            unexpected.len(),
            shapes.len()
        );
        for line in missing.iter().chain(&unexpected).chain(&shapes) {
            msg.push('\n');
            msg.push_str(line);
        }
        Err(WeightsError::Mismatch(msg))
    }

    /// One warning per tensor holding NaN or Inf, naming it.
    pub fn non_finite_warnings(&self) -> Vec<String> {
        self.iter()
            .filter_map(|(name, t)| {
                let (nan, inf) = t.non_finite();
                (nan + inf > 0).then(|| {
                    format!(
                        "tensor `{name}` {:?} has {nan} NaN and {inf} infinite values out of {}",
                        t.shape,
                        t.numel()
                    )
                })
            })
            .collect()
    }
}

/// Shapes of all tensors, e.g. to build an expected spec in tests.
pub fn spec_of(store: &WeightStore) -> Vec<(String, Vec<usize>)> {
    store
        .iter()
        .map(|(n, t)| (n.to_string(), t.shape.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{numel, random};
    use rand::Rng;

    fn rand_tensor(rng: &mut impl Rng, shape: &[usize]) -> WeightTensor {
        let n = numel(shape);
        let v: Vec<f32> = (0..n).map(|_| rng.gen_range(-2.0..2.0)).collect();
        WeightTensor::new(shape.to_vec(), WeightData::F32(v)).unwrap()
    }

    #[test]
    fn validate_lists_every_problem_in_one_error() {
        let mut rng = random::rng(7);
        let mut s = WeightStore::new();
        s.insert("a.weight", rand_tensor(&mut rng, &[3, 4]));
        s.insert("b.weight", rand_tensor(&mut rng, &[5]));
        s.insert("extra", rand_tensor(&mut rng, &[2]));
        s.insert("bn.num_batches_tracked", rand_tensor(&mut rng, &[1]));
        let spec = vec![
            ("a.weight".to_string(), vec![3, 4]),
            ("b.weight".to_string(), vec![6]),
            ("c.bias".to_string(), vec![7]),
        ];
        let err = s
            .validate(&spec, &["*num_batches_tracked"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("1 missing, 1 unexpected, 1 wrong shape"),
            "{err}"
        );
        assert!(
            err.contains("missing: c.bias (expected shape [7])"),
            "{err}"
        );
        assert!(err.contains("unexpected: extra (shape [2])"), "{err}");
        assert!(
            err.contains("b.weight: checkpoint [5], model expects [6]"),
            "{err}"
        );
        assert!(!err.contains("num_batches_tracked"), "{err}");
        let ok_spec = spec_of(&s);
        s.validate(&ok_spec, &[]).unwrap();
    }

    #[test]
    fn strip_prefix_and_order() {
        let mut rng = random::rng(8);
        let mut s = WeightStore::new();
        s.insert("module.z", rand_tensor(&mut rng, &[2]));
        s.insert("module.a", rand_tensor(&mut rng, &[3]));
        assert_eq!(s.strip_module_prefix().unwrap(), 2);
        assert_eq!(s.names().collect::<Vec<_>>(), vec!["z", "a"]);
        s.insert("module.a", rand_tensor(&mut rng, &[3]));
        let err = s.strip_module_prefix().unwrap_err().to_string();
        assert!(err.contains("collides"), "{err}");
    }

    #[test]
    fn remove_keeps_index_consistent() {
        let mut rng = random::rng(9);
        let mut s = WeightStore::new();
        for (i, n) in ["a", "b", "c"].iter().enumerate() {
            s.insert(*n, rand_tensor(&mut rng, &[i + 1]));
        }
        s.remove("a").unwrap();
        assert_eq!(s.get("c").unwrap().shape, vec![3]);
        assert_eq!(s.get("b").unwrap().shape, vec![2]);
    }

    #[test]
    fn half_conversions_and_nan_warning() {
        let mut rng = random::rng(10);
        let t = rand_tensor(&mut rng, &[4, 5]);
        let WeightData::F32(orig) = &t.data else {
            unreachable!()
        };
        for dt in [DType::F16, DType::BF16] {
            let back = t.cast_float(dt).to_f32("x").unwrap();
            // Half formats keep 11 / 8 significant bits: relative error bounded by 2^-11 / 2^-8.
            let tol = if dt == DType::F16 {
                1.0 / 2048.0
            } else {
                1.0 / 256.0
            };
            for (a, b) in orig.iter().zip(&back.data) {
                assert!((a - b).abs() <= tol * a.abs() + 1e-7, "{dt}: {a} vs {b}");
            }
        }
        let mut bad = orig.clone();
        bad[3] = f32::NAN;
        bad[7] = f32::INFINITY;
        let mut s = WeightStore::new();
        s.insert("ok", t.clone());
        s.insert(
            "bad",
            WeightTensor::new(vec![4, 5], WeightData::F32(bad)).unwrap(),
        );
        let w = s.non_finite_warnings();
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("`bad`") && w[0].contains("1 NaN and 1 infinite"),
            "{w:?}"
        );
        let i = WeightTensor::new(vec![2], WeightData::I64(vec![1, 2])).unwrap();
        assert!(i
            .to_f32("buf")
            .unwrap_err()
            .to_string()
            .contains("`buf` is an i64"));
        assert!(WeightTensor::new(vec![3], WeightData::I64(vec![1])).is_err());
    }
}
