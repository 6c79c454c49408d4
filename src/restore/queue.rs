//! The one queue the workers of a device list pull their batches from (`workers.rs`).
//!
//! Jobs keep their index in the input list. A batch a worker cannot finish goes back to the
//! front in its order (out of memory: the same worker retries smaller; a lost device: the
//! other workers take it), so no job is dropped and none runs twice to completion. An idle
//! worker waits while batches are in flight, since a lost device may still give its batch
//! back; the run is over when nothing is pending and nothing is in flight, or when it stops
//! (the last device lost, the disk full).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

/// A job with its index in the input list.
pub type Indexed<J> = (usize, J);

pub struct WorkQueue<J> {
    state: Mutex<State<J>>,
    changed: Condvar,
    workers: usize,
}

struct State<J> {
    pending: VecDeque<Indexed<J>>,
    /// Batches taken and not yet finished, given back or lost.
    in_flight: usize,
    /// Workers whose device still works.
    alive: usize,
    stopped: Option<String>,
}

impl<J> WorkQueue<J> {
    /// A queue of `jobs` (indexed in this order) for `workers` workers.
    pub fn new(jobs: impl IntoIterator<Item = J>, workers: usize) -> Self {
        WorkQueue {
            state: Mutex::new(State {
                pending: jobs.into_iter().enumerate().collect(),
                in_flight: 0,
                alive: workers,
                stopped: None,
            }),
            changed: Condvar::new(),
            workers,
        }
    }

    /// How many workers the queue was made for.
    pub fn workers(&self) -> usize {
        self.workers
    }

