//! Exit codes shared by every subcommand (documented in `agp --help`).

use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything checked is fine.
    Ok = 0,
    /// The thing checked is bad: tampered journal, failing policy test, doctor found a problem.
    Bad = 1,
    /// Could not run: usage error, missing file, unreadable key.
    CannotRun = 2,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// Text appended to every `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  ok
  1  the thing checked is bad (tampered journal, failed policy test, doctor found a problem)
  2  could not run (usage error, missing file, unreadable key)";
