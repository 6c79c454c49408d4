//! The `dynface` command line. Each subcommand's logic lives in the library; this file only
//! parses arguments and maps results to exit codes.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "dynface",
    version,
    about = "DynFaceRestore face restoration: diffusion posterior sampling with dynamic blur-level guidance",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the engine's build facts: backends compiled in, threads, version.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r: anyhow::Result<ExitCode> = match cli.cmd {
        Cmd::Version => {
            println!("dynface {}", env!("CARGO_PKG_VERSION"));
            println!("cpu threads: {}", rayon::current_num_threads());
            Ok(ExitCode::SUCCESS)
        }
    };
    match r {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
