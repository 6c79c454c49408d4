//! What a preset promises against what the weights folder holds, said before a run starts,
//! and the `--eta` knob.

use super::models::ModelSet;
use crate::sampler::Eta;
use std::path::Path;

/// Which variant of the method a run uses (`--preset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// The paper's full method: N = 3 guidance images, DGSA when its weights exist.
    Full,
    /// The paper's setting C: S ≡ 1 even when DGSA weights exist.
    NoDgsa,
    /// One guidance image (N = 1).
    Single,
    /// Our fast guidance: gradient with respect to x̂₀ only (no backpropagation through
    /// the UNet, so each step skips the UNet's backward pass); some fidelity lost. Its speed
    /// on a GPU is not measured yet.
    Fast,
}

/// The notes a run with `preset` on `set` (from `dir`) should print: `--preset full` is the
/// paper's method only with a trained estimator (SE) and DGSA; without them it silently
/// falls back, so say which fallback is used.
pub fn missing_weight_notes(preset: Preset, set: &ModelSet, dir: &Path) -> Vec<String> {
    if preset != Preset::Full {
        return vec![];
    }
    let mut notes = vec![];
    if set.estimator.is_none() {
        notes.push(format!(
            "--preset full: no standard estimator (SE = SDE ∘ TM) weights in {}; σ̂ comes from the \
             training-free estimate (RM output vs input agreement), not the paper's SE",
            dir.display()
        ));
    }
    if set.dgsa.is_none() {
        notes.push(format!(
            "--preset full: no DGSA weights in {}; S ≡ 1 (the paper's setting C, as --preset no-dgsa)",
            dir.display()
        ));
    }
    notes
}

/// `--eta`: a number ≥ 0, or `sigma/10` (η = σ̂/10 per image, the authors' choice).
pub fn parse_eta(s: &str) -> Result<Eta, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("sigma/10") {
        return Ok(Eta::SigmaHatOver10);
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(Eta::Fixed(v)),
        _ => Err(format!(
            "'{s}': expected a number ≥ 0 (e.g. 0.5) or sigma/10"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_parses_numbers_and_the_per_image_rule() {
        assert_eq!(parse_eta("0.5"), Ok(Eta::Fixed(0.5)));
        assert_eq!(parse_eta("0"), Ok(Eta::Fixed(0.0)));
        assert_eq!(parse_eta("Sigma/10"), Ok(Eta::SigmaHatOver10));
        for bad in ["-1", "nan", "inf", "sigma", ""] {
            assert!(parse_eta(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn full_names_each_missing_network_and_other_presets_say_nothing() {
        let set = ModelSet::official();
        let dir = Path::new("w");
        let notes = missing_weight_notes(Preset::Full, &set, dir);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("standard estimator") && notes[1].contains("DGSA"));
        assert!(missing_weight_notes(Preset::NoDgsa, &set, dir).is_empty());
    }
}
