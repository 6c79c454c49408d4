//! Chrome trace-event JSON (`--trace FILE`, opens in Perfetto or chrome://tracing): one track
//! per thread, one slice per executed graph node with its op, label, output and input shapes,
//! bytes moved and FLOPs, plus a slice per graph run and whatever spans callers add (a
//! restore batch, a bench case); on CUDA, `bench --trace` adds a device track per stream
//! from the CUDA event timing of every kernel launch.
//!
//! Recording is process-wide and off unless [`start`] was called: the executor asks
//! [`active`] once per run. While it is on, each node is timed on the host with a backend
//! synchronisation after it (so on a device the slice is the node's device time plus the
//! launch), and graph replays run node by node instead. A cap on the number of slices keeps
//! a long run's file bounded; the file says when the cap was hit.

use crate::graph::{Graph, NodeId, Op};
use crate::models::unet::cost::node_macs;
use crate::models::unet::traffic::node_elements;
use crate::tensor::numel;
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Default cap on recorded slices (about 300 bytes each in the file).
pub const DEFAULT_LIMIT: usize = 500_000;

/// The process id every event carries (one process: dynface).
const PID: u64 = 1;

static ACTIVE: AtomicBool = AtomicBool::new(false);
static DROPPED: AtomicU64 = AtomicU64::new(0);
static STATE: Mutex<Option<State>> = Mutex::new(None);

struct State {
    epoch: Instant,
    limit: usize,
    events: Vec<Value>,
    /// Thread → (track id, name), in order of first appearance.
    threads: HashMap<std::thread::ThreadId, (u64, String)>,
    /// Extra tracks (device streams), by name.
    tracks: Vec<String>,
}

/// Starts recording (clearing anything recorded before), keeping at most `limit` slices.
pub fn start(limit: usize) {
    let mut s = STATE.lock().unwrap_or_else(|e| e.into_inner());
    *s = Some(State {
        epoch: Instant::now(),
        limit,
        events: vec![],
        threads: HashMap::new(),
        tracks: vec![],
    });
    DROPPED.store(0, Ordering::Relaxed);
    ACTIVE.store(true, Ordering::Release);
}

/// Whether a trace is being recorded.
pub fn active() -> bool {
    ACTIVE.load(Ordering::Acquire)
}

fn micros(epoch: Instant, t: Instant) -> f64 {
    t.saturating_duration_since(epoch).as_secs_f64() * 1e6
}

