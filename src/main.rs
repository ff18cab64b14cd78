//! `confab`: parse the command line and run it (see [`confab::cli`]).

use std::process::ExitCode;

use clap::Parser;
use confab::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or(cli.default_log_level()),
    )
    .init();
    match cli.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("confab: {e}");
            e.exit_code()
        }
    }
}
