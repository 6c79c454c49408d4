//! Host tensors: a shape and contiguous row-major storage.
//!
//! Graph values are computed in the backend's element type (`f32` on the CPU and CUDA
//! backends, `f64` for the finite-difference reference), so the element type is generic.
//! `DType` names the storage formats weights may arrive in.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Storage formats of weights on disk and (later) of device buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DType {
    F32,
    F16,
    BF16,
}

impl DType {
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        };
        f.write_str(s)
    }
}

/// Element types a backend can compute in.
pub trait Scalar:
    num_traits::Float
    + num_traits::FromPrimitive
    + std::iter::Sum
    + std::ops::AddAssign
    + std::ops::MulAssign
    + Default
    + Send
    + Sync
    + fmt::Debug
    + 'static
{
    fn of_f32(v: f32) -> Self;
    fn as_f32(self) -> f32;
    fn of_f64(v: f64) -> Self;
    fn as_f64(self) -> f64;
    fn name() -> &'static str;
}

impl Scalar for f32 {
    fn of_f32(v: f32) -> Self {
        v
    }
    fn as_f32(self) -> f32 {
        self
    }
    fn of_f64(v: f64) -> Self {
        v as f32
    }
    fn as_f64(self) -> f64 {
        self as f64
    }
    fn name() -> &'static str {
        "f32"
    }
}

impl Scalar for f64 {
    fn of_f32(v: f32) -> Self {
        v as f64
    }
    fn as_f32(self) -> f32 {
        self as f32
    }
    fn of_f64(v: f64) -> Self {
        v
    }
    fn as_f64(self) -> f64 {
        self
    }
    fn name() -> &'static str {
        "f64"
    }
}

/// Number of elements of a shape (1 for a scalar shape `[]`).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major strides of a contiguous tensor.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Strides of shape `s` viewed in a broadcast result of shape `out` (numpy rules): 0 along
/// axes that `s` lacks or has as 1. Every backend indexes broadcast operands this way.
pub fn broadcast_strides(s: &[usize], out: &[usize]) -> Vec<usize> {
    let rank = out.len();
    let st = strides(s);
    (0..rank)
        .map(|i| {
            if i + s.len() < rank {
                0
            } else {
                let k = i + s.len() - rank;
                if s[k] == 1 && out[i] != 1 {
                    0
                } else {
                    st[k]
                }
            }
        })
        .collect()
}

/// A contiguous host tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<T = f32> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

impl<T: Scalar> Tensor<T> {
    pub fn new(shape: Vec<usize>, data: Vec<T>) -> Self {
        assert_eq!(
            numel(&shape),
            data.len(),
            "tensor data length does not match shape {shape:?}"
        );
        Tensor { shape, data }
    }

    /// Fallible constructor for data from outside the program.
    pub fn try_new(shape: Vec<usize>, data: Vec<T>) -> Result<Self, String> {
        if numel(&shape) != data.len() {
            return Err(format!(
                "{} values do not fill shape {:?} ({} elements)",
                data.len(),
                shape,
                numel(&shape)
            ));
        }
        Ok(Tensor { shape, data })
    }

    pub fn zeros(shape: &[usize]) -> Self {
        Tensor {
            shape: shape.to_vec(),
            data: vec![T::zero(); numel(shape)],
        }
    }

    pub fn full(shape: &[usize], v: T) -> Self {
        Tensor {
            shape: shape.to_vec(),
            data: vec![v; numel(shape)],
        }
    }

    pub fn scalar(v: T) -> Self {
        Tensor {
            shape: vec![],
            data: vec![v],
        }
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }

    pub fn cast<U: Scalar>(&self) -> Tensor<U> {
        Tensor {
            shape: self.shape.clone(),
            data: self.data.iter().map(|&v| U::of_f64(v.as_f64())).collect(),
        }
    }

    pub fn reshape(mut self, shape: &[usize]) -> Self {
        assert_eq!(numel(shape), self.data.len());
        self.shape = shape.to_vec();
        self
    }

    /// Inner product in f64, whatever the element type.
    pub fn dot(&self, other: &Self) -> f64 {
        assert_eq!(self.shape, other.shape);
        self.data
            .iter()
            .zip(&other.data)
            .map(|(a, b)| a.as_f64() * b.as_f64())
            .sum()
    }

    pub fn norm(&self) -> f64 {
        self.dot(self).sqrt()
    }

    /// ‖self − reference‖ / ‖reference‖ (absolute error when the reference is zero).
    pub fn rel_err(&self, reference: &Self) -> f64 {
        assert_eq!(self.shape, reference.shape, "rel_err: shapes differ");
        let mut num = 0.0;
        let mut den = 0.0;
        for (a, b) in self.data.iter().zip(&reference.data) {
            let d = a.as_f64() - b.as_f64();
            num += d * d;
            den += b.as_f64() * b.as_f64();
        }
        if den == 0.0 {
            num.sqrt()
        } else {
            (num / den).sqrt()
        }
    }

    pub fn max_abs_diff(&self, other: &Self) -> f64 {
        self.data
            .iter()
            .zip(&other.data)
            .map(|(a, b)| (a.as_f64() - b.as_f64()).abs())
            .fold(0.0, f64::max)
    }
}

/// Deterministic random tensors for tests and random-weight presets.
pub mod random {
    use super::{numel, Scalar, Tensor};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr::StandardNormal;

    pub fn rng(seed: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(seed)
    }

    pub fn normal<T: Scalar>(rng: &mut ChaCha8Rng, shape: &[usize], std: f64) -> Tensor<T> {
        let data = (0..numel(shape))
            .map(|_| {
                let v: f64 = rng.sample(StandardNormal);
                T::of_f64(v * std)
            })
            .collect();
        Tensor::new(shape.to_vec(), data)
    }

    pub fn uniform<T: Scalar>(
        rng: &mut ChaCha8Rng,
        shape: &[usize],
        lo: f64,
        hi: f64,
    ) -> Tensor<T> {
        let data = (0..numel(shape))
            .map(|_| T::of_f64(rng.gen_range(lo..hi)))
            .collect();
        Tensor::new(shape.to_vec(), data)
    }
}
