//! `dynface debug blur`: run blur / adjoint / σ-derivative on tensors from a
//! safetensors file, for comparison with an outside implementation.

use crate::atomic_file::write_atomic;
use crate::blur::{blur_adjoint, blur_dsigma, blur_forward, validate};
use anyhow::{bail, Context, Result};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug, Clone)]
pub struct DebugBlurArgs {
    /// safetensors file with `x` [B,C,H,W] f32, `sigma` [B] f32 and optionally `g` shaped like x
    #[arg(long)]
    pub input: PathBuf,
    /// safetensors file to write: `y`, and with `g` also `adj` and `dsigma` [B]
    #[arg(long)]
    pub out: PathBuf,
}

fn read_f32(st: &SafeTensors, name: &str, file: &Path) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
    let view = match st.tensor(name) {
        Ok(v) => v,
        Err(safetensors::SafeTensorError::TensorNotFound(_)) => return Ok(None),
        Err(e) => bail!("{}: tensor `{name}`: {e}", file.display()),
    };
    if view.dtype() != Dtype::F32 {
        bail!(
            "{}: tensor `{name}` is {:?}, expected F32",
            file.display(),
            view.dtype()
        );
    }
    let data = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(Some((view.shape().to_vec(), data)))
}

/// Reads `args.input`, writes `args.out`; returns the tensor names written.
pub fn run_debug_blur(args: &DebugBlurArgs) -> Result<Vec<String>> {
    let bytes =
        std::fs::read(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let st = SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{} is not a safetensors file", args.input.display()))?;
    let file = args.input.as_path();
    let (xs, x) =
        read_f32(&st, "x", file)?.with_context(|| format!("{}: no tensor `x`", file.display()))?;
    let (ss, sigma) = read_f32(&st, "sigma", file)?
        .with_context(|| format!("{}: no tensor `sigma`", file.display()))?;
    let shape: [usize; 4] = xs.as_slice().try_into().map_err(|_| {
        anyhow::anyhow!(
            "{}: `x` has shape {xs:?}, expected [B,C,H,W]",
            file.display()
        )
    })?;
    if ss != [shape[0]] {
        bail!(
            "{}: `sigma` has shape {ss:?}, expected [{}]",
            file.display(),
            shape[0]
        );
    }
    validate(x.len(), &sigma, shape).with_context(|| file.display().to_string())?;

    let mut outputs: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut y = vec![0.0f32; x.len()];
    blur_forward(&x, &sigma, shape, &mut y);
    outputs.push(("y".into(), xs.clone(), y));
    if let Some((gs, g)) = read_f32(&st, "g", file)? {
        if gs != xs {
            bail!("{}: `g` has shape {gs:?}, `x` has {xs:?}", file.display());
        }
        let mut adj = vec![0.0f32; g.len()];
        blur_adjoint(&g, &sigma, shape, &mut adj);
        let mut ds = vec![0.0f32; shape[0]];
        blur_dsigma(&x, &sigma, &g, shape, &mut ds);
        outputs.push(("adj".into(), xs.clone(), adj));
        outputs.push(("dsigma".into(), vec![shape[0]], ds));
    }

    let raw: Vec<Vec<u8>> = outputs
        .iter()
        .map(|(_, _, d)| bytemuck::cast_slice(d).to_vec())
        .collect();
    let views = outputs
        .iter()
        .zip(&raw)
        .map(|((n, s, _), r)| Ok((n.clone(), TensorView::new(Dtype::F32, s.clone(), r)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let blob = safetensors::serialize(views, &None)?;
    write_atomic(&args.out, &blob)?;
    Ok(outputs.into_iter().map(|(n, _, _)| n).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::random::{normal, rng};

    #[test]
    fn round_trip_through_files() {
        let dir = std::env::temp_dir().join(format!("dynface-debug-blur-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let shape = [2usize, 3, 9, 11];
        let mut r = rng(5);
        let x = normal::<f32>(&mut r, &shape, 1.0).data;
        let g = normal::<f32>(&mut r, &shape, 1.0).data;
        let sigma = vec![1.5f32, 6.0];
        let xb: &[u8] = bytemuck::cast_slice(&x);
        let gb: &[u8] = bytemuck::cast_slice(&g);
        let sb: &[u8] = bytemuck::cast_slice(&sigma);
        let blob = safetensors::serialize(
            vec![
                (
                    "x",
                    TensorView::new(Dtype::F32, shape.to_vec(), xb).unwrap(),
                ),
                (
                    "g",
                    TensorView::new(Dtype::F32, shape.to_vec(), gb).unwrap(),
                ),
                ("sigma", TensorView::new(Dtype::F32, vec![2], sb).unwrap()),
            ],
            &None,
        )
        .unwrap();
        let input = dir.join("in.safetensors");
        std::fs::write(&input, blob).unwrap();
        let args = DebugBlurArgs {
            input,
            out: dir.join("out.safetensors"),
        };
        let names = run_debug_blur(&args).unwrap();
        assert_eq!(names, ["y", "adj", "dsigma"]);
        let bytes = std::fs::read(&args.out).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let (ys, y) = read_f32(&st, "y", &args.out).unwrap().unwrap();
        assert_eq!(ys, shape);
        let mut want = vec![0.0f32; x.len()];
        blur_forward(&x, &sigma, shape, &mut want);
        assert_eq!(y, want);
        let (ds, _) = read_f32(&st, "dsigma", &args.out).unwrap().unwrap();
        assert_eq!(ds, [2]);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn missing_sigma_is_a_clear_error() {
        let dir =
            std::env::temp_dir().join(format!("dynface-debug-blur-err-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let x = [1.0f32; 4];
        let blob = safetensors::serialize(
            vec![(
                "x",
                TensorView::new(Dtype::F32, vec![1, 1, 2, 2], bytemuck::cast_slice(&x)).unwrap(),
            )],
            &None,
        )
        .unwrap();
        let input = dir.join("in.safetensors");
        std::fs::write(&input, blob).unwrap();
        let err = run_debug_blur(&DebugBlurArgs {
            input,
            out: dir.join("o.safetensors"),
        })
        .unwrap_err();
        assert!(err.to_string().contains("no tensor `sigma`"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
