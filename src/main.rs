//! `confab`: parse the command line and run it (see [`confab::cli`]).

use std::process::ExitCode;

use clap::Parser;
use confab::cli::Cli;

fn main() -> ExitCode {
    // The logger starts in `run`, once the settings say in which format.
    match Cli::parse().run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("confab: {e}");
            e.exit_code()
        }
    }
}
