//! The `dynface` binary: the whole command line is `dynface::cli`.

fn main() -> std::process::ExitCode {
    dynface::cli::main()
}
