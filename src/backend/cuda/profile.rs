//! Per-kernel device times from CUDA events recorded around every launch (profiling mode).
//! Events must be created with timing enabled: cudarc's `new_event(None)` disables it.

use super::dev_err;
use crate::backend::BResult;
use cudarc::driver::{sys, CudaContext, CudaEvent, CudaStream};
use std::sync::Arc;

#[derive(Default)]
pub struct Profiler {
    records: Vec<(&'static str, &'static str, CudaEvent, CudaEvent)>,
}

/// One row of the profile: an (op, kernel) pair.
#[derive(Clone, Debug)]
pub struct KernelStat {
    pub op: &'static str,
    pub kernel: &'static str,
    pub launches: usize,
    pub total_ms: f64,
    pub share: f64,
}

/// One kernel launch of a profiled run: start after the run's first launch, and duration.
#[derive(Clone, Debug)]
pub struct Launch {
    pub op: &'static str,
    pub kernel: &'static str,
    pub start_ms: f64,
    pub ms: f64,
}

fn timed_event(ctx: &Arc<CudaContext>) -> BResult<CudaEvent> {
    ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
        .map_err(|e| dev_err("creating a timing event", e))
}

impl Profiler {
    pub fn start(&mut self, ctx: &Arc<CudaContext>, stream: &CudaStream) -> BResult<CudaEvent> {
        let e = timed_event(ctx)?;
        e.record(stream)
            .map_err(|e| dev_err("recording an event", e))?;
        Ok(e)
    }

    pub fn finish(
        &mut self,
        ctx: &Arc<CudaContext>,
        stream: &CudaStream,
        op: &'static str,
        kernel: &'static str,
        start: CudaEvent,
    ) -> BResult<()> {
        let end = timed_event(ctx)?;
        end.record(stream)
            .map_err(|e| dev_err("recording an event", e))?;
        self.records.push((op, kernel, start, end));
        Ok(())
    }

    /// Waits for the recorded work and sums times per (op, kernel), largest first.
    pub fn report(self) -> BResult<Vec<KernelStat>> {
        Ok(self.report_with_timeline()?.0)
    }

    /// [`Profiler::report`] and every launch in order, timed from the first launch's start.
    pub fn report_with_timeline(self) -> BResult<(Vec<KernelStat>, Vec<Launch>)> {
        let mut rows: Vec<KernelStat> = vec![];
        let mut launches = vec![];
        for (op, kernel, s, e) in &self.records {
            e.synchronize()
                .map_err(|err| dev_err("waiting for a timing event", err))?;
            let ms = s
                .elapsed_ms(e)
                .map_err(|err| dev_err("reading a timing event", err))? as f64;
            let first = &self.records[0].2;
            let start_ms = first
                .elapsed_ms(s)
                .map_err(|err| dev_err("reading a timing event", err))?
                as f64;
            launches.push(Launch {
                op,
                kernel,
                start_ms,
                ms,
            });
            match rows.iter_mut().find(|r| r.op == *op && r.kernel == *kernel) {
                Some(r) => {
                    r.launches += 1;
                    r.total_ms += ms;
                }
                None => rows.push(KernelStat {
                    op,
                    kernel,
                    launches: 1,
                    total_ms: ms,
                    share: 0.0,
                }),
            }
        }
        let total: f64 = rows.iter().map(|r| r.total_ms).sum();
        for r in &mut rows {
            r.share = if total > 0.0 { r.total_ms / total } else { 0.0 };
        }
        rows.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
        Ok((rows, launches))
    }
}

/// The profile as a text table.
pub fn format_table(rows: &[KernelStat]) -> String {
    let mut s = format!(
        "{:<26} {:<28} {:>8} {:>11} {:>7}\n",
        "op", "kernel", "launches", "total ms", "share"
    );
    for r in rows {
        s.push_str(&format!(
            "{:<26} {:<28} {:>8} {:>11.3} {:>6.1}%\n",
            r.op,
            r.kernel,
            r.launches,
            r.total_ms,
            100.0 * r.share
        ));
    }
    let total: f64 = rows.iter().map(|r| r.total_ms).sum();
    s.push_str(&format!(
        "{:<26} {:<28} {:>8} {:>11.3}\n",
        "total", "", "", total
    ));
    s
}
