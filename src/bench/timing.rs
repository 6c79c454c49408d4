//! Wall-clock timing with warm-up and a median over repetitions: the median resists the
//! odd slow run caused by other processes on a shared machine. Where Linux exposes it, the
//! CPU time the process spent is also recorded: a rate per CPU-second does not count the
//! time the process waited for a core, so it stays comparable on a loaded machine.

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

/// Seconds of CPU used so far by all threads of this process, from
/// `/proc/self/task/*/schedstat`; `None` where that is not available.
pub fn process_cpu_seconds() -> Option<f64> {
    let mut ns: u64 = 0;
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let path = entry.ok()?.path().join("schedstat");
        // A thread may exit between listing and reading: it then adds nothing.
        if let Ok(text) = std::fs::read_to_string(path) {
            ns += text.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(ns as f64 * 1e-9)
}

/// One workload's figures from `interleaved`.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Median wall-clock seconds per run.
    pub wall: f64,
    /// Mean CPU seconds per run, all threads together.
    pub cpu: Option<f64>,
}

/// Times several workloads in alternation, one run of each per round. On a shared machine
/// every workload then sees the same spread of load, so ratios between them stay
/// meaningful when absolute times do not.
pub fn interleaved(warmup: usize, reps: usize, fs: &mut [&mut dyn FnMut()]) -> Vec<Timing> {
    for f in fs.iter_mut() {
        for _ in 0..warmup {
            f();
        }
    }
    let reps = reps.max(1);
    let mut walls = vec![Vec::with_capacity(reps); fs.len()];
    let mut cpus: Vec<Option<f64>> = vec![Some(0.0); fs.len()];
    for _ in 0..reps {
        for ((f, wall), cpu) in fs.iter_mut().zip(&mut walls).zip(&mut cpus) {
            let c0 = process_cpu_seconds();
            let start = Instant::now();
            f();
            wall.push(start.elapsed().as_secs_f64());
            *cpu = match (*cpu, c0, process_cpu_seconds()) {
                (Some(acc), Some(a), Some(b)) => Some(acc + (b - a)),
                _ => None,
            };
        }
    }
    walls
        .into_iter()
        .zip(cpus)
        .map(|(w, c)| Timing {
            wall: median(w),
            cpu: c.map(|c| c / reps as f64),
        })
        .collect()
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
        let t = interleaved(1, 4, &mut [&mut fa, &mut fb]);
        assert_eq!(t.len(), 2);
        assert_eq!((a, b), (5, 5));
    }

    #[test]
    fn median_of_even_count_averages_the_middle_pair() {
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(vec![5.0, 1.0, 3.0]), 3.0);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod cpu_tests {
    use super::*;

    #[test]
    fn busy_work_shows_up_as_cpu_time() {
        let t0 = process_cpu_seconds().expect("/proc/self/task is readable on Linux");
        let start = Instant::now();
        let mut x = 1u64;
        while start.elapsed().as_secs_f64() < 0.05 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let used = process_cpu_seconds().unwrap() - t0;
        // At least a little CPU must be recorded; the tick granularity of schedstat makes
        // the exact figure loose.
        assert!(used > 0.0, "no CPU time recorded: {used}");
    }
}
