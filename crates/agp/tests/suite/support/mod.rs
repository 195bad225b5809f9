//! Helpers shared by the suite's test modules.

pub mod agents;
pub mod console;
pub mod daemon;
pub mod hook;
pub mod journal;
pub mod looping;
pub mod pty;
pub mod webhook;

use std::process::{Child, Output};
use std::time::{Duration, Instant};

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

/// The output of `child`, which must end within `bound`; killed and failed with `what` if not.
pub fn wait_exit(mut child: Child, bound: Duration, what: &str) -> Output {
    let deadline = Instant::now() + bound;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}
