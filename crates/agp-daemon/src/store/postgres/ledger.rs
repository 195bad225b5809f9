//! Published checkpoints in the shared database (team mode, `agp verify --team`): each member
//! daemon publishes every checkpoint its journal writes; auditors read them all back.
//!
//! Separate from [`super::PgStore`]: publishing runs in the background on its own small pool,
//! so a slow or absent database never takes a connection a tool call is waiting for, and the
//! verifier reads the rows without the store's LISTEN connection. The table is insert-only
//! (migration 0003 refuses updates and deletes); an identical note is stored once, a different
//! note for the same origin and size is stored too: that fork is what the verifier reports.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use super::{migrate, pg_err, pool_err, TIMEOUT};
use crate::store::StoreError;

/// Connections of a ledger: publishing is one statement at a time.
const POOL_SIZE: usize = 2;

/// A checkpoint to publish (the publisher parsed the note; the verifier re-parses it and
/// trusts only its own reading).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCheckpoint {
    pub origin: String,
    pub size: u64,
    /// Hex of the tree root.
    pub root: String,
    /// The whole signed note.
    pub note: String,
    /// The verifier key the member says signs its journal.
    pub key: String,
}

/// A published row as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PublishedRow {
    pub id: i64,
    pub member: String,
    pub host: String,
    pub origin: String,
    pub size: u64,
    pub root: String,
    pub note: String,
    pub key: String,
    /// Milliseconds since the Unix epoch.
    pub published_at_ms: i64,
}

pub struct PgLedger {
    pool: Pool,
    member: String,
    host: String,
}

impl PgLedger {
    /// Connects to `url`, applying pending migrations. Rows it publishes are tagged `member`
    /// and this machine's host name.
    pub async fn connect(url: &str, member: &str) -> Result<Self, StoreError> {
        let ledger = Self::reader(url, member)?;
        {
            let mut client = ledger.pool.get().await.map_err(pool_err)?;
            migrate::migrate(&mut client).await?;
        }
        Ok(ledger)
    }

    /// A ledger for reading only (an auditor's `agp verify --team`): no migration is applied,
    /// so an account that may only read the table will do. Connects at the first query.
    pub fn reader(url: &str, member: &str) -> Result<Self, StoreError> {
        let (mut config, tls) = super::tls::connect_config(url)?;
        config
            .connect_timeout(TIMEOUT)
            .application_name(format!("agp ledger {member}"));
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Verified,
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
        Ok(Self {
            pool,
            member: member.to_owned(),
            host: host_name(),
        })
    }

    pub fn member(&self) -> &str {
        &self.member
    }

    /// Publishes `batch` in one statement; returns how many rows were new (an identical note
    /// already there is not stored again).
    pub async fn publish(&self, batch: &[NewCheckpoint]) -> Result<u64, StoreError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let client = self.pool.get().await.map_err(pool_err)?;
        let statement = client
            .prepare_cached(
                "INSERT INTO published_checkpoints
                     (member, host, origin, size, root, note, note_sha256, key)
                 SELECT $1, $2, o, s, r, n, encode(sha256(convert_to(n, 'UTF8')), 'hex'), k
                 FROM unnest($3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[])
                     AS t(o, s, r, n, k)
                 ON CONFLICT (origin, size, note_sha256) DO NOTHING",
            )
            .await
            .map_err(pg_err)?;
        let origins: Vec<&str> = batch.iter().map(|c| c.origin.as_str()).collect();
        let sizes = batch
            .iter()
            .map(|c| i64::try_from(c.size))
            .collect::<Result<Vec<i64>, _>>()
            .map_err(|_| StoreError::Invalid("a checkpoint size beyond 2^63".into()))?;
        let roots: Vec<&str> = batch.iter().map(|c| c.root.as_str()).collect();
        let notes: Vec<&str> = batch.iter().map(|c| c.note.as_str()).collect();
        let keys: Vec<&str> = batch.iter().map(|c| c.key.as_str()).collect();
        client
            .execute(
                &statement,
                &[
                    &self.member,
                    &self.host,
                    &origins,
                    &sizes,
                    &roots,
                    &notes,
                    &keys,
                ],
            )
            .await
            .map_err(pg_err)
    }

    /// The largest size published for `origin` and every note published at that size: where
    /// a restarted publisher resumes.
    pub async fn latest(&self, origin: &str) -> Result<Option<(u64, Vec<String>)>, StoreError> {
        let client = self.pool.get().await.map_err(pool_err)?;
        let rows = client
            .query(
                "SELECT size, note FROM published_checkpoints
                 WHERE origin = $1
                   AND size = (SELECT MAX(size) FROM published_checkpoints WHERE origin = $1)",
                &[&origin],
            )
            .await
            .map_err(pg_err)?;
        let mut size = None;
        let mut notes = Vec::new();
        for r in rows {
            size = Some(r.get::<_, i64>(0).max(0) as u64);
            notes.push(r.get(1));
        }
        Ok(size.map(|s| (s, notes)))
    }

    /// Every published row, by origin, then size, then publication order.
    pub async fn all(&self) -> Result<Vec<PublishedRow>, StoreError> {
        let client = self.pool.get().await.map_err(pool_err)?;
        let rows = client
            .query(
                "SELECT id, member, host, origin, size, root, note, key,
                        (EXTRACT(EPOCH FROM published_at) * 1000)::BIGINT
                 FROM published_checkpoints ORDER BY origin, size, id",
                &[],
            )
            .await
            .map_err(pg_err)?;
        Ok(rows
            .iter()
            .map(|r| PublishedRow {
                id: r.get(0),
                member: r.get(1),
                host: r.get(2),
                origin: r.get(3),
                size: r.get::<_, i64>(4).max(0) as u64,
                root: r.get(5),
                note: r.get(6),
                key: r.get(7),
                published_at_ms: r.get(8),
            })
            .collect())
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
