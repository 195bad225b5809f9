//! Where egress attempts are reported.

use std::sync::{Arc, Mutex};

use agp_contracts::events::{
    EgressAllowed, EgressDenied, EgressRequest, EgressUpstreamFailed, Event,
};
use agp_contracts::Journal;
use serde::Serialize;

/// One connection attempt through the proxy, as judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EgressAttempt {
    /// `CONNECT`, or the HTTP method of a plain proxy request; empty when the request could not
    /// be parsed.
    pub method: String,
    /// Destination host (normalized), when one could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub allowed: bool,
    /// Why it was allowed or refused.
    pub reason: String,
    /// Host pid of the connecting process (`SO_PEERCRED`): a hint, not an identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_pid: Option<i32>,
}

/// How connecting to the upstream of an allowed attempt went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpstreamOutcome {
    pub host: String,
    pub port: u16,
    /// `None` when connected; else why not (the model API unreachable shows up here).
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_pid: Option<i32>,
}

/// One request (or a summarized burst of identical ones) through an inspected host.
///
/// The path is journaled without the query: queries routinely carry tokens and personal data
/// (`?access_token=`, `?email=`), and the rules never look at them, so the path alone says what
/// was judged without copying secrets into a signed, append-only journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestReport {
    pub host: String,
    pub port: u16,
    pub method: String,
    pub path: String,
    pub allowed: bool,
    /// What decided: a rule (`rule 2 (allow GET /v1/)`), the default, the judge, or a check
    /// (fronting, framing, address).
    pub rule: String,
    pub reason: String,
    /// The upstream's status (the last one, for a summary).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_error: Option<String>,
    /// Request bytes sent upstream (head and body), summed over a summary.
    pub bytes_up: u64,
    /// Response bytes sent back to the client, summed over a summary.
    pub bytes_down: u64,
    /// Names of the credentials injected, never their values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<String>,
    /// How many requests this record stands for (1, or a burst's size).
    pub count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_pid: Option<i32>,
}

/// Receives every attempt before the proxy acts on it. An `Err` for an allowed attempt makes the
/// proxy refuse the connection (fail closed: nothing leaves unrecorded).
pub trait EgressObserver: Send + Sync {
    fn observe(&self, attempt: &EgressAttempt) -> Result<(), String>;

    /// After an allowed attempt, whether its upstream was reached.
    fn upstream(&self, _outcome: &UpstreamOutcome) {}

    /// After each request through an inspected host. An `Err` closes the client's connection:
    /// no further request on it goes unrecorded.
    fn request(&self, _report: &RequestReport) -> Result<(), String> {
        Ok(())
    }

    /// Called about once a second and when the proxy stops (`all`), so observers that hold
    /// records back (burst summaries) can emit them.
    fn flush(&self, _all: bool) {}
}

/// The journal kind of a [`RequestReport`] (typed as [`EgressRequest`]).
pub const EGRESS_REQUEST: &str = EgressRequest::KIND;

impl From<&RequestReport> for EgressRequest {
    fn from(r: &RequestReport) -> Self {
        Self {
            host: r.host.clone(),
            port: r.port,
            method: r.method.clone(),
            path: r.path.clone(),
            allowed: r.allowed,
            rule: r.rule.clone(),
            reason: r.reason.clone(),
            status: r.status,
            upstream_error: r.upstream_error.clone(),
            bytes_up: r.bytes_up,
            bytes_down: r.bytes_down,
            credentials: r.credentials.clone(),
            count: r.count,
            peer_pid: r.peer_pid,
        }
    }
}

/// Journals attempts as `egress.allowed` / `egress.denied` in a session, and requests through
/// inspected hosts as `egress.request` (wrap it in [`crate::BurstSummary`] so a loop cannot flood
/// the journal).
pub struct JournalObserver {
    journal: Arc<dyn Journal>,
    session: String,
}

impl JournalObserver {
    pub fn new(journal: Arc<dyn Journal>, session: impl Into<String>) -> Self {
        Self {
            journal,
            session: session.into(),
        }
    }
}

