//! Reflect boundary (mirror without repeating the edge pixel: `d c b | a b c d | c b a`),
//! applied repeatedly so that any integer index lands in range, even when the pad
//! is wider than the line (an image smaller than the kernel radius).

/// Index of `i` (any integer) after folding into `0..n` by repeated reflection.
pub fn reflect_index(i: i64, n: usize) -> usize {
    debug_assert!(n > 0);
    if n == 1 {
        return 0;
    }
    // Repeated mirroring about 0 and n−1 is periodic with period 2(n−1).
    let period = 2 * (n as i64 - 1);
    let m = i.rem_euclid(period);
    if m < n as i64 {
        m as usize
    } else {
        (period - m) as usize
    }
}

/// Source index for each position of a line of length `n` padded by `pad` on both
/// sides: entry q is the original index of padded position q (q − pad before folding).
pub fn padded_map(n: usize, pad: usize) -> Vec<usize> {
    (0..n + 2 * pad)
        .map(|q| reflect_index(q as i64 - pad as i64, n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_reflect() {
        // numpy.pad(np.arange(4), 5, mode="reflect")
        let want = [1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2];
        assert_eq!(padded_map(4, 5), want);
    }

    #[test]
    fn single_pixel_line() {
        assert!(padded_map(1, 7).iter().all(|&v| v == 0));
    }

    #[test]
    fn two_pixel_line_alternates() {
        assert_eq!(padded_map(2, 3), [1, 0, 1, 0, 1, 0, 1, 0]);
    }
}
