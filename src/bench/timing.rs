//! Wall-clock timing with warm-up and a median over repetitions: the median resists the
//! odd slow run caused by other processes on a shared machine.

use std::time::Instant;

/// Runs `f` `warmup` times untimed, then `reps` times timed; returns the median seconds.
pub fn median_seconds(warmup: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let times: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    median(times)
}

/// Times several workloads in alternation, one run of each per round, and returns each
/// one's median seconds. On a shared machine every workload then sees the same spread of
/// load, so ratios between them stay meaningful when absolute times do not.
pub fn interleaved_medians(warmup: usize, reps: usize, fs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    for f in fs.iter_mut() {
        for _ in 0..warmup {
            f();
        }
    }
    let mut times = vec![Vec::with_capacity(reps); fs.len()];
    for _ in 0..reps.max(1) {
        for (f, t) in fs.iter_mut().zip(&mut times) {
            let start = Instant::now();
            f();
            t.push(start.elapsed().as_secs_f64());
        }
    }
    times.into_iter().map(median).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
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

    #[test]
    fn interleaved_runs_each_workload_warmup_plus_reps_times() {
        let (mut a, mut b) = (0, 0);
        let mut fa = || a += 1;
        let mut fb = || b += 1;
        let t = interleaved_medians(1, 4, &mut [&mut fa, &mut fb]);
        assert_eq!(t.len(), 2);
        assert_eq!((a, b), (5, 5));
    }

    #[test]
    fn median_of_even_count_averages_the_middle_pair() {
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(vec![5.0, 1.0, 3.0]), 3.0);
    }
}
