//! Delivering an approval request: a signed POST, retried with backoff while the receiver
//! cannot be reached or answers 5xx, until a deadline.

use std::time::{Duration, Instant};

use crate::secret::Secret;
use crate::sign::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// Responses are not read beyond this (agp only needs the status).
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// Pauses between attempts: `first`, doubling up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_millis(250),
            max: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The receiver answered 3xx or 4xx (other than 408/429): retrying cannot help.
    #[error("the receiver refused the approval request with HTTP {status}")]
    Refused { status: u16 },
    #[error("could not deliver the approval request in {attempts} attempt(s): {last}")]
    GaveUp { attempts: u32, last: String },
}

enum Attempt {
    Delivered,
    Retry(String),
    Refused(u16),
}

#[derive(Clone)]
pub struct Deliverer {
    agent: ureq::Agent,
    url: String,
    /// What logs show of `url` (see `WebhookConfig::url_origin`).
    shown: String,
    secret: Secret,
    backoff: Backoff,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

impl Deliverer {
    pub fn new(url: &str, secret: Secret, timeout: Duration, backoff: Backoff) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            // A redirect would re-send the signed body somewhere else.
            .max_redirects(0)
            .user_agent(concat!("agp-webhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Deliverer {
            agent,
            url: url.to_owned(),
            shown: crate::config::origin(url),
            secret,
            backoff,
        }
    }

    /// POSTs `body`, each attempt signed afresh (a retry is not a stale message), until it is
    /// accepted (2xx), refused (4xx), or `deadline` passes.
    pub async fn deliver(&self, body: &[u8], deadline: Instant) -> Result<(), DeliveryError> {
        let mut attempts = 0;
        let mut pause = self.backoff.first;
        loop {
            attempts += 1;
            let me = self.clone();
            let bytes = body.to_vec();
            let attempt = tokio::task::spawn_blocking(move || me.attempt(&bytes))
                .await
                .unwrap_or_else(|e| Attempt::Retry(format!("delivery task failed: {e}")));
            let last = match attempt {
                Attempt::Delivered => return Ok(()),
                Attempt::Refused(status) => return Err(DeliveryError::Refused { status }),
                Attempt::Retry(why) => why,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(DeliveryError::GaveUp { attempts, last });
            }
            tracing::warn!(url = %self.shown, attempt = attempts, error = %last,
                "cannot deliver an approval request; retrying");
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(self.backoff.max);
        }
    }

    fn attempt(&self, body: &[u8]) -> Attempt {
        let ts = crate::now_ms() / 1000;
        let sig = match sign::sign(&self.secret, ts, body) {
            Ok(s) => s,
            Err(e) => return Attempt::Retry(e.to_string()),
        };
        let sent = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json")
            .header(TIMESTAMP_HEADER, &ts.to_string())
            .header(SIGNATURE_HEADER, &sig)
            .send(body);
        match sent {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                // Drain a little so the connection can be reused; the content is not used.
                let _ = resp
                    .body_mut()
                    .with_config()
                    .limit(MAX_RESPONSE_BYTES)
                    .read_to_vec();
                match status {
                    200..=299 => Attempt::Delivered,
                    408 | 429 => Attempt::Retry(format!("HTTP {status}")),
                    // A redirect is not followed: it would re-send the signed body elsewhere.
                    300..=499 => Attempt::Refused(status),
                    _ => Attempt::Retry(format!("HTTP {status}")),
                }
            }
            Err(e) => Attempt::Retry(e.to_string()),
        }
    }
}
