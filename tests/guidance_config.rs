//! The DBLM's guidance settings (N and the σ range, `dblm::GuidanceConfig`) live in the
//! `guidance` section of `models.json`; sets written before it existed kept them in
//! `sampler` and must load with the same values.

use dynface::dblm::GuidanceConfig;
use dynface::restore::models::ModelSet;
use serde_json::{json, Value};

/// The official set as `models.json` text after `edit`.
fn text(edit: impl FnOnce(&mut Value)) -> String {
    let mut v = serde_json::to_value(ModelSet::official()).unwrap();
    edit(&mut v);
    v.to_string()
}

fn old_style(v: &mut Value) {
    v.as_object_mut().unwrap().remove("guidance");
    let s = v["sampler"].as_object_mut().unwrap();
    s.insert("num_guidance".into(), json!(2));
    s.insert("sigma_min".into(), json!(0.5));
    s.insert("sigma_max".into(), json!(9.0));
}

#[test]
fn old_sampler_keys_still_load_into_the_guidance_section() {
    let set = ModelSet::from_json_str(&text(old_style)).unwrap();
    let want = GuidanceConfig {
        num_guidance: 2,
        sigma_min: 0.5,
        sigma_max: 9.0,
    };
    assert_eq!(set.guidance, want);
    let s = set.sampler_config();
    assert_eq!((s.num_guidance, s.sigma_min, s.sigma_max), (2, 0.5, 9.0));
    // Written back, the keys are in their new place only, and load the same.
    let v = serde_json::to_value(&set).unwrap();
    for k in GuidanceConfig::KEYS {
        assert!(v["sampler"].get(k).is_none(), "sampler.{k} written");
    }
    assert_eq!(v["guidance"]["num_guidance"], 2);
    let again = ModelSet::from_json_str(&v.to_string()).unwrap();
    assert_eq!(again.guidance, want);
}

#[test]
fn the_new_section_loads_and_absent_keys_take_method_md_defaults() {
    let set = ModelSet::from_json_str(&text(|v| {
        v["guidance"] = json!({ "sigma_max": 12.5 });
    }))
    .unwrap();
    assert_eq!(
        set.guidance,
        GuidanceConfig {
            num_guidance: 3,
            sigma_min: 0.1,
            sigma_max: 12.5,
        }
    );
    assert_eq!(set.sampler_config().sigma_max, 12.5);
}

#[test]
fn a_key_in_both_places_or_a_bad_range_is_a_clear_error() {
    let both = text(|v| {
        old_style(v);
        v["guidance"] = json!({ "sigma_min": 0.2 });
    });
    let e = format!("{:#}", ModelSet::from_json_str(&both).unwrap_err());
    assert!(e.contains("`sigma_min` is given in both"), "{e}");
    let bad = text(|v| v["guidance"] = json!({ "sigma_min": 3.0, "sigma_max": 2.0 }));
    let e = format!("{:#}", ModelSet::from_json_str(&bad).unwrap_err());
    assert!(e.contains("sigma range [3, 2]"), "{e}");
    let typo = text(|v| v["guidance"] = json!({ "num_guidanc": 2 }));
    assert!(ModelSet::from_json_str(&typo).is_err());
}
