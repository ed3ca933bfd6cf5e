//! slicectl, the command-line client of Slicebed: parses the command line, runs one command against
//! `slice-service` over gRPC, and prints a table or JSON. It never prints a panic or a debug dump:
//! every failure becomes one `error: ...` line on stderr and a non-zero exit code.

pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod ctx;
pub mod errors;
pub mod output;
pub mod quantity;
pub mod timefmt;
pub mod wait;
pub mod watch;

use std::process::ExitCode;

use clap::Parser;

/// Runs slicectl with the process's arguments and returns its exit code.
pub fn main() -> ExitCode {
    errors::install_panic_hook();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return errors::report_clap(e),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(commands::run(cli));
    // A blocking read of stdin (`shell`) cannot be cancelled; do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(errors::Exit(code)) = e.downcast_ref::<errors::Exit>() {
                return ExitCode::from(*code);
            }
            eprintln!("error: {}", errors::describe(&e));
            ExitCode::FAILURE
        }
    }
}