fn push(event: impl FnOnce(&mut State) -> Value) {
    let mut g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(s) = g.as_mut() else { return };
    if s.events.len() >= s.limit {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let e = event(s);
    s.events.push(e);
}

fn thread_track(s: &mut State) -> u64 {
    let t = std::thread::current();
    let n = s.threads.len() as u64 + 1;
    s.threads
        .entry(t.id())
        .or_insert_with(|| {
            let name = t
                .name()
                .map_or_else(|| format!("thread {n}"), str::to_string);
            (n, name)
        })
        .0
}

/// A complete slice on the calling thread's track.
pub fn span(name: &str, cat: &str, start: Instant, end: Instant, args: Value) {
    if !active() {
        return;
    }
    push(|s| {
        let tid = thread_track(s);
        json!({
            "name": name, "cat": cat, "ph": "X", "pid": PID, "tid": tid,
            "ts": micros(s.epoch, start),
            "dur": micros(start, end),
            "args": args,
        })
    });
}

/// A slice on a named extra track (a device stream), at `ts_us` for `dur_us` microseconds
/// after the trace's start.
pub fn track_span(track: &str, name: &str, cat: &str, ts_us: f64, dur_us: f64, args: Value) {
    if !active() {
        return;
    }
    push(|s| {
        let i = match s.tracks.iter().position(|t| t == track) {
            Some(i) => i,
            None => {
                s.tracks.push(track.to_string());
                s.tracks.len() - 1
            }
        };
        json!({
            "name": name, "cat": cat, "ph": "X", "pid": PID, "tid": 1000 + i as u64,
            "ts": ts_us, "dur": dur_us, "args": args,
        })
    });
}

/// Microseconds from the trace's start to `t` (for device timelines anchored at a host time).
pub fn micros_since_start(t: Instant) -> f64 {
    let g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    g.as_ref().map_or(0.0, |s| micros(s.epoch, t))
}

/// FLOPs of node `i`: 2 per multiply-accumulate for convolutions and matrix products, one
/// per output element for the other computing ops (an estimate: exp or a norm costs more),
/// none for inputs, constants and reshapes.
pub fn node_flops(g: &Graph, i: usize) -> u64 {
    let node = &g.nodes[i];
    let m = node_macs(g, i);
    if m.total() > 0 {
        return 2 * m.total();
    }
    match node.op {
        Op::Input { .. } | Op::Const { .. } | Op::Reshape { .. } | Op::Fill { .. } => 0,
        _ => numel(&node.shape) as u64,
    }
}

/// The slice of one executed node.
pub fn node(g: &Graph, id: NodeId, start: Instant, end: Instant) {
    if !active() {
        return;
    }
    let n = &g.nodes[id.0];
    let inputs: Vec<&[usize]> = n.inputs.iter().map(|j| g.shape(*j)).collect();
    let args = json!({
        "node": id.0,
        "label": n.label,
        "shape": n.shape,
        "inputs": inputs,
        // fp32 elements read and written, as models::unet::traffic counts them.
        "bytes": node_elements(g, id.0) * 4,
        "flops": node_flops(g, id.0),
    });
    span(n.op.kind(), "op", start, end, args);
}

/// What [`finish`] wrote.
#[derive(Clone, Debug)]
pub struct TraceSummary {
    pub slices: usize,
    pub dropped: u64,
}

/// Stops recording and writes the trace to `path` (atomically). `meta` goes into the file's
/// `otherData`.
pub fn finish(path: &Path, meta: Value) -> Result<TraceSummary> {
    ACTIVE.store(false, Ordering::Release);
    let state = STATE.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some(s) = state else {
        anyhow::bail!("no trace was started");
    };
    let dropped = DROPPED.load(Ordering::Relaxed);
    let mut events = vec![json!({
        "name": "process_name", "ph": "M", "pid": PID, "tid": 0,
        "args": {"name": "dynface"},
    })];
    let mut threads: Vec<&(u64, String)> = s.threads.values().collect();
    threads.sort();
    for (tid, name) in threads {
        events.push(json!({
            "name": "thread_name", "ph": "M", "pid": PID, "tid": tid,
            "args": {"name": name},
        }));
    }
    for (i, name) in s.tracks.iter().enumerate() {
        events.push(json!({
            "name": "thread_name", "ph": "M", "pid": PID, "tid": 1000 + i as u64,
            "args": {"name": name},
        }));
    }
    let slices = s.events.len();
    events.extend(s.events);
    let mut other = json!({
        "tool": format!("dynface {}", env!("CARGO_PKG_VERSION")),
        "slices": slices,
        "dropped_slices": dropped,
        "flops": "2 per multiply-accumulate for conv and matmul ops, 1 per output element otherwise (an estimate)",
        "bytes": "fp32 elements each op reads and writes (models::unet::traffic)",
        "timing": "host time with a backend synchronisation after each node",
    });
    if let (Some(o), Value::Object(m)) = (other.as_object_mut(), meta) {
        o.extend(m);
    }
    let file = json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": other,
    });
    crate::atomic_file::write_atomic(path, serde_json::to_string(&file)?.as_bytes())
        .with_context(|| format!("writing trace {}", path.display()))?;
    if dropped > 0 {
        eprintln!(
            "warning: trace {}: cap of {} slices reached, {dropped} later slices not recorded",
            path.display(),
            s.limit
        );
    }
    Ok(TraceSummary { slices, dropped })
}
