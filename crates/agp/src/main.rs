//! `agp`: the agent governance plane command line.

mod cli;
mod cmd;
mod exit;
mod home;
mod limits;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // `agp hook` runs once per tool call of a governed agent: it skips the full CLI parser.
    if let Some(code) = cmd::hook::fast_path() {
        return code.into();
    }
    let cli = cli::Cli::parse();
    match cmd::dispatch(cli) {
        Ok(code) => code.into(),
        Err(err) => {
            // One clear line per problem: the error and its context chain, outermost first.
            eprintln!("agp: error: {err:#}");
            exit::Exit::CannotRun.into()
        }
    }
}
