//! The HTML report in a real browser: `restore --html` on two faces and one corrupt file, the
//! page loaded in headless Chromium; every picture decodes, every plot draws, no script error
//! (the page's own check line, read from the DOM after load), and a screenshot is written
//! (its path is printed). `report html` rebuilds the same page from the JSON report. DGSA's
//! scale maps are on the page (the tiny set has DGSA weights); with `--preset no-dgsa` the
//! page says S ≡ 1 instead; the dump changes no restored byte.
//! Skips, saying why, where Chromium is absent; in CI (CI=true) that is a failure, since
//! scripts/test.sh installs it.

#[path = "support/restore_cli.rs"]
mod restore_cli;

use restore_cli::{bin, restore_cpu, synthetic_png, tmp, weights};
use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("DYNFACE_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

/// Headless Chromium with the flags that work in a container, a fresh profile, and `extra`.
fn headless(chrome: &Path, profile: &Path, extra: &[String], page: &Path) -> std::process::Output {
    Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap()
}

#[test]
fn the_html_report_loads_in_chromium_with_every_picture_and_plot() {
    let Some(chrome) = chromium() else {
        dynface::check::skip::skip(
            "html_report",
            dynface::check::skip::SkipReason::NoBrowser,
            "no chromium on PATH (apt-get install chromium, or set DYNFACE_CHROMIUM); scripts/test.sh installs it",
        );
        return;
    };
    let inp = tmp("html-in");
    synthetic_png(&inp.join("face_a.png"), 48, 48, 2);
    synthetic_png(&inp.join("face_b.png"), 40, 56, 9);
    std::fs::write(inp.join("broken.png"), b"not a png at all").unwrap();
    let out = tmp("html-out");
    let r = restore_cpu(
        inp.to_str().unwrap(),
        out.to_str().unwrap(),
        weights().to_str().unwrap(),
        &["--sampler", "ddim4", "--html"],
    );
    let err = String::from_utf8_lossy(&r.stderr);
    // One input is corrupt: the run reports it and exits 1, the page still comes out.
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("html report: "), "{err}");
    let page = out.join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: every picture is a data URI, nothing is fetched.
    assert!(!html.contains("src=\"file:") && !html.contains("src=\"http"));
    // 2 restored images × (input, RM, 3 guidance, restored), plus each image's S maps
    // (first, middle, last step of its trajectory: 1 to 3, each a dumped PNG).
    let mut s_maps = 0;
    for face in ["face_a", "face_b"] {
        let st: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("stages").join(face).join("stages.json")).unwrap(),
        )
        .unwrap();
        let maps = st["scale_maps"].as_array().unwrap();
        assert!((1..=3).contains(&maps.len()), "{face}: {maps:?}");
        for m in maps {
            let f = out
                .join("stages")
                .join(face)
                .join(m["file"].as_str().unwrap());
            let img = image::open(&f).unwrap();
            assert_eq!(img.width(), 64, "{}", f.display());
            assert!(m["min"].as_f64().unwrap() <= m["max"].as_f64().unwrap());
        }
        s_maps += maps.len();
    }
    let pictures = html.matches("<img class=\"thumb\"").count();
    assert_eq!(pictures, 12 + s_maps);
    assert_eq!(html.matches("alt=\"S at t=").count(), s_maps);
    assert!(html.contains("broken"));
    let all = 12 + s_maps;

    let profile = tmp("html-profile");
    let dom = headless(
        &chrome,
        &profile,
        &["--virtual-time-budget=5000".into(), "--dump-dom".into()],
        &page,
    );
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    let check = dom_text
        .lines()
        .flat_map(|l| l.split("<p id=\"check\">").nth(1))
        .map(|rest| rest.split('<').next().unwrap_or("").to_string())
        .next()
        .unwrap_or_else(|| {
            panic!(
                "no check line in the DOM; chromium said: {}",
                String::from_utf8_lossy(&dom.stderr)
            )
        });
    assert_eq!(
        check,
        format!("page check: {all} of {all} images decoded, 4 of 4 plots drawn, no script errors")
    );

    let shot = out.join("report-screenshot.png");
    let profile2 = tmp("html-profile2");
    let s = headless(
        &chrome,
        &profile2,
        &[
            "--window-size=1400,1000".into(),
            format!("--screenshot={}", shot.display()),
        ],
        &page,
    );
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    let img = image::open(&shot).expect("the screenshot decodes");
    assert_eq!((img.width(), img.height()), (1400, 1000));
    println!("screenshot of the HTML report: {}", shot.display());

    // `report html` makes the same page from the JSON report and the stages folder.
    let again = out.join("again.html");
    let o = Command::new(bin())
        .args(["report", "html"])
        .arg(out.join("report.json"))
        .arg("-o")
        .arg(&again)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rebuilt = std::fs::read_to_string(&again).unwrap();
    assert_eq!(rebuilt.matches("<img class=\"thumb\"").count(), all);
    assert_eq!(rebuilt.matches("<svg class=\"plot\"").count(), 4);

    // The dump (S read back from the step graph) changes no restored byte.
    let plain = tmp("html-plain");
    let r = restore_cpu(
        inp.to_str().unwrap(),
        plain.to_str().unwrap(),
        weights().to_str().unwrap(),
        &["--sampler", "ddim4"],
    );
    assert_eq!(r.status.code(), Some(1));
    for face in ["face_a.png", "face_b.png"] {
        assert_eq!(
            std::fs::read(plain.join(face)).unwrap(),
            std::fs::read(out.join(face)).unwrap(),
            "{face}: bytes with and without --html/--dump"
        );
    }

    // Without DGSA the page says S ≡ 1 rather than showing flat maps.
    let unit = tmp("html-unit");
    let r = restore_cpu(
        inp.to_str().unwrap(),
        unit.to_str().unwrap(),
        weights().to_str().unwrap(),
        &["--sampler", "ddim4", "--html", "--preset", "no-dgsa"],
    );
    assert_eq!(r.status.code(), Some(1));
    let html = std::fs::read_to_string(unit.join("report.html")).unwrap();
    assert_eq!(html.matches("alt=\"S at t=").count(), 0);
    assert_eq!(
        html.matches("S ≡ 1 (--preset no-dgsa").count(),
        2,
        "one note per restored image"
    );
    assert_eq!(html.matches("<img class=\"thumb\"").count(), 12);
}
