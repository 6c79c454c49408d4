//! Which original steps a shorter chain keeps, with guided-diffusion's `space_timesteps`
//! semantics so that a chain named "ddim250" or "250" means the same steps as in the
//! reference samplers.

use super::{DiffusionError, Result};

/// The original steps (sorted) kept for `spec` on a chain of `num_steps`:
///
/// - `"ddimN"`: the first stride `s ≥ 1` for which `0, s, 2s, … < num_steps` has exactly N
///   steps (ddim250 on 1000 → stride 4, steps 0…996);
/// - `"N1,N2,…"` (or a single `"N"`): the chain is cut into equal sections (the first
///   `num_steps mod sections` one step longer) and section i keeps Ni steps evenly spaced from
///   its first to its last step, positions rounded half to even (Python's `round`).
pub fn space_timesteps(num_steps: usize, spec: &str) -> Result<Vec<usize>> {
    let err = |msg: String| DiffusionError::Respacing {
        spec: spec.to_string(),
        msg,
    };
    let spec_t = spec.trim();
    if let Some(n) = spec_t.strip_prefix("ddim") {
        let want: usize = n
            .parse()
            .map_err(|_| err(format!("{n:?} is not a step count")))?;
        for stride in 1..num_steps.max(1) {
            if num_steps.div_ceil(stride) == want {
                return Ok((0..num_steps).step_by(stride).collect());
            }
        }
        return Err(err(format!(
            "no integer stride gives exactly {want} of {num_steps} steps"
        )));
    }
    let counts: Vec<usize> = spec_t
        .split(',')
        .map(|c| {
            c.trim()
                .parse::<usize>()
                .map_err(|_| err(format!("{c:?} is not a step count")))
        })
        .collect::<Result<_>>()?;
    if counts.is_empty() || counts.contains(&0) {
        return Err(err("every section needs at least one step".into()));
    }
    let sections = counts.len();
    let per = num_steps / sections;
    let extra = num_steps % sections;
    let mut start = 0;
    let mut kept = vec![];
    for (i, &count) in counts.iter().enumerate() {
        let size = per + usize::from(i < extra);
        if size < count {
            return Err(err(format!(
                "section {i} has {size} steps, cannot keep {count}"
            )));
        }
        let stride = if count <= 1 {
            1.0
        } else {
            (size - 1) as f64 / (count - 1) as f64
        };
        let mut pos = 0.0f64;
        for _ in 0..count {
            kept.push(start + pos.round_ties_even() as usize);
            pos += stride;
        }
        start += size;
    }
    kept.sort_unstable();
    kept.dedup();
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddim250_is_stride_four() {
        let k = space_timesteps(1000, "ddim250").unwrap();
        assert_eq!(k.len(), 250);
        assert_eq!((k[0], k[1], k[249]), (0, 4, 996));
    }

    #[test]
    fn ddpm_sections_span_each_section() {
        let k = space_timesteps(1000, "250").unwrap();
        assert_eq!(k.len(), 250);
        assert_eq!((k[0], k[249]), (0, 999));
        // 999/249 = 4.0120…: position 1 is 4.012 → 4, position 125 is 501.5 → 502 (ties to even)
        assert_eq!(k[1], 4);
        assert_eq!(k[125], 502);
        let k = space_timesteps(100, "10,15,20").unwrap();
        assert_eq!(k.len(), 45);
        assert_eq!(
            (k[0], k[9], k[10], k[24], k[25], k[44]),
            (0, 33, 34, 66, 67, 99)
        );
    }

    #[test]
    fn bad_specs_are_errors() {
        assert!(space_timesteps(1000, "ddim333").is_err());
        assert!(space_timesteps(1000, "ddimx").is_err());
        assert!(space_timesteps(1000, "2000").is_err());
        assert!(space_timesteps(1000, "10,,5").is_err());
        assert!(space_timesteps(1000, "0").is_err());
    }
}
