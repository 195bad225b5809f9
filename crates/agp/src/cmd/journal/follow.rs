//! `--follow`: stop cleanly on SIGINT, SIGTERM or SIGHUP.
//!
//! The export loop is synchronous (file reads, a blocking HTTP client); the signals are caught
//! by a small tokio runtime on its own thread, which raises a flag the loop checks between
//! batches and while it waits. So a stop never cuts a batch in half: the batch being delivered
//! finishes, its cursor is saved, then the command exits 0.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cmd::interrupt::Interrupts;

/// How often the journal is looked at for new entries.
pub const POLL: Duration = Duration::from_millis(200);

static SIGNAL: OnceLock<&'static str> = OnceLock::new();

/// Installs the handlers; the flag turns true when one of the signals arrives.
pub fn install() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let raised = flag.clone();
    let (ready, installed) = std::sync::mpsc::channel::<Result<(), String>>();
    std::thread::Builder::new()
        .name("agp-export-signals".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready.send(Err(e.to_string()));
                    return;
                }
            };
            rt.block_on(async move {
                let mut signals = match Interrupts::install() {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready.send(Err(format!("{e:#}")));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                let name = signals.recv().await;
                let _ = SIGNAL.set(name);
                raised.store(true, Ordering::SeqCst);
            });
        })
        .context("cannot start the signal thread")?;
    installed
        .recv()
        .context("the signal thread ended")?
        .map_err(|e| anyhow::anyhow!("cannot install the signal handlers: {e}"))?;
    Ok(flag)
}

/// The signal that stopped the export, once one did.
pub fn signal_name() -> &'static str {
    SIGNAL.get().copied().unwrap_or("a signal")
}
