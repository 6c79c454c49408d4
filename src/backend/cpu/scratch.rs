//! Reused scratch buffers for the convolution kernels.
//!
//! A fresh multi-megabyte `Vec` pays page faults and zeroing on every call (0.6 ms for
//! 16 MiB on the 2-core test machine, a tenth of a whole 3×3 convolution at 128 channels),
//! so each thread keeps the last few buffers it released. A taken buffer holds unspecified
//! values left by an earlier use: callers must write every element before reading it.

use crate::tensor::Scalar;
use std::any::Any;
use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// Buffers kept per thread, and the most bytes they may hold together.
const KEEP: usize = 4;
const KEEP_BYTES: usize = 512 << 20;

thread_local! {
    static POOL: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of `len` elements that returns to its thread's pool when dropped.
pub struct Scratch<T: Scalar> {
    v: Vec<T>,
}

impl<T: Scalar> Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.v
    }
}

impl<T: Scalar> DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.v
    }
}

fn bytes_of(b: &dyn Any) -> usize {
    if let Some(v) = b.downcast_ref::<Vec<f32>>() {
        v.capacity() * 4
    } else if let Some(v) = b.downcast_ref::<Vec<f64>>() {
        v.capacity() * 8
    } else {
        0
    }
}

/// Takes the smallest pooled buffer of element type `T` that holds `len` elements, or
/// allocates one.
pub fn scratch<T: Scalar>(len: usize) -> Scratch<T> {
    let reused = POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let best = pool
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let v = b.downcast_ref::<Vec<T>>()?;
                (v.capacity() >= len).then_some((v.capacity(), i))
            })
            .min()?;
        pool.swap_remove(best.1).downcast::<Vec<T>>().ok()
    });
    let v = match reused {
        Some(mut v) => {
            // Within capacity: no reallocation, and only a grown tail is written.
            v.resize(len, T::zero());
            *v
        }
        None => vec![T::zero(); len],
    };
    Scratch { v }
}

impl<T: Scalar> Drop for Scratch<T> {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.v);
        if v.capacity() == 0 {
            return;
        }
        // A thread being torn down no longer has a pool; the buffer is then just freed.
        let _ = POOL.try_with(|pool| {
            let mut pool = pool.borrow_mut();
            pool.push(Box::new(v));
            // Keep the largest buffers: they are the expensive ones to fault in again.
            pool.sort_by_key(|b| std::cmp::Reverse(bytes_of(b.as_ref())));
            pool.truncate(KEEP);
            while pool.iter().map(|b| bytes_of(b.as_ref())).sum::<usize>() > KEEP_BYTES {
                pool.pop();
            }
        });
    }
}

/// Frees this thread's pooled buffers.
pub fn release() {
    let _ = POOL.try_with(|pool| pool.borrow_mut().clear());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_buffer_is_reused_without_reallocation() {
        release();
        let p = {
            let mut a = scratch::<f32>(1000);
            a[999] = 3.0;
            a.as_ptr()
        };
        let b = scratch::<f32>(800);
        assert_eq!(b.len(), 800);
        assert_eq!(
            b.as_ptr(),
            p,
            "the pooled buffer should be handed out again"
        );
        // Another element type never receives it.
        let c = scratch::<f64>(10);
        assert_ne!(c.as_ptr() as *const f32, p);
        release();
    }

    #[test]
    fn the_pool_is_bounded() {
        release();
        let bufs: Vec<Scratch<f32>> = (1..=KEEP + 3).map(|i| scratch(i * 100)).collect();
        drop(bufs);
        let kept = POOL.with(|p| p.borrow().len());
        assert_eq!(kept, KEEP);
        release();
    }
}
