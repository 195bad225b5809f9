//! Noticing that the model cannot be reached: the agent CLIs retry an unreachable API for
//! minutes without a word, while the proxy sees every connection fail at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::observer::{EgressAttempt, EgressObserver, RequestReport, UpstreamOutcome};

/// Wraps an observer and keeps the streak of failed connections to the watched upstreams (the
/// model API); [`UpstreamWatch::stop_reason`] says when the run should stop.
pub struct UpstreamWatch {
    inner: Arc<dyn EgressObserver>,
    watched: Vec<(String, u16)>,
    /// Failures in a row before giving up.
    max_failures: u32,
    /// Longest a streak of failures may last before giving up.
    max_streak: Duration,
    state: Mutex<Streak>,
}

#[derive(Default)]
struct Streak {
    failures: u32,
    since: Option<Instant>,
    last: Option<(String, u16, String)>,
}

impl UpstreamWatch {
    /// Watches `watched` (`host`, `port`; host as the allowlist normalizes it).
    pub fn new(
        inner: Arc<dyn EgressObserver>,
        watched: Vec<(String, u16)>,
        max_failures: u32,
        max_streak: Duration,
    ) -> Self {
        Self {
            inner,
            watched,
            max_failures: max_failures.max(1),
            max_streak,
            state: Mutex::default(),
        }
    }

    /// Why the run should stop now, if it should: `max_failures` failed connections in a row to
    /// a watched upstream, or failures only for longer than `max_streak`.
    pub fn stop_reason(&self, now: Instant) -> Option<String> {
        let s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (host, port, error) = s.last.clone()?;
        let since = s.since?;
        let long = now.saturating_duration_since(since) >= self.max_streak;
        (s.failures >= self.max_failures || long).then(|| {
            format!(
                "the model API at {host}:{port} cannot be reached ({} failed connection{} in {} s, \
                 the last: {error})",
                s.failures,
                if s.failures == 1 { "" } else { "s" },
                now.saturating_duration_since(since).as_secs()
            )
        })
    }
}

impl EgressObserver for UpstreamWatch {
    fn observe(&self, attempt: &EgressAttempt) -> Result<(), String> {
        self.inner.observe(attempt)
    }

    fn request(&self, report: &RequestReport) -> Result<(), String> {
        self.inner.request(report)
    }

    fn flush(&self, all: bool) {
        self.inner.flush(all);
    }

    fn upstream(&self, outcome: &UpstreamOutcome) {
        self.inner.upstream(outcome);
        if !self
            .watched
            .iter()
            .any(|(h, p)| *h == outcome.host && *p == outcome.port)
        {
            return;
        }
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &outcome.error {
            None => *s = Streak::default(),
            Some(e) => {
                s.failures += 1;
                s.since.get_or_insert_with(Instant::now);
                s.last = Some((outcome.host.clone(), outcome.port, e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryObserver;

    fn outcome(host: &str, error: Option<&str>) -> UpstreamOutcome {
        UpstreamOutcome {
            host: host.into(),
            port: 443,
            error: error.map(str::to_owned),
            peer_pid: None,
        }
    }

    #[test]
    fn a_streak_of_model_failures_stops_the_run_and_a_success_resets_it() {
        let w = UpstreamWatch::new(
            Arc::new(MemoryObserver::default()),
            vec![("api.example.com".into(), 443)],
            3,
            Duration::from_secs(3600),
        );
        let now = Instant::now();
        assert_eq!(w.stop_reason(now), None);
        // Other hosts (a docs site) do not count.
        for _ in 0..5 {
            w.upstream(&outcome("docs.example.com", Some("refused")));
        }
        assert_eq!(w.stop_reason(now), None);
        w.upstream(&outcome("api.example.com", Some("refused")));
        w.upstream(&outcome("api.example.com", Some("refused")));
        assert_eq!(w.stop_reason(Instant::now()), None);
        w.upstream(&outcome("api.example.com", None));
        w.upstream(&outcome("api.example.com", Some("refused")));
        w.upstream(&outcome("api.example.com", Some("refused")));
        assert_eq!(w.stop_reason(Instant::now()), None);
        w.upstream(&outcome("api.example.com", Some("dns: no such host")));
        let why = w.stop_reason(Instant::now()).unwrap();
        assert!(
            why.contains("api.example.com:443 cannot be reached"),
            "{why}"
        );
        assert!(why.contains("3 failed connections") && why.contains("dns: no such host"));
    }

    #[test]
    fn one_failure_alone_stops_the_run_once_the_streak_is_long_enough() {
        let w = UpstreamWatch::new(
            Arc::new(MemoryObserver::default()),
            vec![("api.example.com".into(), 443)],
            100,
            Duration::from_secs(5),
        );
        w.upstream(&outcome("api.example.com", Some("timed out")));
        let now = Instant::now();
        assert_eq!(w.stop_reason(now), None);
        let later = now + Duration::from_secs(6);
        assert!(w
            .stop_reason(later)
            .unwrap()
            .contains("1 failed connection in"));
    }
}
