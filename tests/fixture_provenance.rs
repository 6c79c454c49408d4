//! Fixture staleness: tests/fixtures/provenance.json records, per golden fixture, the SHA-256
//! of the generator scripts (and local modules they import) that produced it and the
//! reference package versions. A committed generator that no longer matches its recorded
//! hash means the fixture may no longer be what the script makes: this test fails, naming
//! the script, until the fixture is regenerated and the manifest rewritten
//! (tools/reference/provenance.py; tools/reference/README.md).

use sha2::{Digest, Sha256};
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn manifest() -> serde_json::Value {
    let p = root().join("tests/fixtures/provenance.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn sha256_hex(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn every_generator_matches_the_hash_recorded_for_its_fixtures() {
    let m = manifest();
    let entries = m["fixtures"].as_array().expect("fixtures: a list");
    let mut stale = vec![];
    let mut n = 0;
    for e in entries {
        let fixture = e["fixture"].as_str().expect("fixture: a path");
        assert!(
            root().join("tests/fixtures").join(fixture).exists(),
            "provenance.json lists tests/fixtures/{fixture}, which does not exist"
        );
        let gens = e["generators"].as_object().expect("generators: a map");
        assert!(!gens.is_empty(), "{fixture}: no generator recorded");
        for (script, want) in gens {
            let got = sha256_hex(&root().join(script));
            n += 1;
            if got != want.as_str().unwrap_or_default() {
                stale.push(format!(
                    "tests/fixtures/{fixture}: {script} has changed (sha256 {got}, recorded {}): \
                     regenerate the fixture, then run tools/reference/provenance.py",
                    want.as_str().unwrap_or_default()
                ));
            }
        }
        let versions = e["versions"].as_object().expect("versions: a map");
        assert!(!versions.is_empty(), "{fixture}: no reference versions");
        assert!(
            versions
                .values()
                .all(|v| v.as_str().is_some_and(|v| !v.is_empty())),
            "{fixture}: empty version in {versions:?}"
        );
    }
    println!("{} fixtures, {n} generator hashes checked", entries.len());
    assert!(stale.is_empty(), "stale fixtures:\n{}", stale.join("\n"));
}

/// Every golden fixture folder and every generator script is covered: a new fixture or a new
/// `gen_*.py` without a manifest entry fails here.
#[test]
fn every_fixture_and_generator_is_in_the_manifest() {
    let m = manifest();
    let entries = m["fixtures"].as_array().unwrap();
    let listed: Vec<&str> = entries
        .iter()
        .map(|e| e["fixture"].as_str().unwrap())
        .collect();
    let covered = |p: &str| {
        listed
            .iter()
            .any(|l| p == *l || p.starts_with(&format!("{l}/")) || l.starts_with(&format!("{p}/")))
    };
    for d in std::fs::read_dir(root().join("tests/fixtures")).unwrap() {
        let d = d.unwrap();
        let name = d.file_name().to_string_lossy().into_owned();
        if name != "provenance.json" {
            assert!(
                covered(&name),
                "tests/fixtures/{name} has no provenance entry"
            );
        }
    }
    let scripts: Vec<String> = entries
        .iter()
        .flat_map(|e| e["generators"].as_object().unwrap().keys().cloned())
        .collect();
    for f in std::fs::read_dir(root().join("tools/reference")).unwrap() {
        let name = f.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with("gen_") && name.ends_with(".py") {
            let p = format!("tools/reference/{name}");
            assert!(scripts.contains(&p), "{p} is not recorded for any fixture");
        }
    }
}
