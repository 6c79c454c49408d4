//! Box arithmetic of the MTCNN cascade: non-maximum suppression (IoU or
//! intersection-over-minimum), regression offsets, squaring. Boxes are `[x1, y1, x2, y2]`
//! in pixels of the original image.

/// How overlap is measured in [`nms`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlap {
    /// Intersection over union with areas `(x2 − x1)(y2 − y1)` (torchvision's `nms`).
    Union,
    /// Intersection over the smaller area, with `+1` pixel extents (MTCNN's last stage).
    Min,
}

/// Indices kept by greedy NMS: highest score first, dropping every box whose overlap
/// with a kept one exceeds `thresh`. Ties in score keep the lower index first.
pub fn nms(boxes: &[[f32; 4]], scores: &[f32], thresh: f32, how: Overlap) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let plus = if how == Overlap::Min { 1.0 } else { 0.0 };
    let area = |b: &[f32; 4]| (b[2] - b[0] + plus).max(0.0) * (b[3] - b[1] + plus).max(0.0);
    let mut keep = vec![];
    let mut dead = vec![false; boxes.len()];
    for (oi, &i) in order.iter().enumerate() {
        if dead[i] {
            continue;
        }
        keep.push(i);
        let a = &boxes[i];
        for &j in &order[oi + 1..] {
            if dead[j] {
                continue;
            }
            let b = &boxes[j];
            let w = (a[2].min(b[2]) - a[0].max(b[0]) + plus).max(0.0);
            let h = (a[3].min(b[3]) - a[1].max(b[1]) + plus).max(0.0);
            let inter = w * h;
            let o = match how {
                Overlap::Union => inter / (area(a) + area(b) - inter),
                Overlap::Min => inter / area(a).min(area(b)),
            };
            if o > thresh {
                dead[j] = true;
            }
        }
    }
    keep
}

/// Applies regression offsets `reg` (fractions of the box's `+1` width and height).
pub fn apply_regression(b: [f32; 4], reg: [f32; 4]) -> [f32; 4] {
    let w = b[2] - b[0] + 1.0;
    let h = b[3] - b[1] + 1.0;
    [
        b[0] + reg[0] * w,
        b[1] + reg[1] * h,
        b[2] + reg[2] * w,
        b[3] + reg[3] * h,
    ]
}

/// The square of side max(w, h) with the same centre (the next stage's crops are square).
pub fn square(b: [f32; 4]) -> [f32; 4] {
    let w = b[2] - b[0];
    let h = b[3] - b[1];
    let l = w.max(h);
    let x1 = b[0] + w * 0.5 - l * 0.5;
    let y1 = b[1] + h * 0.5 - l * 0.5;
    [x1, y1, x1 + l, y1 + l]
}

/// The pixel rows and columns a box crops, clipped to a `w`×`h` image: `(x0, y0, x1, y1)`
/// half-open, from the truncated box with MTCNN's one-based convention. `None` when empty.
pub fn crop_window(b: [f32; 4], w: usize, h: usize) -> Option<(usize, usize, usize, usize)> {
    let x = (b[0].trunc() as i64).max(1);
    let y = (b[1].trunc() as i64).max(1);
    let ex = (b[2].trunc() as i64).min(w as i64);
    let ey = (b[3].trunc() as i64).min(h as i64);
    (ex > x - 1 && ey > y - 1)
        .then(|| ((x - 1) as usize, (y - 1) as usize, ex as usize, ey as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nms_keeps_best_of_overlapping_and_all_disjoint() {
        let boxes = [
            [0.0, 0.0, 10.0, 10.0],
            [1.0, 1.0, 11.0, 11.0],
            [20.0, 20.0, 30.0, 30.0],
            [0.0, 0.0, 4.0, 4.0],
        ];
        let scores = [0.8, 0.9, 0.5, 0.7];
        // IoU(0,1) = 81/119 = 0.68; IoU(3, 1) = 9/107 small; box 3 inside box 0 (IoU 0.16).
        assert_eq!(nms(&boxes, &scores, 0.5, Overlap::Union), vec![1, 3, 2]);
        assert_eq!(nms(&boxes, &scores, 0.7, Overlap::Union), vec![1, 0, 3, 2]);
        // Over the minimum area (+1 extents), box 0 goes to box 1 (100/121 > 0.7) while
        // box 3 overlaps box 1 by 16/25 = 0.64 and stays.
        assert_eq!(nms(&boxes, &scores, 0.7, Overlap::Min), vec![1, 3, 2]);
        assert_eq!(nms(&boxes, &scores, 0.6, Overlap::Min), vec![1, 2]);
    }

    #[test]
    fn square_keeps_centre_and_crop_window_clips() {
        let s = square([10.0, 20.0, 30.0, 60.0]);
        assert_eq!(s, [0.0, 20.0, 40.0, 60.0]);
        assert_eq!(
            crop_window([-5.5, 3.9, 50.2, 8.0], 40, 30),
            Some((0, 2, 40, 8))
        );
        assert_eq!(crop_window([45.0, 3.0, 50.0, 8.0], 40, 30), None);
        assert_eq!(
            apply_regression([0.0, 0.0, 9.0, 19.0], [0.1, -0.1, 0.0, 0.5]),
            [1.0, -2.0, 9.0, 29.0]
        );
    }
}
