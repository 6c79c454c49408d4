//! Wall-clock timing with warm-up and a median over repetitions: the median resists the
//! odd slow run caused by other processes on a shared machine.

use std::time::Instant;

/// Runs `f` `warmup` times untimed, then `reps` times timed; returns the median seconds.
pub fn median_seconds(warmup: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let mut times: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    let n = times.len();
    if n % 2 == 1 {
        times[n / 2]
    } else {
        0.5 * (times[n / 2 - 1] + times[n / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_is_taken_over_the_timed_reps_only() {
        let mut calls = 0;
        let t = median_seconds(2, 5, || calls += 1);
        assert_eq!(calls, 7);
        assert!((0.0..1.0).contains(&t));
    }
}
