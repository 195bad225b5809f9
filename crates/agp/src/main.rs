//! `agp`: the agent governance plane command line.

mod cli;
mod cmd;
mod exit;
mod home;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
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
