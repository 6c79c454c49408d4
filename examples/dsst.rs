//! `dsst build` until the CLI wires it as `dynface dsst build`:
//! `cargo run --release --example dsst -- build --faces ../shared/data/faces/hq -o weights/dsst.json`

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    dsst: dynface::dsst::DsstArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    dynface::dsst::run_dsst(&cli.dsst)?;
    Ok(())
}
