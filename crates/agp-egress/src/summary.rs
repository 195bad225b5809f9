//! Burst summaries: a looping agent must not flood the journal with identical requests.
//!
//! The rule: requests are keyed by (host, port, method, path, allowed). The first request of a
//! key is passed on at once. Further requests with the same key within [`BurstSummary::window`]
//! of that first one are folded into one held record (count, bytes summed, the last status,
//! error and rule, the union of credential names). The held record is passed on when the window
//! has ended — at the next request of that key, at the proxy's once-a-second flush, or when the
//! proxy stops — and a request after the window opens a new one. So a key costs at most two
//! records per window however fast the agent loops, and every request is counted in exactly
//! one record.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::observer::{EgressAttempt, EgressObserver, RequestReport, UpstreamOutcome};

type Key = (String, u16, String, String, bool);

struct Window {
    opened: Instant,
    held: Option<RequestReport>,
}

/// Wraps an observer and summarizes bursts of identical requests passed to it.
pub struct BurstSummary {
    inner: Arc<dyn EgressObserver>,
    window: Duration,
    windows: Mutex<HashMap<Key, Window>>,
}

impl BurstSummary {
    pub fn new(inner: Arc<dyn EgressObserver>, window: Duration) -> Self {
        Self {
            inner,
            window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    fn request_at(&self, report: &RequestReport, now: Instant) -> Result<(), String> {
        let key = (
            report.host.clone(),
            report.port,
            report.method.clone(),
            report.path.clone(),
            report.allowed,
        );
        let mut ready = Vec::new();
        let pass_now = {
            let mut w = self
                .windows
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match w.get_mut(&key) {
                Some(open) if now.saturating_duration_since(open.opened) < self.window => {
                    match &mut open.held {
                        Some(h) => merge(h, report),
                        None => open.held = Some(report.clone()),
                    }
                    false
                }
                _ => {
                    if let Some(old) = w.insert(
                        key,
                        Window {
                            opened: now,
                            held: None,
                        },
                    ) {
                        ready.extend(old.held);
                    }
                    true
                }
            }
        };
        for r in &ready {
            self.inner.request(r)?;
        }
        if pass_now {
            self.inner.request(report)?;
        }
        Ok(())
    }

    fn flush_at(&self, all: bool, now: Instant) {
        let ready: Vec<RequestReport> = {
            let mut w = self
                .windows
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let window = self.window;
            let mut out = Vec::new();
            w.retain(|_, open| {
                let ended = all || now.saturating_duration_since(open.opened) >= window;
                if ended {
                    out.extend(open.held.take());
                }
                !ended
            });
            out
        };
        for r in &ready {
            if let Err(e) = self.inner.request(r) {
                eprintln!("agp: egress: cannot record a request summary: {e}");
            }
        }
    }
}

fn merge(into: &mut RequestReport, r: &RequestReport) {
    into.count += r.count;
    into.bytes_up += r.bytes_up;
    into.bytes_down += r.bytes_down;
    into.status = r.status.or(into.status);
    if r.upstream_error.is_some() {
        into.upstream_error.clone_from(&r.upstream_error);
    }
    into.rule.clone_from(&r.rule);
    into.reason.clone_from(&r.reason);
    for c in &r.credentials {
        if !into.credentials.contains(c) {
            into.credentials.push(c.clone());
        }
    }
}

impl EgressObserver for BurstSummary {
    fn observe(&self, attempt: &EgressAttempt) -> Result<(), String> {
        self.inner.observe(attempt)
    }

    fn upstream(&self, outcome: &UpstreamOutcome) {
        self.inner.upstream(outcome);
    }

    fn request(&self, report: &RequestReport) -> Result<(), String> {
        self.request_at(report, Instant::now())
    }

    fn flush(&self, all: bool) {
        self.flush_at(all, Instant::now());
        self.inner.flush(all);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryObserver;

    fn report(path: &str, allowed: bool) -> RequestReport {
        RequestReport {
            host: "api.example.com".into(),
            port: 443,
            method: "GET".into(),
            path: path.into(),
            allowed,
            rule: "r".into(),
            reason: "ok".into(),
            status: Some(200),
            upstream_error: None,
            bytes_up: 10,
            bytes_down: 100,
            credentials: vec!["TOKEN".into()],
            count: 1,
            peer_pid: None,
        }
    }

    #[test]
    fn a_burst_becomes_two_records_and_every_request_is_counted() {
        let mem = MemoryObserver::default();
        let s = BurstSummary::new(Arc::new(mem.clone()), Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..1000u64 {
            s.request_at(&report("/loop", true), t0 + Duration::from_millis(i))
                .unwrap();
        }
        // A different decision or path is another key, passed at once.
        s.request_at(&report("/loop", false), t0).unwrap();
        s.request_at(&report("/other", true), t0).unwrap();
        assert_eq!(mem.requests().len(), 3);

        // Not yet ended: held.
        s.flush_at(false, t0 + Duration::from_secs(5));
        assert_eq!(mem.requests().len(), 3);
        s.flush_at(false, t0 + Duration::from_secs(11));
        let r = mem.requests();
        assert_eq!(r.len(), 4);
        let summary = &r[3];
        assert_eq!((summary.path.as_str(), summary.count), ("/loop", 999));
        assert_eq!(summary.bytes_down, 99_900);
        assert_eq!(summary.credentials, vec!["TOKEN".to_owned()]);
        assert_eq!(r.iter().map(|x| x.count).sum::<u64>(), 1002);

        // After the window, the next one opens a new window and is passed at once.
        s.request_at(&report("/loop", true), t0 + Duration::from_secs(12))
            .unwrap();
        assert_eq!(mem.requests().len(), 5);
        s.request_at(&report("/loop", true), t0 + Duration::from_secs(13))
            .unwrap();
        s.flush_at(true, t0 + Duration::from_secs(13));
        assert_eq!(mem.requests().last().unwrap().count, 1);
        assert_eq!(mem.requests().len(), 6);
    }
}
