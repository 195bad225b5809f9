//! One approval queue for the team (PostgreSQL only): the lease on an approval channel's
//! connection, the relay's claims and outcomes, and the channel's own shared records.
//!
//! Exactly one daemon at a time holds a channel's lease (`channel_leases`, judged by the
//! database's clock so hosts' clocks do not matter). Every write the holder makes on the
//! team's behalf checks its fencing token in the same statement: a holder that lost the lease
//! (paused, partitioned, replaced) writes nothing, even if it has not noticed yet.

use serde::Serialize;

use super::rows::pending_row;
use super::{pg_err, PgStore};
use crate::store::{PendingRow, StoreError};

/// A lease this process holds on channel `name`, as granted by the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelLease {
    pub name: String,
    pub holder: String,
    pub fencing_token: i64,
    /// On the database's clock.
    pub expires_at_ms: i64,
}

/// Who holds a channel's lease, as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseHolder {
    pub holder: String,
    pub fencing_token: i64,
    pub expires_at_ms: i64,
    /// Not expired by the database's clock.
    pub live: bool,
}

/// True while `$1, $2, $3` (name, holder, fencing token) still hold a live lease.
const FENCE: &str = "EXISTS (SELECT 1 FROM channel_leases l WHERE l.name = $1 AND \
     l.holder = $2 AND l.fencing_token = $3 AND l.expires_at_ms > agp_now_ms())";

/// What became of a relayed outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayWrite {
    /// Stored: the asking daemon will read it.
    Written,
    /// Not stored: the approval was settled (or decided) already.
    Settled,
    /// Not stored: this lease is no longer held.
    Fenced,
}

impl PgStore {
    /// Takes channel `name`'s lease for `ttl_ms` when it is free or expired (or already this
    /// holder's, after a restart with the same id), bumping the fencing token; `None` while
    /// another holder's lease is live.
    pub async fn acquire_channel_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<Option<ChannelLease>, StoreError> {
        let row = self
            .query_opt(
                "INSERT INTO channel_leases AS c
                     (name, holder, fencing_token, acquired_at_ms, expires_at_ms)
                 VALUES ($1, $2, 1, agp_now_ms(), agp_now_ms() + $3)
                 ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder,
                     fencing_token = c.fencing_token + 1,
                     acquired_at_ms = EXCLUDED.acquired_at_ms,
                     expires_at_ms = EXCLUDED.expires_at_ms
                 WHERE c.expires_at_ms <= agp_now_ms() OR c.holder = EXCLUDED.holder
                 RETURNING fencing_token, expires_at_ms",
                &[&name, &holder, &ttl_ms],
            )
            .await?;
        row.map(|r| {
            Ok(ChannelLease {
                name: name.to_owned(),
                holder: holder.to_owned(),
                fencing_token: r.try_get(0).map_err(pg_err)?,
                expires_at_ms: r.try_get(1).map_err(pg_err)?,
            })
        })
        .transpose()
    }

