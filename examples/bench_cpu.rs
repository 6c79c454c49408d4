//! `cargo run --release --example bench_cpu -- [--reps N] [--json FILE]`: the CPU
//! convolution benchmark of `dynface bench --device cpu`, runnable before the CLI wires it.

use clap::Parser;
use dynface::bench::{run_bench, BenchArgs};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
}

fn main() -> anyhow::Result<()> {
    run_bench(&Cli::parse().bench)?;
    Ok(())
}
