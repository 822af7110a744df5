//! The `hearth` binary.

use std::process::ExitCode;

use clap::Parser;
use hearth_node::cli::{Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The error chain on one line, without a backtrace: what went wrong and what to do.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
