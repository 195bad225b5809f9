mod blocks_snapshots;
mod daemon_controls;
mod daemon_loop;
mod secrets;
mod slack;
mod team;

/// A runtime of its own for a daemon a test kills: shutting it down drops every task, timer
/// and socket at once, as SIGKILL would.
fn killable_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}
