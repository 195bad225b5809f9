//! The Slack relay: the one daemon holding the team's Slack lease runs the Slack channel for
//! everyone's pending approvals and writes each outcome back to the shared store.
//!
//! Every daemon of a team with Slack runs this loop; only the lease holder connects to Slack.
//! The holder renews its lease every [`RelayOptions::renew`]; when a renewal says the lease is
//! gone, or none succeeded before the lease would have run out by this process's own clock
//! (PostgreSQL unreachable), it drops its Slack connection and its in-flight approvals at
//! once, so two daemons never hold Socket Mode connections together for longer than that.
//! A holder that dies (kill -9) stops renewing and another daemon takes the lease when it
//! expires, bumping the fencing token; every write the old holder could still attempt checks
//! the token in the same statement and is refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agp_contracts::{ApprovalChannel, ApprovalRequest, Journal};
use agp_daemon::store::contract::{wait_hint, StateStore, Topic};
use agp_daemon::store::{ChannelLease, PendingRow, PgStore, RelayWrite};
use tokio::task::JoinHandle;

use super::store::{PgPendingStore, CHANNEL};
use crate::channel::SlackChannel;
use crate::config::SlackConfig;
use crate::pending::PendingRecord;
use crate::socket::Backoff;

/// Pause of a daemon whose Slack channel would not start before it competes for the lease
/// again.
const START_RETRY: Duration = Duration::from_secs(5);

/// Timing of the lease loop.
#[derive(Debug, Clone, Copy)]
pub struct RelayOptions {
    /// How long a lease lasts without renewal: how soon a dead holder is replaced.
    pub ttl: Duration,
    /// How often the holder renews (well under `ttl`), and how often others try to take it.
    pub renew: Duration,
    /// Re-read the queue at least this often (NOTIFY hints are lost while disconnected).
    pub poll: Duration,
    /// Pending approvals relayed at once.
    pub batch: i64,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(3),
            renew: Duration::from_millis(750),
            poll: Duration::from_millis(500),
            batch: 200,
        }
    }
}

