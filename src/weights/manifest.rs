//! `weights/manifest.json`: where each public checkpoint comes from and how to check it.

use super::error::{Result, WeightsError};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Short name used on the command line.
    pub name: String,
    /// File name of the download.
    pub file: String,
    pub url: String,
    /// Exact size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
    /// safetensors file to convert to after the download (`null`: keep as is).
    pub convert_to: Option<String>,
    /// Wrapper key passed to the converter, if the checkpoint needs one.
    #[serde(default)]
    pub key: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub entries: Vec<ManifestEntry>,
}

/// The manifest shipped in the repository, compiled in so the binary works anywhere.
pub const BUILTIN: &str = include_str!("../../weights/manifest.json");

impl Manifest {
    pub fn builtin() -> Result<Manifest> {
        Self::parse(BUILTIN, "built-in weights/manifest.json")
    }

    pub fn load(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path).map_err(|e| WeightsError::io(path, e))?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<Manifest> {
        let m: Manifest = serde_json::from_str(text)
            .map_err(|e| WeightsError::Format(format!("{origin}: {e}")))?;
        for e in &m.entries {
            let bad_hash = e.sha256.len() != 64
                || !e
                    .sha256
                    .bytes()
                    .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
            // File names must stay inside the target directory.
            let bad_name = |f: &str| f.is_empty() || f.contains(['/', '\\']) || f.starts_with('.');
            if bad_hash || bad_name(&e.file) || e.convert_to.as_deref().is_some_and(bad_name) {
                return Err(WeightsError::Format(format!(
                    "{origin}: entry `{}` needs a 64-digit lower-case sha256 and plain file names",
                    e.name
                )));
            }
        }
        Ok(m)
    }

    pub fn get(&self, name: &str) -> Option<&ManifestEntry> {
        self.entries.iter().find(|e| e.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry_json(file: &str, sha: &str) -> String {
        format!(
            r#"{{"entries":[{{"name":"n","file":"{file}","url":"http://127.0.0.1/x","size":3,"sha256":"{sha}","convert_to":null}}]}}"#
        )
    }

    #[test]
    fn builtin_parses_and_bad_entries_are_refused() {
        let m = Manifest::builtin().unwrap();
        let names: Vec<&str> = m.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "iddpm_ffhq512",
                "general_face_ffhq512",
                "retinaface_resnet50",
                "retinaface_mobilenet0.25"
            ]
        );
        assert!(m.entries.iter().all(|e| e.url.starts_with("https://")));
        let good = "ab".repeat(32);
        assert!(Manifest::parse(&entry_json("w.pth", &good), "m").is_ok());
        // Paths that would escape the target directory, and malformed hashes.
        for (file, sha) in [
            ("../w.pth", good.as_str()),
            ("a/b.pth", good.as_str()),
            (".hidden", good.as_str()),
            ("w.pth", "AB"),
            ("w.pth", &"AB".repeat(32)),
        ] {
            let e = Manifest::parse(&entry_json(file, sha), "m.json").unwrap_err();
            assert!(
                e.to_string().contains("m.json: entry `n`"),
                "{file} {sha}: {e}"
            );
        }
        let e = Manifest::parse("{\"entries\": 3}", "m.json").unwrap_err();
        assert!(e.to_string().starts_with("m.json:"), "{e}");
    }
}
