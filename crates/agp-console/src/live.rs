//! Live updates: one watcher per console follows the journal folder (inotify through `notify`,
//! plus a slow tick in case an event is missed), catches the index up, and publishes the entry
//! count; every `/events` stream (server-sent events) sends `journal` when it changes, and the
//! page's script refetches its live region.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use notify::Watcher as _;
use tokio::sync::{mpsc, watch};

use crate::data::ConsoleData;
use crate::AppState;

/// Checked even without a file event (a watch that cannot be set, an event lost).
const TICK: Duration = Duration::from_secs(2);

/// The latest entry count, for every event stream.
#[derive(Clone)]
pub struct Live {
    rx: watch::Receiver<u64>,
}

pub struct Publisher {
    tx: watch::Sender<u64>,
}

pub fn channel() -> (Publisher, Live) {
    let (tx, rx) = watch::channel(0);
    (Publisher { tx }, Live { rx })
}

impl Publisher {
    /// Catches the index up now, then at each change of `journal_dir` (or tick) until every
    /// `Live` is gone. Runs on the current runtime.
    pub fn spawn(
        self,
        data: Arc<dyn ConsoleData>,
        journal_dir: &Path,
    ) -> tokio::task::JoinHandle<()> {
        let (kick, mut kicks) = mpsc::channel::<()>(1);
        let watcher = notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
            // Full means a catch-up is already due: nothing is lost by dropping this one.
            let _ = kick.try_send(());
        })
        .and_then(|mut w| {
            w.watch(journal_dir, notify::RecursiveMode::NonRecursive)
                .map(|()| w)
        });
        if let Err(e) = &watcher {
            tracing::warn!(
                "console: cannot watch {} ({e}); checking every {TICK:?}",
                journal_dir.display()
            );
        }
        tokio::spawn(async move {
            let _watcher = watcher;
            loop {
                let d = data.clone();
                match tokio::task::spawn_blocking(move || d.catch_up()).await {
                    Ok(Ok(n)) => {
                        self.tx.send_if_modified(|v| std::mem::replace(v, n) != n);
                    }
                    Ok(Err(e)) => tracing::warn!("console: index catch-up failed: {e}"),
                    Err(e) => tracing::warn!("console: index catch-up panicked: {e}"),
                }
                if self.tx.is_closed() {
                    return;
                }
                // Without a watcher (its sender is gone), the tick alone paces the loop.
                tokio::select! {
                    Some(()) = kicks.recv() => {}
                    () = tokio::time::sleep(TICK) => {}
                }
            }
        })
    }
}

/// `GET /events`: `journal` with the entry count now, then whenever it changes (the script
/// refreshes on each; the first one tells it the stream is up).
pub async fn events(
    State(st): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = st.live.rx.clone();
    let s = stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first {
            rx.changed().await.ok()?;
        }
        let n = *rx.borrow_and_update();
        let event = Event::default().event("journal").data(n.to_string());
        Some((Ok(event), (rx, false)))
    });
    Sse::new(s).keep_alive(KeepAlive::default())
}