/// The relay loop of one daemon. Dropping it stops the loop (and the Slack connection, if it
/// holds the lease); [`SlackRelay::stop`] also gives the lease up for the next daemon.
pub struct SlackRelay {
    task: Option<JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Drop for SlackRelay {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl SlackRelay {
    /// Starts the loop on the current runtime. `holder` names this process uniquely among the
    /// team (member id plus process id).
    pub fn start(
        store: Arc<PgStore>,
        cfg: SlackConfig,
        journal: Option<Arc<dyn Journal>>,
        holder: String,
        options: RelayOptions,
    ) -> SlackRelay {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let relay = Relay {
            store,
            cfg,
            journal,
            holder,
            options,
        };
        SlackRelay {
            task: Some(tokio::spawn(relay.run(stopped))),
            stop,
        }
    }

    /// Stops relaying and releases the lease (waiting at most `within`), so another daemon
    /// takes over now rather than when the lease runs out.
    pub async fn stop(mut self, within: Duration) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(within, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

struct Relay {
    store: Arc<PgStore>,
    cfg: SlackConfig,
    journal: Option<Arc<dyn Journal>>,
    holder: String,
    options: RelayOptions,
}

type CallKey = (String, String, String);

fn key(row: &PendingRow) -> CallKey {
    (
        row.session.clone(),
        row.call_id.clone(),
        row.input_sha256.clone(),
    )
}

impl Relay {
    fn ttl_ms(&self) -> i64 {
        self.options.ttl.as_millis() as i64
    }

    async fn run(self, mut stopped: tokio::sync::watch::Receiver<bool>) {
        let me = Arc::new(self);
        loop {
            if *stopped.borrow() {
                return;
            }
            match me
                .store
                .acquire_channel_lease(CHANNEL, &me.holder, me.ttl_ms())
                .await
            {
                Ok(Some(lease)) => {
                    tracing::info!(holder = %me.holder, token = lease.fencing_token,
                        "took the team's Slack lease; relaying approvals");
                    let lease = me.clone().serve(lease, &mut stopped).await;
                    if let Some(lease) = lease {
                        // Stopping: hand over at once.
                        let _ = me.store.release_channel_lease(&lease).await;
                        return;
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::debug!("cannot check the team's Slack lease: {e}"),
            }
            tokio::select! {
                () = tokio::time::sleep(me.options.renew) => {}
                _ = stopped.changed() => {}
            }
        }
    }

    /// Relays while the lease holds; returns the lease when asked to stop, `None` when lost.
    async fn serve(
        self: Arc<Self>,
        mut lease: ChannelLease,
        stopped: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Option<ChannelLease> {
        // Held by this clock until: a renewal that does not come back in time ends it.
        let mut held_until = Instant::now() + self.options.ttl;
        let records = Arc::new(PgPendingStore::new(self.store.clone(), lease.clone()));
        let mut builder = SlackChannel::builder(self.cfg.clone(), records).backoff(Backoff {
            min: Duration::from_millis(250),
            max: self.cfg.max_backoff,
        });
        if let Some(j) = &self.journal {
            builder = builder.journal(j.clone());
        }
        let channel = match builder.start().await {
            Ok(c) => Arc::new(c),
            Err(e) => {
                // Another daemon may do better (its network, its clock); this one waits before
                // asking Slack again, so the team does not hammer a refusing Slack.
                tracing::warn!("the Slack relay cannot start the Slack channel: {e}");
                let _ = self.store.release_channel_lease(&lease).await;
                tokio::select! {
                    () = tokio::time::sleep(START_RETRY) => {}
                    _ = stopped.changed() => {}
                }
                return None;
            }
        };
        let mut inflight: HashMap<CallKey, JoinHandle<()>> = HashMap::new();
        let mut hints = self.store.wakeups(Topic::Approvals);
        let mut renew = tokio::time::interval(self.options.renew);
        let outcome = loop {
            if *stopped.borrow() {
                break Some(lease.clone());
            }
            hints.borrow_and_update();
            match self
                .store
                .claim_team_approvals(&lease, self.options.batch)
                .await
            {
                Ok(rows) => self.sync(&channel, &lease, rows, &mut inflight),
                Err(e) => tracing::debug!("cannot read the team's approvals: {e}"),
            }
            self.withdraw_settled(&channel).await;
            tokio::select! {
                () = wait_hint(&mut hints, self.options.poll) => {}
                _ = stopped.changed() => {}
                _ = renew.tick() => {
                    let asked = Instant::now();
                    match self.store.renew_channel_lease(&mut lease, self.ttl_ms()).await {
                        Ok(true) => held_until = asked + self.options.ttl,
                        Ok(false) => {
                            tracing::warn!(holder = %self.holder, "lost the team's Slack lease");
                            break None;
                        }
                        Err(e) => tracing::warn!("cannot renew the team's Slack lease: {e}"),
                    }
                    if Instant::now() >= held_until {
                        tracing::warn!("the team's Slack lease ran out unrenewed; stepping down");
                        break None;
                    }
                }
            }
        };
        for (_, task) in inflight.drain() {
            task.abort();
        }
        drop(channel);
        outcome
    }

    /// Starts relaying newly claimed approvals and forgets finished ones. An approval is
    /// never dropped for missing from this pass's claims (a batch is bounded, and members'
    /// clocks order it): its prompt is withdrawn only once its row says it was settled
    /// ([`Self::withdraw_settled`]), which also ends its task.
    fn sync(
        self: &Arc<Self>,
        channel: &Arc<SlackChannel>,
        lease: &ChannelLease,
        rows: Vec<PendingRow>,
        inflight: &mut HashMap<CallKey, JoinHandle<()>>,
    ) {
        inflight.retain(|_, task| !task.is_finished());
        for row in rows {
            let k = key(&row);
            if inflight.contains_key(&k) {
                continue;
            }
            let Ok(request) = serde_json::from_str::<ApprovalRequest>(&row.request_json) else {
                tracing::error!(call = %row.call_id, "a pending approval's request does not read");
                continue;
            };
            let task =
                tokio::spawn(
                    self.clone()
                        .relay_one(channel.clone(), lease.clone(), row, request),
                );
            inflight.insert(k, task);
        }
    }

    /// Withdraws prompts still open in Slack for approvals their daemon settled while no relay
    /// watched them (settled before this holder took over, or by a predecessor that died
    /// before withdrawing): their buttons go, and a later click is refused as replayed.
    async fn withdraw_settled(&self, channel: &SlackChannel) {
        let records = match self.store.settled_channel_records(CHANNEL).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("cannot read the Slack records: {e}");
                return;
            }
        };
        for json in records {
            match serde_json::from_str::<PendingRecord>(&json) {
                Ok(r) => {
                    channel
                        .cancel(&r.request, "settled by the daemon that asked")
                        .await;
                }
                Err(e) => tracing::error!("a Slack record does not read: {e}"),
            }
        }
    }

    /// Puts one approval to Slack and stores the outcome for the daemon that asked, retrying
    /// the write while the store is unreachable (the decision is kept in the Slack record
    /// meanwhile, so a successor relays it too). A channel error (the shared store failing
    /// mid-post, say) is not an outcome: the approval is put again (re-attaching to its
    /// record) until it is decided, it expires, or this holder loses the lease.
    async fn relay_one(
        self: Arc<Self>,
        channel: Arc<SlackChannel>,
        lease: ChannelLease,
        row: PendingRow,
        request: ApprovalRequest,
    ) {
        let outcome = loop {
            match channel.request_approval(&request).await {
                Ok(o) => break o,
                Err(e) => {
                    tracing::warn!(call = %row.call_id, "cannot relay an approval yet: {e}");
                    tokio::time::sleep(self.options.renew).await;
                }
            }
        };
        let Ok(json) = serde_json::to_string(&outcome) else {
            return;
        };
        loop {
            match self.store.relay_outcome(&lease, &row, &json).await {
                Ok(RelayWrite::Written) => {
                    tracing::info!(call = %row.call_id, "relayed a Slack decision");
                    return;
                }
                Ok(RelayWrite::Settled | RelayWrite::Fenced) => return,
                Err(e) => {
                    tracing::warn!(call = %row.call_id, "cannot store a Slack decision yet: {e}");
                    tokio::time::sleep(self.options.poll).await;
                }
            }
        }
    }
}
