//! `--trace FILE` writes Chrome trace-event JSON: checked here against the format's rules
//! (a hand-written structural schema: the `jsonschema` crate would build a regex engine and
//! an HTTP stack for one test), and for content: the CPU bench trace holds every op of one
//! UNet forward, in plan order, with its shape, bytes and FLOPs; a restore trace holds its
//! batches and graph runs with their ops.

#[path = "support/restore_cli.rs"]
mod restore_cli;

use dynface::backend::cpu::CpuBackend;
use dynface::backend::Backend;
use dynface::graph::plan::{plan, PlanOptions};
use dynface::graph::rewrite;
use dynface::models::unet::model::UNetGraph;
use restore_cli::{bin, restore_cpu, synthetic_png, tmp, weights};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;

fn is_uint(v: &Value) -> bool {
    v.as_u64().is_some()
}

fn is_time(v: &Value) -> bool {
    v.as_f64().is_some_and(|t| t.is_finite() && t >= 0.0)
}

/// The trace-event format's rules as this tool uses them; returns what is wrong.
fn schema_errors(trace: &Value) -> Vec<String> {
    let mut errs = vec![];
    let Some(events) = trace["traceEvents"].as_array() else {
        return vec!["no traceEvents array".into()];
    };
    if !trace["otherData"].is_object() {
        errs.push("otherData is not an object".into());
    }
    for (i, e) in events.iter().enumerate() {
        let mut bad = |what: &str| errs.push(format!("event {i}: {what}: {e}"));
        if e["name"].as_str().is_none_or(|n| n.is_empty()) {
            bad("name");
        }
        if !is_uint(&e["pid"]) || !is_uint(&e["tid"]) {
            bad("pid/tid");
        }
        match e["ph"].as_str() {
            Some("M") => {
                if !matches!(e["name"].as_str(), Some("process_name" | "thread_name"))
                    || !e["args"]["name"].is_string()
                {
                    bad("metadata event");
                }
            }
            Some("X") => {
                if !is_time(&e["ts"]) || !is_time(&e["dur"]) || !e["cat"].is_string() {
                    bad("complete event ts/dur/cat");
                }
                if e["cat"] == "op" {
                    let a = &e["args"];
                    let dims = |v: &Value| {
                        v.as_array()
                            .is_some_and(|d| d.iter().all(|x| x.as_u64().is_some_and(|n| n > 0)))
                    };
                    if !is_uint(&a["node"])
                        || !a["label"].is_string()
                        || !dims(&a["shape"])
                        || !a["inputs"].as_array().is_some_and(|v| v.iter().all(dims))
                        || !is_uint(&a["bytes"])
                        || !is_uint(&a["flops"])
                    {
                        bad("op slice args");
                    }
                }
            }
            _ => bad("ph is not M or X"),
        }
    }
    // Slices of one category on one track never overlap (the executor runs ops in order).
    let mut by_track: BTreeMap<(u64, String), Vec<(f64, f64)>> = BTreeMap::new();
    for e in events.iter().filter(|e| e["ph"] == "X") {
        let key = (
            e["tid"].as_u64().unwrap_or(0),
            e["cat"].as_str().unwrap_or("").to_string(),
        );
        let ts = e["ts"].as_f64().unwrap_or(0.0);
        by_track
            .entry(key)
            .or_default()
            .push((ts, ts + e["dur"].as_f64().unwrap_or(0.0)));
    }
    for ((tid, cat), mut v) in by_track {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        // 1 µs slack for the rounding of the microsecond figures.
        if let Some(w) = v.windows(2).find(|w| w[1].0 + 1.0 < w[0].1) {
            errs.push(format!("track {tid}, {cat}: slices overlap: {w:?}"));
        }
    }
    errs
}

fn read(p: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn op_slices(trace: &Value) -> Vec<&Value> {
    trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["cat"] == "op")
        .collect()
}

#[test]
fn the_cpu_bench_trace_is_valid_and_holds_every_op_of_one_unet_forward() {
    let dir = tmp("trace-bench");
    let path = dir.join("trace.json");
    let o = Command::new(bin())
        .args(["bench", "--device", "cpu", "--skip-conv", "--trace"])
        .arg(&path)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("trace: "), "{out}");
    let trace = read(&path);
    let errs = schema_errors(&trace);
    assert!(errs.is_empty(), "{errs:#?}");

    // The same forward, planned here: the trace has exactly its nodes, in plan order.
    let cfg = dynface::bench::trace_cpu::traced_unet_config().unwrap();
    // The executor runs the graph after the fusion passes the CPU asks for, so plan that.
    let ug = UNetGraph::new(&cfg, 1, cfg.image_size, cfg.image_size, false).unwrap();
    let mut graph = ug.graph.clone();
    let cpu = CpuBackend::<f32>::new();
    rewrite::fuse(&mut graph, &ug.outputs(), &|op, shapes| {
        cpu.supports(op, shapes)
    });
    let p = plan(&graph, &ug.outputs(), PlanOptions::default());
    let ops = op_slices(&trace);
    assert_eq!(ops.len(), p.order.len());
    let mut conv_flops = 0;
    for (e, id) in ops.iter().zip(&p.order) {
        let node = graph.node(*id);
        assert_eq!(e["args"]["node"], id.0 as u64);
        assert_eq!(e["name"], node.op.kind());
        assert_eq!(e["args"]["label"], node.label.as_str());
        assert_eq!(
            e["args"]["shape"],
            serde_json::to_value(&node.shape).unwrap()
        );
        if node.op.kind() == "conv2d" {
            conv_flops += e["args"]["flops"].as_u64().unwrap();
            assert!(e["args"]["bytes"].as_u64().unwrap() > 0);
        }
    }
    // Convolution FLOPs add up to twice the graph's convolution MACs.
    let macs = dynface::models::unet::graph_macs(&ug.graph, &ug.outputs());
    assert_eq!(conv_flops, 2 * macs.conv);
    // One graph-run slice covering them.
    let runs: Vec<_> = trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["cat"] == "run")
        .collect();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["args"]["nodes"], p.order.len() as u64);
}

#[test]
fn a_restore_trace_holds_its_batch_and_every_op_of_its_graph_runs() {
    let inp = tmp("trace-in");
    synthetic_png(&inp.join("a.png"), 40, 40, 3);
    let out = tmp("trace-out");
    let path = out.join("restore-trace.json");
    let r = restore_cpu(
        inp.to_str().unwrap(),
        out.to_str().unwrap(),
        weights().to_str().unwrap(),
        &["--sampler", "ddim3", "--trace", path.to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{err}");
    assert!(err.contains("trace: "), "{err}");
    let trace = read(&path);
    let errs = schema_errors(&trace);
    assert!(errs.is_empty(), "{errs:#?}");
    let events = trace["traceEvents"].as_array().unwrap();
    let batches: Vec<_> = events.iter().filter(|e| e["cat"] == "batch").collect();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0]["args"]["images"], serde_json::json!(["a"]));
    let runs: Vec<_> = events.iter().filter(|e| e["cat"] == "run").collect();
    // Restorer, estimator, DGSA-in-step sampler: several graph runs, each with all its ops.
    assert!(runs.len() >= 3, "{} runs", runs.len());
    let nodes: u64 = runs
        .iter()
        .map(|e| e["args"]["nodes"].as_u64().unwrap())
        .sum();
    assert_eq!(op_slices(&trace).len() as u64, nodes);
    assert_eq!(trace["otherData"]["dropped_slices"], 0);
}
