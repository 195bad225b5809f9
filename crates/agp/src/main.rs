//! `agp`: the agent governance plane command line.

mod app;
mod cli;
mod cmd;
mod exit;

// The home layout is used by nearly every command: short path for it.
use app::home;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // `agp hook` runs once per tool call of a governed agent: it skips the full CLI parser.
    if let Some(code) = cmd::hook::fast_path() {
        return code.into();
    }
    // The harness's command wrapper inside `agp run`'s sandbox: as lean as the hook.
    if let Some(code) = cmd::tool_shell::fast_path() {
        return code;
    }
    let cli = cli::Cli::parse();
    match cmd::dispatch(cli) {
        Ok(code) => code.into(),
        Err(err) => {
            // One clear line per problem: the error and its context chain, outermost first.
            eprintln!("agp: error: {}", exit::one_line(&err));
            exit::Exit::CannotRun.into()
        }
    }
}
