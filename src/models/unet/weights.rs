//! Minimal safetensors I/O for the UNet: name → `Tensor<f32>`. Floats of any common width and
//! integer tensors (timesteps) are widened or converted to f32; a DataParallel `module.`
//! prefix is stripped. The project's general weight store can replace this later.

use crate::tensor::Tensor;
use anyhow::{anyhow, bail, Context, Result};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::Path;

/// Converts one stored tensor to f32 values.
fn to_f32(name: &str, view: &TensorView) -> Result<Vec<f32>> {
    let b = view.data();
    let chunks = |w: usize| b.chunks_exact(w);
    let v: Vec<f32> = match view.dtype() {
        Dtype::F32 => chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F64 => chunks(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect(),
        Dtype::F16 => chunks(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => chunks(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::I64 => chunks(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect(),
        Dtype::I32 => chunks(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
            .collect(),
        other => {
            bail!("tensor {name}: dtype {other:?} is not supported (want f32/f16/bf16/f64/i64/i32)")
        }
    };
    Ok(v)
}

/// Every tensor of a safetensors file, keyed by name without a leading `module.`.
pub fn load_safetensors(path: &Path) -> Result<HashMap<String, Tensor<f32>>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow!("{}: not a safetensors file: {e:?}", path.display()))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let data = to_f32(&name, &view).with_context(|| format!("in {}", path.display()))?;
        let key = name.strip_prefix("module.").unwrap_or(&name).to_string();
        let t = Tensor::try_new(view.shape().to_vec(), data)
            .map_err(|e| anyhow!("{}: tensor {name}: {e}", path.display()))?;
        if out.insert(key.clone(), t).is_some() {
            bail!(
                "{}: key {key} occurs both with and without the `module.` prefix",
                path.display()
            );
        }
    }
    Ok(out)
}

/// Writes f32 tensors to a safetensors file.
pub fn save_safetensors(path: &Path, tensors: &[(&str, &Tensor<f32>)]) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, t)| bytemuck::cast_slice::<f32, u8>(&t.data).to_vec())
        .collect();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, t), b)| {
            TensorView::new(Dtype::F32, t.shape.clone(), b)
                .map(|v| (n.to_string(), v))
                .map_err(|e| anyhow!("tensor {n}: {e:?}"))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize_to_file(views, &None, path)
        .map_err(|e| anyhow!("cannot write {}: {e:?}", path.display()))
}

/// Checks a weight map against a spec: every key present with its shape. Extra keys are
/// allowed (checkpoints may carry more than one model); the error lists every problem.
pub fn check_against_spec(
    weights: &HashMap<String, Tensor<f32>>,
    spec: &[(String, Vec<usize>)],
) -> Result<()> {
    let mut problems = vec![];
    for (k, s) in spec {
        match weights.get(k) {
            None => problems.push(format!("missing {k} {s:?}")),
            Some(t) if &t.shape != s => {
                problems.push(format!("{k}: expected {s:?}, file has {:?}", t.shape))
            }
            _ => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!(
            "{} weight problem(s): {}",
            problems.len(),
            problems.join("; ")
        )
    }
}
