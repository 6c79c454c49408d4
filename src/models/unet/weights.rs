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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::random;

    fn tmp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("dynface-unet-{}-{name}", std::process::id()))
    }

    #[test]
    fn round_trip_strips_module_prefix() {
        let mut rng = random::rng(3);
        let a: Tensor<f32> = random::normal(&mut rng, &[2, 3], 1.0);
        let b: Tensor<f32> = random::normal(&mut rng, &[4], 1.0);
        let p = tmp("rt.safetensors");
        save_safetensors(&p, &[("module.a.weight", &a), ("b", &b)]).unwrap();
        let m = load_safetensors(&p).unwrap();
        std::fs::remove_file(&p).ok();
        assert_eq!(m["a.weight"], a);
        assert_eq!(m["b"], b);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn half_floats_and_integers_convert() {
        let h: Vec<u8> = [1.5f32, -2.25]
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        let bf: Vec<u8> = [3.0f32, -0.5]
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect();
        let i: Vec<u8> = [7i64, 999].iter().flat_map(|v| v.to_le_bytes()).collect();
        let views = vec![
            ("h", TensorView::new(Dtype::F16, vec![2], &h).unwrap()),
            ("bf", TensorView::new(Dtype::BF16, vec![2], &bf).unwrap()),
            ("t", TensorView::new(Dtype::I64, vec![2], &i).unwrap()),
        ];
        let p = tmp("mixed.safetensors");
        safetensors::serialize_to_file(views, &None, &p).unwrap();
        let m = load_safetensors(&p).unwrap();
        std::fs::remove_file(&p).ok();
        assert_eq!(m["h"].data, vec![1.5, -2.25]);
        assert_eq!(m["bf"].data, vec![3.0, -0.5]);
        assert_eq!(m["t"].data, vec![7.0, 999.0]);
    }

    #[test]
    fn bad_files_and_dtypes_are_named() {
        let p = tmp("garbage.safetensors");
        std::fs::write(&p, b"not a safetensors file").unwrap();
        let e = load_safetensors(&p).unwrap_err().to_string();
        assert!(e.contains("garbage.safetensors"), "{e}");
        let u = [1u8, 0];
        let views = vec![("flag", TensorView::new(Dtype::BOOL, vec![2], &u).unwrap())];
        safetensors::serialize_to_file(views, &None, &p).unwrap();
        let e = format!("{:#}", load_safetensors(&p).unwrap_err());
        std::fs::remove_file(&p).ok();
        assert!(e.contains("flag") && e.contains("BOOL"), "{e}");
        let e = load_safetensors(Path::new("/nonexistent/w.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/w.safetensors"), "{e}");
    }

    #[test]
    fn spec_check_lists_every_problem() {
        let mut w = HashMap::new();
        w.insert("a".to_string(), Tensor::<f32>::zeros(&[2, 2]));
        w.insert("extra".to_string(), Tensor::<f32>::zeros(&[1]));
        let spec = vec![("a".to_string(), vec![2, 3]), ("b".to_string(), vec![4])];
        let e = check_against_spec(&w, &spec).unwrap_err().to_string();
        assert!(
            e.contains("2 weight problem")
                && e.contains("missing b")
                && e.contains("a: expected [2, 3]"),
            "{e}"
        );
        w.insert("a".to_string(), Tensor::<f32>::zeros(&[2, 3]));
        w.insert("b".to_string(), Tensor::<f32>::zeros(&[4]));
        check_against_spec(&w, &spec).unwrap();
    }
}
