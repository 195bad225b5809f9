//! The signals that end an `agp run` early (Ctrl-C, `kill`, a closed terminal). Caught instead
//! of dying on them, so the session is ended as interrupted, its pending approvals are cancelled
//! and journaled, and its temporary copies are removed.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Status a session gets when a signal ended its run.
pub const INTERRUPTED: &str = "interrupted";

pub struct Interrupts {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Interrupts {
    /// Installs the handlers; must run inside a tokio runtime.
    pub fn install() -> Result<Self> {
        let on = |kind| signal(kind).context("cannot install a signal handler");
        Ok(Self {
            int: on(SignalKind::interrupt())?,
            term: on(SignalKind::terminate())?,
            hup: on(SignalKind::hangup())?,
        })
    }

    /// Completes with the name of the first signal that arrives.
    pub async fn recv(&mut self) -> &'static str {
        let name = tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        };
        CAUGHT.store(true, Ordering::SeqCst);
        name
    }
}

static CAUGHT: AtomicBool = AtomicBool::new(false);

/// True once a signal was caught: progress lines printed after it would only confuse.
pub fn caught() -> bool {
    CAUGHT.load(Ordering::SeqCst)
}

/// One line on stderr; the run then exits 2 (it could not run to its end).
pub fn report(agp: &str, signal: &str, session: &str) {
    // The line starts on its own even when a prompt was left mid-line. After SIGHUP the
    // terminal may be gone: a failed write must not abort the clean-up that follows.
    let _ = writeln!(
        std::io::stderr(),
        "\nagp: interrupted by {signal}: session {session} ended as {INTERRUPTED}, its pending \
         approvals cancelled; timeline: `{agp} sessions show {session}`"
    );
}
