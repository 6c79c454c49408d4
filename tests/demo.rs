//! `dynface demo`: the README's main job on a drawn face, end to end with the tiny set.

#[path = "support/restore_cli.rs"]
mod restore_cli;
use restore_cli::{bin, report, tmp, weights};

#[test]
fn demo_draws_degrades_and_restores_one_face_with_an_html_report() {
    let out = tmp("demo");
    let r = std::process::Command::new(bin())
        .args(["demo", "-o", out.to_str().unwrap(), "--seed", "3", "--"])
        .args(["--device", "cpu", "--quiet", "--sampler", "ddim4"])
        .arg("--weights")
        .arg(weights())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(0), "{err}");
    let face = image::open(out.join("face.png")).unwrap().to_rgb8();
    assert_eq!(face.dimensions(), (512, 512));
    // A picture, not a flat fill: the drawn eyes, lips and stripes span most of the range.
    let (lo, hi) = face
        .pixels()
        .fold((255u8, 0u8), |(lo, hi), p| (lo.min(p[0]), hi.max(p[0])));
    assert!(hi - lo > 200, "red channel spans only {lo}..{hi}");
    let lq = image::open(out.join("lq/face.png")).unwrap().to_rgb8();
    assert_ne!(lq.as_raw(), face.as_raw(), "degradation changed nothing");
    let restored = out.join("restored");
    assert!(restored.join("face.png").is_file());
    assert!(restored.join("report.html").is_file());
    let rep = report(&restored);
    assert_eq!(rep["images"].as_array().unwrap().len(), 1, "{rep}");
}

#[test]
fn demo_refuses_an_unknown_restore_option_by_name() {
    let out = tmp("demo-bad");
    let r = std::process::Command::new(bin())
        .args(["demo", "-o", out.to_str().unwrap(), "--", "--no-such-flag"])
        .output()
        .unwrap();
    assert_ne!(r.status.code(), Some(0));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("--no-such-flag"), "{err}");
}
