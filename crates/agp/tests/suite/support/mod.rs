//! Helpers shared by the suite's test modules.

pub mod agents;
pub mod daemon;
pub mod hook;
pub mod journal;
pub mod looping;
pub mod pty;
pub mod webhook;

use std::process::Output;

/// The stdout of a run that must have exited 0 (`what` names it when it did not).
pub fn stdout_ok(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what} failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