    /// Extends a live lease by `ttl_ms` from now; `false` when it is no longer held (expired
    /// or taken over), and the holder must stop acting on the channel.
    pub async fn renew_channel_lease(
        &self,
        lease: &mut ChannelLease,
        ttl_ms: i64,
    ) -> Result<bool, StoreError> {
        let row = self
            .query_opt(
                &format!(
                    "UPDATE channel_leases SET expires_at_ms = agp_now_ms() + $4
                     WHERE name = $1 AND holder = $2 AND fencing_token = $3 AND {FENCE}
                     RETURNING expires_at_ms"
                ),
                &[&lease.name, &lease.holder, &lease.fencing_token, &ttl_ms],
            )
            .await?;
        match row {
            Some(r) => {
                lease.expires_at_ms = r.try_get(0).map_err(pg_err)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Gives the lease up (a daemon stopping): the next daemon takes it at once.
    pub async fn release_channel_lease(&self, lease: &ChannelLease) -> Result<(), StoreError> {
        self.execute(
            "UPDATE channel_leases SET expires_at_ms = 0
             WHERE name = $1 AND holder = $2 AND fencing_token = $3",
            &[&lease.name, &lease.holder, &lease.fencing_token],
        )
        .await?;
        Ok(())
    }

    pub async fn channel_lease(&self, name: &str) -> Result<Option<LeaseHolder>, StoreError> {
        let row = self
            .query_opt(
                "SELECT holder, fencing_token, expires_at_ms, expires_at_ms > agp_now_ms()
                 FROM channel_leases WHERE name = $1",
                &[&name],
            )
            .await?;
        row.map(|r| {
            Ok(LeaseHolder {
                holder: r.try_get(0).map_err(pg_err)?,
                fencing_token: r.try_get(1).map_err(pg_err)?,
                expires_at_ms: r.try_get(2).map_err(pg_err)?,
                live: r.try_get(3).map_err(pg_err)?,
            })
        })
        .transpose()
    }

    /// The team's pending approvals with no relayed outcome yet (any member's), oldest first,
    /// marked as relayed by `lease` until it expires. Nothing while the lease is not held.
    pub async fn claim_team_approvals(
        &self,
        lease: &ChannelLease,
        limit: i64,
    ) -> Result<Vec<PendingRow>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "UPDATE pending_approvals SET relay_owner = $2,
                         relay_until_ms = (SELECT expires_at_ms FROM channel_leases WHERE name = $1)
                     WHERE (session, call_id) IN (
                         SELECT session, call_id FROM pending_approvals
                         WHERE status = 'pending' AND outcome_json IS NULL
                         ORDER BY created_at_ms, session, call_id LIMIT $4
                         FOR UPDATE SKIP LOCKED)
                       AND {FENCE}
                     RETURNING session, call_id, input_sha256, request_json, expires_at_ms,
                         created_at_ms"
                ),
                &[&lease.name, &lease.holder, &lease.fencing_token, &limit],
            )
            .await?;
        let mut keyed = rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get::<_, i64>("created_at_ms").map_err(pg_err)?,
                    pending_row(r)?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        keyed.sort_by(|a, b| {
            (a.0, &a.1.session, &a.1.call_id).cmp(&(b.0, &b.1.session, &b.1.call_id))
        });
        Ok(keyed.into_iter().map(|(_, row)| row).collect())
    }

    /// Stores the channel's outcome of a pending approval for the daemon that asked, once, and
    /// only while `lease` is held (checked in the same statement).
    pub async fn relay_outcome(
        &self,
        lease: &ChannelLease,
        row: &PendingRow,
        outcome_json: &str,
    ) -> Result<RelayWrite, StoreError> {
        let written = self
            .execute(
                &format!(
                    "UPDATE pending_approvals
                     SET outcome_json = $7, outcome_by = $2, outcome_at_ms = agp_now_ms()
                     WHERE session = $4 AND call_id = $5 AND input_sha256 = $6
                       AND status = 'pending' AND outcome_json IS NULL AND {FENCE}"
                ),
                &[
                    &lease.name,
                    &lease.holder,
                    &lease.fencing_token,
                    &row.session,
                    &row.call_id,
                    &row.input_sha256,
                    &outcome_json,
                ],
            )
            .await?;
        if written == 1 {
            return Ok(RelayWrite::Written);
        }
        let held = self
            .query_opt(
                &format!("SELECT 1 WHERE {FENCE}"),
                &[&lease.name, &lease.holder, &lease.fencing_token],
            )
            .await?
            .is_some();
        Ok(if held {
            RelayWrite::Settled
        } else {
            RelayWrite::Fenced
        })
    }

    /// The relayed outcome (JSON) of exactly this call and input, once there is one.
    pub async fn relayed_outcome(
        &self,
        session: &str,
        call_id: &str,
        input_sha256: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = self
            .query_opt(
                "SELECT outcome_json FROM pending_approvals
                 WHERE session = $1 AND call_id = $2 AND input_sha256 = $3
                   AND outcome_json IS NOT NULL",
                &[&session, &call_id, &input_sha256],
            )
            .await?;
        row.map(|r| r.try_get(0).map_err(pg_err)).transpose()
    }

