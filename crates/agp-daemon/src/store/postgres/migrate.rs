//! Versioned migrations of the shared database: SQL files applied in order, each once, all
//! pending ones in one transaction under a transaction-scoped advisory lock, so daemons
//! starting together migrate once and none sees a half-migrated schema.

use super::{pg_err, StoreError};

/// The migrations, in order; the version is the position (1-based). Never edit a shipped file:
/// add the next one (later features add their tables this way).
pub const PG_MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_team_approvals.sql"),
    include_str!("migrations/0003_checkpoints.sql"),
];

/// The advisory lock key migrations hold ("agp-mig" in ASCII): any fixed number works as long
/// as every agp uses the same.
const MIGRATION_LOCK: i64 = 0x0061_6770_2d6d_6967;

pub(super) async fn migrate(client: &mut deadpool_postgres::Object) -> Result<i64, StoreError> {
    let tx = client.transaction().await.map_err(pg_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_err)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS agp_schema_migrations (
             version BIGINT PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(pg_err)?;
    let found: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM agp_schema_migrations",
            &[],
        )
        .await
        .map_err(pg_err)?
        .get(0);
    let known = PG_MIGRATIONS.len() as i64;
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }
    for (version, sql) in (1_i64..).zip(PG_MIGRATIONS).skip(found as usize) {
        tx.batch_execute(sql).await.map_err(pg_err)?;
        tx.execute(
            "INSERT INTO agp_schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(pg_err)?;
    }
    tx.commit().await.map_err(pg_err)?;
    Ok(known)
}
