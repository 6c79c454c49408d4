//! Several devices in one process, tested without a GPU: `--device cpu,cpu` runs two CPU
//! workers on one queue, and `DYNFACE_FAULT_DEVICE_LOST` loses one of them (or both) at a
//! chosen batch of its own. The outputs must be the bytes of a one-device run whatever
//! device restored each image; a lost device's batch goes to the other; losing every device
//! stops the run as a one-device run stops, and a rerun resumes.

#[path = "support/restore_cli.rs"]
mod restore_cli;

use restore_cli::{bin, pngs, report, synthetic_png, tmp, weights};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

const IMAGES: u32 = 6;

fn inputs() -> &'static Path {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let d = tmp("multi-in");
        for i in 0..IMAGES {
            synthetic_png(&d.join(format!("face{i:02}.png")), 36 + 4 * i, 44, 3 + i);
        }
        d
    })
}

/// `dynface restore INPUTS -o OUT --device DEVICE` on the tiny set, few steps, with `env`.
fn restore(out: &Path, device: &str, env: &[(&str, &str)]) -> Output {
    let mut c = std::process::Command::new(bin());
    c.arg("restore")
        .arg(inputs())
        .arg("-o")
        .arg(out)
        .args(["--weights", weights().to_str().unwrap()])
        .args(["--device", device, "--quiet", "--sampler", "ddim8"])
        .env_remove("DYNFACE_FAULT_BATCH")
        .env_remove("DYNFACE_FAULT_DEVICE_LOST");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// The one-device run every multi-device run must reproduce byte for byte.
fn one_device() -> &'static BTreeMap<String, Vec<u8>> {
    static R: OnceLock<BTreeMap<String, Vec<u8>>> = OnceLock::new();
    R.get_or_init(|| {
        let out = tmp("multi-one");
        let r = restore(&out, "cpu", &[]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let p = pngs(&out);
        assert_eq!(p.len(), IMAGES as usize);
        p
    })
}

fn file_name(v: &Value) -> String {
    Path::new(v.as_str().unwrap())
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// (image name, status, device) per image of the report.
fn rows(rep: &Value) -> Vec<(String, String, Option<String>)> {
    rep["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|im| {
            (
                file_name(&im["input"]),
                im["status"].as_str().unwrap().to_string(),
                im["device"].as_str().map(str::to_string),
            )
        })
        .collect()
}

#[test]
fn two_devices_restore_every_image_with_the_bytes_of_one() {
    let out = tmp("multi-two");
    let r = restore(&out, "cpu,cpu", &[]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{err}");
    assert!(err.contains("2 CPU workers (cpu:0, cpu:1)"), "{err}");
    assert_eq!(&pngs(&out), one_device());
    let rep = report(&out);
    assert_eq!(rep["restored"], IMAGES);
    assert!(rep.get("lost_devices").is_none());
    // Both workers took a batch at once (each builds its pipelines on its first one), so
    // each restored at least one image.
    let used: BTreeSet<String> = rows(&rep).into_iter().filter_map(|r| r.2).collect();
    assert_eq!(used, BTreeSet::from(["cpu:0".into(), "cpu:1".into()]));
}

#[test]
fn a_lost_device_gives_its_batch_to_the_other_and_the_bytes_are_unchanged() {
    let out = tmp("multi-lost1");
    let r = restore(&out, "cpu,cpu", &[("DYNFACE_FAULT_DEVICE_LOST", "1:1")]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        r.status.success(),
        "a lost device of two is no failure: {err}"
    );
    assert!(
        err.contains("cpu:1 is lost; its batch (") && err.contains("goes back to the queue"),
        "{err}"
    );
    assert_eq!(&pngs(&out), one_device());
    let rep = report(&out);
    assert_eq!(
        (&rep["restored"], &rep["failed"], &rep["not_run"]),
        (&Value::from(IMAGES), &Value::from(0), &Value::from(0))
    );
    assert!(rep.get("stopped").is_none());
    let lost = rep["lost_devices"].as_array().unwrap();
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0]["device"], "cpu:1");
    assert_eq!(lost[0]["batch"], 1);
    assert!(lost[0]["error"]
        .as_str()
        .unwrap()
        .contains("DYNFACE_FAULT_DEVICE_LOST"));
    let requeued: Vec<String> = lost[0]["requeued"]
        .as_array()
        .unwrap()
        .iter()
        .map(file_name)
        .collect();
    assert_eq!(requeued.len(), 1, "batch 1 holds one image: {requeued:?}");
    // cpu:1 was lost before it restored anything: cpu:0 restored all, the requeued image
    // included.
    for (name, status, device) in rows(&rep) {
        assert_eq!(
            (status.as_str(), device.as_deref()),
            ("restored", Some("cpu:0")),
            "{name}"
        );
    }
}

#[test]
fn losing_every_device_stops_cleanly_and_a_rerun_resumes() {
    let out = tmp("multi-lostall");
    // Each worker restores its first batch and is lost at its second.
    let r = restore(&out, "cpu,cpu", &[("DYNFACE_FAULT_DEVICE_LOST", "0:2,1:2")]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("stopped: all 2 devices were lost"), "{err}");
    let rep = report(&out);
    assert_eq!(
        (&rep["restored"], &rep["failed"], &rep["not_run"]),
        (&Value::from(2), &Value::from(1), &Value::from(3)),
        "{rep:#}"
    );
    assert!(rep["stopped"].as_str().unwrap().contains("rerun to resume"));
    let lost = rep["lost_devices"].as_array().unwrap();
    let lost_names: BTreeSet<&str> = lost.iter().map(|l| l["device"].as_str().unwrap()).collect();
    assert_eq!(lost_names, BTreeSet::from(["cpu:0", "cpu:1"]));
    // The first lost gave its batch back; the last had no one to give it to.
    assert_eq!(lost[0]["requeued"].as_array().unwrap().len(), 1);
    assert_eq!(lost[1]["requeued"].as_array().unwrap().len(), 0);
    // Finished outputs are kept, with the bytes of the one-device run.
    let kept = pngs(&out);
    assert_eq!(kept.len(), 2);
    for (name, bytes) in &kept {
        assert_eq!(Some(bytes), one_device().get(name), "{name}");
    }

    let r = restore(&out, "cpu,cpu", &[]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let rep = report(&out);
    assert_eq!(
        (&rep["skipped"], &rep["restored"]),
        (&Value::from(2), &Value::from(IMAGES - 2))
    );
    assert_eq!(&pngs(&out), one_device());
}