    /// Saves the channel's record `nonce` (inserting or replacing it) while `lease` is held;
    /// `false` when the lease is not held and nothing was written.
    #[allow(clippy::too_many_arguments)]
    pub async fn save_channel_record(
        &self,
        lease: &ChannelLease,
        nonce: &str,
        session: &str,
        call_id: &str,
        input_sha256: &str,
        decided: bool,
        expires_at_ms: i64,
        record_json: &str,
    ) -> Result<bool, StoreError> {
        let n = self
            .execute(
                &format!(
                    "INSERT INTO channel_records (channel, nonce, session, call_id, input_sha256,
                         decided, expires_at_ms, record_json)
                     SELECT $1, $4, $5, $6, $7, $8, $9, $10 WHERE {FENCE}
                     ON CONFLICT (channel, nonce) DO UPDATE
                     SET decided = EXCLUDED.decided, record_json = EXCLUDED.record_json"
                ),
                &[
                    &lease.name,
                    &lease.holder,
                    &lease.fencing_token,
                    &nonce,
                    &session,
                    &call_id,
                    &input_sha256,
                    &decided,
                    &expires_at_ms,
                    &record_json,
                ],
            )
            .await?;
        Ok(n == 1)
    }

    pub async fn channel_record(
        &self,
        channel: &str,
        nonce: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = self
            .query_opt(
                "SELECT record_json FROM channel_records WHERE channel = $1 AND nonce = $2",
                &[&channel, &nonce],
            )
            .await?;
        row.map(|r| r.try_get(0).map_err(pg_err)).transpose()
    }

    pub async fn channel_record_for_call(
        &self,
        channel: &str,
        session: &str,
        call_id: &str,
        input_sha256: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = self
            .query_opt(
                "SELECT record_json FROM channel_records
                 WHERE channel = $1 AND session = $2 AND call_id = $3 AND input_sha256 = $4",
                &[&channel, &session, &call_id, &input_sha256],
            )
            .await?;
        row.map(|r| r.try_get(0).map_err(pg_err)).transpose()
    }

    /// Records not decided yet, soonest expiry first.
    pub async fn undecided_channel_records(
        &self,
        channel: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rows = self
            .query(
                "SELECT record_json FROM channel_records
                 WHERE channel = $1 AND NOT decided ORDER BY expires_at_ms",
                &[&channel],
            )
            .await?;
        rows.iter().map(|r| r.try_get(0).map_err(pg_err)).collect()
    }

    /// Undecided records whose approval is no longer pending for the team (the asking daemon
    /// settled it itself, or it is gone): prompts the holder must withdraw.
    pub async fn settled_channel_records(&self, channel: &str) -> Result<Vec<String>, StoreError> {
        let rows = self
            .query(
                "SELECT r.record_json FROM channel_records r
                 LEFT JOIN pending_approvals p ON p.session = r.session
                     AND p.call_id = r.call_id AND p.input_sha256 = r.input_sha256
                 WHERE r.channel = $1 AND NOT r.decided
                   AND (p.status IS NULL OR p.status <> 'pending')
                 ORDER BY r.expires_at_ms",
                &[&channel],
            )
            .await?;
        rows.iter().map(|r| r.try_get(0).map_err(pg_err)).collect()
    }

    /// `false` when the lease is not held and nothing was removed.
    pub async fn remove_channel_record(
        &self,
        lease: &ChannelLease,
        nonce: &str,
    ) -> Result<bool, StoreError> {
        let n = self
            .execute(
                &format!(
                    "DELETE FROM channel_records WHERE channel = $1 AND nonce = $4 AND {FENCE}"
                ),
                &[&lease.name, &lease.holder, &lease.fencing_token, &nonce],
            )
            .await?;
        Ok(n == 1 || self.channel_record(&lease.name, nonce).await?.is_none())
    }

    pub async fn channel_root(
        &self,
        channel: &str,
        session: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = self
            .query_opt(
                "SELECT root FROM channel_roots WHERE channel = $1 AND session = $2",
                &[&channel, &session],
            )
            .await?;
        row.map(|r| r.try_get(0).map_err(pg_err)).transpose()
    }

    /// `false` when the lease is not held and nothing was written.
    pub async fn set_channel_root(
        &self,
        lease: &ChannelLease,
        session: &str,
        place: &str,
        root: &str,
    ) -> Result<bool, StoreError> {
        let n = self
            .execute(
                &format!(
                    "INSERT INTO channel_roots (channel, session, place, root)
                     SELECT $1, $4, $5, $6 WHERE {FENCE}
                     ON CONFLICT (channel, session) DO UPDATE
                     SET place = EXCLUDED.place, root = EXCLUDED.root"
                ),
                &[
                    &lease.name,
                    &lease.holder,
                    &lease.fencing_token,
                    &session,
                    &place,
                    &root,
                ],
            )
            .await?;
        Ok(n == 1)
    }
}
