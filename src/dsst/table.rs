//! The built table, its JSON file and the σ → start-step lookup.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DsstTable {
    pub tau: f64,
    /// The diffusion schedule the steps index (e.g. "linear1000").
    pub schedule: String,
    /// Increasing σ grid (pixels).
    pub sigma: Vec<f64>,
    /// Start step per grid σ, non-decreasing.
    pub t: Vec<usize>,
    /// E_x[rms(x − k_σ⊛x)] per grid σ that the steps were computed from (for auditing and
    /// re-deriving the steps for another τ); empty when unknown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub residual: Vec<f64>,
}

impl DsstTable {
    /// Checks the invariants every consumer relies on.
    pub fn validate(&self) -> Result<()> {
        if self.sigma.is_empty() || self.sigma.len() != self.t.len() {
            bail!(
                "DSST table: {} σ values and {} steps (must be equal and non-zero)",
                self.sigma.len(),
                self.t.len()
            );
        }
        if let Some(i) = (1..self.sigma.len()).find(|&i| self.sigma[i] <= self.sigma[i - 1]) {
            bail!("DSST table: σ grid not increasing at index {i}");
        }
        if let Some(i) = (1..self.t.len()).find(|&i| self.t[i] < self.t[i - 1]) {
            bail!(
                "DSST table: t decreases at σ = {} ({} → {})",
                self.sigma[i],
                self.t[i - 1],
                self.t[i]
            );
        }
        if !self.residual.is_empty() && self.residual.len() != self.sigma.len() {
            bail!(
                "DSST table: {} residuals for {} σ values",
                self.residual.len(),
                self.sigma.len()
            );
        }
        if !(self.tau.is_finite() && self.tau > 0.0) {
            bail!("DSST table: tau = {} must be finite and > 0", self.tau);
        }
        Ok(())
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading DSST table {}", path.display()))?;
        Self::from_json_str(&text).with_context(|| format!("DSST table {}", path.display()))
    }

    /// Parses and validates a table's JSON text.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let t: DsstTable = serde_json::from_str(text).context("parsing")?;
        t.validate().context("checking")?;
        Ok(t)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        self.validate()?;
        let text = serde_json::to_string_pretty(self)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(path, text + "\n")
            .with_context(|| format!("writing DSST table {}", path.display()))
    }

    /// Start step for a blur width: σ is clamped to the grid and rounded to the nearest grid
    /// value (ties to the larger σ, i.e. the earlier, safer start).
    pub fn lookup(&self, sigma: f64) -> usize {
        let n = self.sigma.len();
        if sigma.is_nan() || sigma <= self.sigma[0] {
            return self.t[0];
        }
        if sigma >= self.sigma[n - 1] {
            return self.t[n - 1];
        }
        let hi = self.sigma.partition_point(|&s| s < sigma);
        let lo = hi - 1;
        if sigma - self.sigma[lo] < self.sigma[hi] - sigma {
            self.t[lo]
        } else {
            self.t[hi]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> DsstTable {
        DsstTable {
            tau: 0.1,
            schedule: "linear1000".into(),
            sigma: vec![0.1, 0.2, 0.3, 0.4],
            t: vec![500, 600, 600, 700],
            residual: vec![],
        }
    }

    #[test]
    fn lookup_rounds_and_clamps() {
        let t = table();
        assert_eq!(t.lookup(0.0), 500);
        assert_eq!(t.lookup(f64::NAN), 500);
        assert_eq!(t.lookup(0.14), 500);
        assert_eq!(t.lookup(0.16), 600);
        assert_eq!(t.lookup(0.36), 700);
        assert_eq!(t.lookup(99.0), 700);
    }

    #[test]
    fn invalid_tables_are_rejected_with_reasons() {
        let mut t = table();
        t.t[3] = 550;
        assert!(t.validate().unwrap_err().to_string().contains("decreases"));
        let mut t = table();
        t.sigma.pop();
        assert!(t.validate().is_err());
        let dir = std::env::temp_dir().join(format!("dsst-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.json");
        std::fs::write(&p, r#"{"tau": 0.1}"#).unwrap();
        let e = DsstTable::load(&p).unwrap_err();
        assert!(format!("{e:#}").contains("bad.json"), "{e:#}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn save_load_round_trip() {
        let dir = std::env::temp_dir().join(format!("dsst-rt-{}", std::process::id()));
        let p = dir.join("t.json");
        table().save(&p).unwrap();
        assert_eq!(DsstTable::load(&p).unwrap(), table());
        std::fs::remove_dir_all(&dir).ok();
    }
}
