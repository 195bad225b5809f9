//! The store contract on PostgreSQL (team mode): many daemons, one database.
//!
//! Driver: tokio-postgres (async, pipelined, and its connection yields NOTIFY messages, which
//! LISTEN needs) with deadpool-postgres for the pool; chosen over sqlx because nothing here
//! wants compile-time checked queries against a live database or a second runtime abstraction,
//! and the two crates are small. A pooled connection is handed out again unless its driver saw
//! it close (deadpool's `Fast` recycling): a server that stops or restarts closes every
//! session (and says so), so the next call gets a fresh connection. Verifying each checkout
//! with an empty query (`Verified`) cost one more round trip per statement, half of an allowed
//! call's round trips (`agp bench gateway --daemons 3`); a connection that died unseen fails
//! its one statement as [`StoreError::Unavailable`] (that call is refused, fail closed) and is
//! not reused. A server that is down gives `Unavailable` within [`TIMEOUT`], never a hang.
//!
//! Wake-ups: one extra connection LISTENs to the migrations' NOTIFY channels and bumps a
//! counter per topic; after every (re)connect it bumps all of them, since notifications sent
//! while it was away are lost: listeners re-read on every bump, and poll slowly anyway.

mod ledger;
mod migrate;
mod ops;
mod rows;
mod team;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_postgres::AsyncMessage;

use super::contract::Topic;
use super::sqlite::Hints;
use super::StoreError;

pub use ledger::{NewCheckpoint, PgLedger, PublishedRow};
pub use migrate::PG_MIGRATIONS;
pub use team::{ChannelLease, LeaseHolder, RelayWrite};

/// How long connecting, or waiting for a pooled connection, may take before the store says
/// it is unavailable.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Connections per daemon: a call takes one for a few statements.
const POOL_SIZE: usize = 16;
/// Pause between attempts of the LISTEN connection to reconnect.
const RELISTEN_AFTER: Duration = Duration::from_secs(1);

pub struct PgStore {
    pool: Pool,
    member: String,
    hints: Arc<Hints>,
    /// How many times the LISTEN connection has been (re)established.
    listens: watch::Receiver<u64>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://…`), applies pending migrations and starts listening for
    /// hints. Rows this daemon writes are tagged `member`.
    pub async fn connect(url: &str, member: &str) -> Result<Self, StoreError> {
        let (mut config, tls) = tls::connect_config(url)?;
        config
            .connect_timeout(TIMEOUT)
            .application_name(format!("agp {member}"));
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(TIMEOUT))
            .create_timeout(Some(TIMEOUT))
            .recycle_timeout(Some(TIMEOUT))
            .build()
            .map_err(|e| StoreError::Invalid(format!("connection pool: {e}")))?;
        {
            let mut client = pool.get().await.map_err(pool_err)?;
            migrate::migrate(&mut client).await?;
        }
        let hints = Arc::new(Hints::new());
        let (listened, listens) = watch::channel(0);
        let listener = tokio::spawn(listen(config, tls, hints.clone(), listened));
        Ok(Self {
            pool,
            member: member.to_owned(),
            hints,
            listens,
            listener,
        })
    }

    /// Changes each time the LISTEN connection is (re)established (and every topic hinted).
    pub fn listens(&self) -> watch::Receiver<u64> {
        self.listens.clone()
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_err)
    }
}

/// Holds a LISTEN connection for as long as the store lives, reconnecting when it drops.
async fn listen(
    config: tokio_postgres::Config,
    tls: tls::MakeTls,
    hints: Arc<Hints>,
    listened: watch::Sender<u64>,
) {
    loop {
        if let Ok((client, mut connection)) = config.connect(tls.clone()).await {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let driver = tokio::spawn(async move {
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(message) = messages.next().await {
                    if tx.send(message).is_err() {
                        break;
                    }
                }
            });
            let channels: String = Topic::ALL
                .iter()
                .map(|t| format!("LISTEN {};", t.channel()))
                .collect();
            if client.batch_execute(&channels).await.is_ok() {
                // Whatever was notified while no one listened is lost: everyone re-reads.
                hints.hint_all();
                listened.send_modify(|n| *n += 1);
                while let Some(Ok(message)) = rx.recv().await {
                    if let AsyncMessage::Notification(n) = message {
                        if let Some(topic) =
                            Topic::ALL.into_iter().find(|t| t.channel() == n.channel())
                        {
                            hints.hint(topic);
                        }
                    }
                }
            }
            driver.abort();
            tracing::warn!("shared state: the LISTEN connection dropped; reconnecting");
        }
        tokio::time::sleep(RELISTEN_AFTER).await;
    }
}

/// A pool that cannot hand out a connection: the server is down or unreachable.
#[allow(clippy::needless_pass_by_value)] // the shape `map_err` takes
fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    use deadpool_postgres::PoolError;
    StoreError::Unavailable(match &e {
        PoolError::Backend(e) => tls::with_fix(with_sources(e)),
        PoolError::Timeout(_) => format!("no connection within {}s", TIMEOUT.as_secs()),
        _ => with_sources(&e),
    })
}

/// `e` and its causes, on one line (tokio-postgres says "error connecting to server" and
/// keeps the why in its source).
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.replace('\n', " ")
}

/// Errors of the server about the connection itself (class 08 connection exception, 53
/// insufficient resources, 57 operator intervention such as a shutdown) and errors without a
/// server answer (I/O, closed) mean the state is unavailable; others are the query's.
#[allow(clippy::needless_pass_by_value)] // the shape `map_err` takes
pub(super) fn pg_err(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) if !["08", "53", "57"].contains(&&db.code().code()[..2]) => {
            StoreError::Postgres(db.to_string())
        }
        _ => StoreError::Unavailable(with_sources(&e)),
    }
}