    fn lock(&self) -> MutexGuard<'_, State<J>> {
        // A worker that panicked holding the lock left the state consistent (every change
        // is one push or pop), so the others may go on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for work and takes up to `max` jobs (at least one) as one batch, in queue order;
    /// `None` when the run is over or stopped.
    pub fn take(&self, max: usize) -> Option<Vec<Indexed<J>>> {
        let mut st = self.lock();
        while st.pending.is_empty() && st.in_flight > 0 && st.stopped.is_none() {
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        if st.stopped.is_some() || st.pending.is_empty() {
            return None;
        }
        let n = max.max(1).min(st.pending.len());
        st.in_flight += 1;
        Some(st.pending.drain(..n).collect())
    }

    /// Up to `k` more jobs for the batch being filled (after inputs that failed to load),
    /// without waiting.
    pub fn take_more(&self, k: usize) -> Vec<Indexed<J>> {
        let mut st = self.lock();
        if st.stopped.is_some() {
            return vec![];
        }
        let n = k.min(st.pending.len());
        st.pending.drain(..n).collect()
    }

    /// The batch is over: its jobs are done (restored or failed).
    pub fn finish(&self) {
        let mut st = self.lock();
        st.in_flight -= 1;
        drop(st);
        self.changed.notify_all();
    }

    /// The batch's jobs go back to the front, in their order, to be taken again.
    pub fn give_back(&self, jobs: Vec<Indexed<J>>) {
        let mut st = self.lock();
        for j in jobs.into_iter().rev() {
            st.pending.push_front(j);
        }
        st.in_flight -= 1;
        drop(st);
        self.changed.notify_all();
    }

    /// No batch is handed out any more (the first reason is kept); what is pending stays.
    pub fn stop(&self, why: String) {
        let mut st = self.lock();
        st.stopped.get_or_insert(why);
        drop(st);
        self.changed.notify_all();
    }

    /// The worker running `jobs` lost its device. While another device works, the jobs go
    /// back to the front for it (`Ok`); if it was the last, the run stops with `why_last`
    /// and the jobs come back to the caller (`Err`), to be reported failed.
    pub fn lose(&self, jobs: Vec<Indexed<J>>, why_last: String) -> Result<(), Vec<Indexed<J>>> {
        let mut st = self.lock();
        st.alive -= 1;
        st.in_flight -= 1;
        let out = if st.alive > 0 {
            for j in jobs.into_iter().rev() {
                st.pending.push_front(j);
            }
            Ok(())
        } else {
            st.stopped.get_or_insert(why_last);
            Err(jobs)
        };
        drop(st);
        self.changed.notify_all();
        out
    }

    /// A worker whose device never started (holding no batch): one device fewer; the run
    /// stops with `why_last` if it was the last.
    pub fn lose_idle(&self, why_last: String) {
        let mut st = self.lock();
        st.alive -= 1;
        if st.alive == 0 {
            st.stopped.get_or_insert(why_last);
        }
        drop(st);
        self.changed.notify_all();
    }

    /// Why the run stopped, if it did.
    pub fn stopped(&self) -> Option<String> {
        self.lock().stopped.clone()
    }

    /// The jobs no batch took (after the workers are done).
    pub fn into_pending(self) -> Vec<Indexed<J>> {
        let st = self.state.into_inner().unwrap_or_else(|p| p.into_inner());
        st.pending.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn ids<J>(v: &[Indexed<J>]) -> Vec<usize> {
        v.iter().map(|(i, _)| *i).collect()
    }

    #[test]
    fn a_lost_batch_goes_back_to_the_front_in_order() {
        let q = WorkQueue::new(["a", "b", "c", "d", "e"], 2);
        let first = q.take(2).unwrap();
        let second = q.take(2).unwrap();
        assert_eq!((ids(&first), ids(&second)), (vec![0, 1], vec![2, 3]));
        // Worker 0 is lost: another works, so its jobs are requeued ahead of job 4.
        assert!(q.lose(first, "last".into()).is_ok());
        q.finish();
        assert_eq!(ids(&q.take(3).unwrap()), vec![0, 1, 4]);
        // The last worker is lost: the run stops and the jobs are the caller's.
        let back = q.lose(vec![(0, "a")], "every device was lost".into());
        assert_eq!(back.unwrap_err(), vec![(0, "a")]);
        assert_eq!(q.stopped().as_deref(), Some("every device was lost"));
        assert!(q.take(1).is_none());
    }

    #[test]
    fn out_of_memory_gives_back_in_order_and_take_more_refills() {
        let q = WorkQueue::new(0..6, 1);
        let b = q.take(4).unwrap();
        q.give_back(b);
        let b = q.take(2).unwrap();
        assert_eq!(ids(&b), vec![0, 1]);
        assert_eq!(ids(&q.take_more(3)), vec![2, 3, 4]);
        q.finish();
        assert_eq!(ids(&q.take(9).unwrap()), vec![5]);
        q.finish();
        assert!(q.take(1).is_none());
        assert!(q.into_pending().is_empty());
    }

    #[test]
    fn a_stopped_queue_keeps_what_is_pending() {
        let q = WorkQueue::new(0..4, 2);
        let b = q.take(1).unwrap();
        q.stop("disk full".into());
        q.give_back(b);
        assert!(q.take(1).is_none());
        assert_eq!(ids(&q.into_pending()), vec![0, 1, 2, 3]);
    }

    /// Four threads, seeded random batch sizes and losses: every job completes exactly once
    /// as long as one worker survives; none is lost.
    #[test]
    fn workers_with_losses_complete_every_job_exactly_once() {
        for seed in 0..20u64 {
            let jobs = 200;
            let q = WorkQueue::new(0..jobs, 4);
            let done: Vec<AtomicUsize> = (0..jobs).map(|_| AtomicUsize::new(0)).collect();
            std::thread::scope(|s| {
                for w in 0..4u64 {
                    let (q, done) = (&q, &done);
                    s.spawn(move || {
                        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed * 10 + w);
                        // Worker 3 never loses its device; the others at a random batch.
                        let lose_at = if w == 3 {
                            u64::MAX
                        } else {
                            rng.gen_range(1..30)
                        };
                        let mut n = 0;
                        while let Some(b) = q.take(rng.gen_range(1..5)) {
                            n += 1;
                            std::thread::yield_now();
                            if n == lose_at {
                                q.lose(b, "last".into()).expect("worker 3 is alive");
                                return;
                            }
                            for (i, _) in b {
                                done[i].fetch_add(1, Ordering::SeqCst);
                            }
                            q.finish();
                        }
                    });
                }
            });
            let counts: Vec<usize> = done.iter().map(|d| d.load(Ordering::SeqCst)).collect();
            assert!(counts.iter().all(|&c| c == 1), "seed {seed}: {counts:?}");
            assert!(q.stopped().is_none());
            assert!(q.into_pending().is_empty());
        }
    }
}
