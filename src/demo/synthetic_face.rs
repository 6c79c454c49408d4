//! A face-like 512×512 test picture anyone can make (no licence question): a drawn face whose
//! eyes, nose and mouth corners sit on the FFHQ-512 alignment template, so it is "aligned" as
//! `restore` expects. Its edges and fine stripes make blur visible.

use image::{Rgb, RgbImage};

/// The FFHQ-512 five-point template (left eye, right eye, nose, mouth corners), pixels.
const TEMPLATE: [(f32, f32); 5] = [
    (192.98, 239.95),
    (318.90, 240.19),
    (256.63, 314.02),
    (201.26, 371.41),
    (313.09, 371.15),
];
/// Inside the ellipse centred at (cx, cy) with half-axes (rx, ry): a value ≤ 1.
fn ell(x: f32, y: f32, cx: f32, cy: f32, rx: f32, ry: f32) -> f32 {
    ((x - cx) / rx).powi(2) + ((y - cy) / ry).powi(2)
}

fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    let t = t.clamp(0.0, 1.0);
    [0, 1, 2].map(|c| a[c] + (b[c] - a[c]) * t)
}

/// Anti-aliased coverage of an ellipse (a one-pixel soft edge).
fn cover(d: f32, r: f32) -> f32 {
    ((1.0 - d.sqrt()) * r).clamp(0.0, 1.0)
}

fn pixel(x: f32, y: f32) -> [f32; 3] {
    let [le, re, nose, ml, mr] = TEMPLATE;
    // Background: a soft vertical gradient with fine diagonal stripes.
    let stripes = 0.5 + 0.5 * ((x + y) * 0.45).sin();
    let mut c = mix([70.0, 110.0, 150.0], [150.0, 180.0, 200.0], y / 512.0);
    c = mix(c, [200.0, 210.0, 220.0], 0.15 * stripes);
    // Hair, then the face oval and the neck.
    c = mix(
        c,
        [60.0, 40.0, 30.0],
        cover(ell(x, y, 256.0, 230.0, 175.0, 200.0), 175.0),
    );
    c = mix(
        c,
        [90.0, 60.0, 45.0],
        0.3 * (0.5 + 0.5 * (x * 0.9).sin()) * cover(ell(x, y, 256.0, 150.0, 160.0, 90.0), 90.0),
    );
    let skin = mix(
        [235.0, 190.0, 160.0],
        [200.0, 150.0, 120.0],
        (x - 256.0).abs() / 150.0,
    );
    c = mix(c, skin, cover(ell(x, y, 256.0, 300.0, 140.0, 175.0), 140.0));
    c = mix(c, skin, cover(ell(x, y, 256.0, 470.0, 60.0, 80.0), 60.0));
    // Eyes: brows, whites, irises with fine radial texture, pupils, a highlight.
    for (ex, ey) in [le, re] {
        c = mix(
            c,
            [70.0, 45.0, 35.0],
            cover(ell(x, y, ex, ey - 32.0, 38.0, 7.0), 7.0),
        );
        c = mix(
            c,
            [245.0, 245.0, 240.0],
            cover(ell(x, y, ex, ey, 30.0, 14.0), 14.0),
        );
        let a = (y - ey).atan2(x - ex);
        let iris = mix(
            [60.0, 110.0, 90.0],
            [110.0, 160.0, 120.0],
            0.5 + 0.5 * (a * 14.0).sin(),
        );
        c = mix(c, iris, cover(ell(x, y, ex, ey, 12.0, 12.0), 12.0));
        c = mix(
            c,
            [15.0, 10.0, 10.0],
            cover(ell(x, y, ex, ey, 5.0, 5.0), 5.0),
        );
        c = mix(
            c,
            [255.0, 255.0, 255.0],
            cover(ell(x, y, ex + 4.0, ey - 4.0, 2.0, 2.0), 2.0),
        );
    }
    // Nose: a shadow under the tip and two nostrils.
    c = mix(
        c,
        [170.0, 120.0, 95.0],
        0.6 * cover(ell(x, y, nose.0, nose.1 + 6.0, 22.0, 9.0), 9.0),
    );
    for dx in [-10.0, 10.0] {
        c = mix(
            c,
            [90.0, 55.0, 45.0],
            cover(ell(x, y, nose.0 + dx, nose.1 + 6.0, 5.0, 3.0), 3.0),
        );
    }
    // Mouth: lips between the two corners, curving down at the middle.
    let (mx, my) = ((ml.0 + mr.0) / 2.0, (ml.1 + mr.1) / 2.0);
    let half = (mr.0 - ml.0) / 2.0;
    let u = ((x - mx) / half).clamp(-1.0, 1.0);
    let centre = my + 6.0 * (1.0 - u * u);
    let lips = ell(x, y, mx, centre, half, 13.0 * (1.0 - 0.6 * u * u));
    c = mix(c, [185.0, 75.0, 80.0], cover(lips, 13.0));
    c = mix(
        c,
        [110.0, 40.0, 45.0],
        cover(ell(x, y, mx, centre, half * 0.95, 1.5), 1.5),
    );
    c
}

/// The drawn face, 2×2 supersampled so its edges are anti-aliased like a photo's.
pub fn draw_face() -> RgbImage {
    RgbImage::from_fn(512, 512, |x, y| {
        let mut acc = [0.0f32; 3];
        for (dx, dy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
            let p = pixel(x as f32 + dx, y as f32 + dy);
            for c in 0..3 {
                acc[c] += p[c] / 4.0;
            }
        }
        Rgb(acc.map(|v| v.round().clamp(0.0, 255.0) as u8))
    })
}