impl EgressObserver for JournalObserver {
    fn observe(&self, attempt: &EgressAttempt) -> Result<(), String> {
        let (method, reason) = (attempt.method.clone(), attempt.reason.clone());
        let (host, port, peer_pid) = (attempt.host.clone(), attempt.port, attempt.peer_pid);
        let (kind, body) = if attempt.allowed {
            let body = EgressAllowed {
                method,
                reason,
                host,
                port,
                peer_pid,
            };
            (EgressAllowed::KIND, body.to_body())
        } else {
            let body = EgressDenied {
                method,
                reason,
                host,
                port,
                peer_pid,
            };
            (EgressDenied::KIND, body.to_body())
        };
        self.journal
            .append(kind, Some(&self.session), body)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn request(&self, report: &RequestReport) -> Result<(), String> {
        let body = EgressRequest::from(report).to_body();
        self.journal
            .append(EGRESS_REQUEST, Some(&self.session), body)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Failures only: a connection that worked is already journaled as `egress.allowed`.
    fn upstream(&self, outcome: &UpstreamOutcome) {
        let Some(error) = &outcome.error else { return };
        let body = EgressUpstreamFailed {
            host: outcome.host.clone(),
            port: outcome.port,
            error: error.clone(),
            peer_pid: outcome.peer_pid,
        };
        if let Err(e) = self.journal.append(
            EgressUpstreamFailed::KIND,
            Some(&self.session),
            body.to_body(),
        ) {
            // The proxy has no logger of its own: say it rather than lose it silently.
            eprintln!("agp: egress: cannot journal an upstream failure: {e}");
        }
    }
}

/// Keeps attempts in memory (tests, and callers that journal them later in one place).
#[derive(Default, Clone)]
pub struct MemoryObserver {
    attempts: Arc<Mutex<Vec<EgressAttempt>>>,
    upstreams: Arc<Mutex<Vec<UpstreamOutcome>>>,
    requests: Arc<Mutex<Vec<RequestReport>>>,
}

impl MemoryObserver {
    pub fn attempts(&self) -> Vec<EgressAttempt> {
        self.attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn requests(&self) -> Vec<RequestReport> {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn upstreams(&self) -> Vec<UpstreamOutcome> {
        self.upstreams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl EgressObserver for MemoryObserver {
    fn observe(&self, attempt: &EgressAttempt) -> Result<(), String> {
        self.attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(attempt.clone());
        Ok(())
    }

    fn upstream(&self, outcome: &UpstreamOutcome) {
        self.upstreams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(outcome.clone());
    }

    fn request(&self, report: &RequestReport) -> Result<(), String> {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(report.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agp_contracts::events::{EGRESS_ALLOWED, EGRESS_DENIED, EGRESS_UPSTREAM_FAILED};
    use agp_testkit::MemJournal;
    use serde_json::json;

    fn attempt(allowed: bool) -> EgressAttempt {
        EgressAttempt {
            method: "CONNECT".into(),
            host: Some("api.example.com".into()),
            port: Some(443),
            allowed,
            reason: "r".into(),
            peer_pid: Some(7),
        }
    }

    #[test]
    fn attempts_are_journaled_with_their_kind_and_session() {
        let journal = Arc::new(MemJournal::new());
        let obs = JournalObserver::new(journal.clone(), "s1");
        obs.observe(&attempt(true)).unwrap();
        obs.observe(&attempt(false)).unwrap();
        let e = journal.events();
        assert_eq!(e[0].0, EGRESS_ALLOWED);
        assert_eq!(e[1].0, EGRESS_DENIED);
        assert_eq!(e[0].1.as_deref(), Some("s1"));
        assert_eq!(
            e[0].2,
            json!({"method": "CONNECT", "reason": "r", "host": "api.example.com",
                   "port": 443, "peer_pid": 7})
        );
    }

    #[test]
    fn upstream_failures_are_journaled_and_successes_are_not() {
        let journal = Arc::new(MemJournal::new());
        let obs = JournalObserver::new(journal.clone(), "s1");
        let mut outcome = UpstreamOutcome {
            host: "api.example.com".into(),
            port: 443,
            error: None,
            peer_pid: None,
        };
        obs.upstream(&outcome);
        outcome.error = Some("failed to lookup address".into());
        obs.upstream(&outcome);
        let e = journal.events();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].0, EGRESS_UPSTREAM_FAILED);
        assert_eq!(
            e[0].2,
            json!({"host": "api.example.com", "port": 443, "error": "failed to lookup address"})
        );
    }

    #[test]
    fn requests_are_journaled_with_credential_names_only() {
        let journal = Arc::new(MemJournal::new());
        let obs = JournalObserver::new(journal.clone(), "s1");
        let report = RequestReport {
            host: "api.github.com".into(),
            port: 443,
            method: "GET".into(),
            path: "/repos/a/b".into(),
            allowed: true,
            rule: "rule 1 (allow GET /repos/)".into(),
            reason: "allowed by the rule".into(),
            status: Some(200),
            upstream_error: None,
            bytes_up: 120,
            bytes_down: 4000,
            credentials: vec!["GITHUB_TOKEN".into()],
            count: 3,
            peer_pid: None,
        };
        obs.request(&report).unwrap();
        let e = journal.events();
        assert_eq!(e[0].0, EGRESS_REQUEST);
        assert_eq!(
            e[0].2,
            json!({"host": "api.github.com", "port": 443, "method": "GET", "path": "/repos/a/b",
                   "allowed": true, "rule": "rule 1 (allow GET /repos/)",
                   "reason": "allowed by the rule", "status": 200, "bytes_up": 120,
                   "bytes_down": 4000, "credentials": ["GITHUB_TOKEN"], "count": 3})
        );
        // The body reads back as the typed `egress.request` unchanged.
        journal.assert_typed();
        let typed = EgressRequest::from_body(&e[0].2).unwrap();
        assert_eq!(typed, EgressRequest::from(&report));
    }

    #[test]
    fn a_journal_failure_is_reported() {
        let journal = Arc::new(MemJournal::broken());
        let obs = JournalObserver::new(journal, "s1");
        assert!(obs
            .observe(&attempt(true))
            .unwrap_err()
            .contains("disk full"));
    }
}
