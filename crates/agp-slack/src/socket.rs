//! Socket Mode: one long-lived WebSocket from the daemon to Slack, reopened through
//! `apps.connections.open` (URLs are single-use) whenever Slack asks for a refresh or the
//! connection drops, with bounded exponential backoff. Every envelope is acknowledged by its
//! `envelope_id` before it is processed: Slack does not redeliver interactive envelopes, and an
//! unacknowledged one shows the clicker an error.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::api::SlackApi;

/// Slack sends `hello` right after the upgrade; a connection that stays silent is abandoned.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// We ping this often; a connection that shows no life for `IDLE_LIMIT` is reopened.
const PING_EVERY: Duration = Duration::from_secs(30);
const IDLE_LIMIT: Duration = Duration::from_secs(90);
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// How long a connection Slack asked us to leave is still read (Slack closes it within ~10 s).
const DRAIN_FOR: Duration = Duration::from_secs(15);

/// Connection state, observable by callers (tests, `agp slack test`, doctor).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnStatus {
    pub connected: bool,
    /// How many connections completed `hello` so far.
    pub generation: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

/// What the socket hands to the channel.
pub(crate) trait EnvelopeHandler: Send + Sync + 'static {
    /// An `interactive` envelope's payload, already acknowledged.
    fn interactive(self: Arc<Self>, payload: Value);
}

enum Ended {
    /// Slack asked us to reconnect (`refresh_requested`, `warning`): no backoff.
    Refresh,
    /// Socket Mode was turned off for the app: retry slowly.
    LinkDisabled,
    /// Closed or failed; `greeted` says whether `hello` was seen.
    Dropped { greeted: bool, why: String },
}

pub(crate) async fn run<H: EnvelopeHandler>(
    api: SlackApi,
    handler: Arc<H>,
    status: watch::Sender<ConnStatus>,
    backoff: Backoff,
) {
    let tls = tls_connector();
    let mut delay = backoff.min;
    loop {
        let ended = match api.connections_open().await {
            Ok(url) => connect_once(&url, tls.as_ref(), &handler, &status).await,
            Err(e) => Ended::Dropped {
                greeted: false,
                why: e.to_string(),
            },
        };
        status.send_modify(|s| s.connected = false);
        match ended {
            Ended::Refresh => {
                tracing::info!("Slack asked for a reconnect");
                delay = backoff.min;
            }
            Ended::LinkDisabled => {
                tracing::error!("Slack disabled Socket Mode for this app; approvals will time out until it is enabled again");
                tokio::time::sleep(backoff.max).await;
            }
            Ended::Dropped { greeted, why } => {
                if greeted {
                    delay = backoff.min;
                }
                tracing::warn!(reason = %why, retry_in_ms = delay.as_millis() as u64, "Slack Socket Mode connection lost");
                tokio::time::sleep(jitter(delay)).await;
                delay = (delay * 2).min(backoff.max);
            }
        }
    }
}

/// 50–100 % of `d`, so many daemons do not reconnect in lockstep.
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 1];
    let frac = if getrandom::getrandom(&mut b).is_ok() {
        0.5 + f64::from(b[0]) / 510.0
    } else {
        1.0
    };
    d.mul_f64(frac)
}

fn tls_connector() -> Option<Connector> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(b) => Some(Connector::Rustls(Arc::new(
            b.with_root_certificates(roots).with_no_client_auth(),
        ))),
        Err(e) => {
            tracing::error!(error = %e, "cannot build the TLS client configuration");
            None
        }
    }
}

/// Reads a connection Slack is retiring: acknowledges and dispatches what still arrives, for at
/// most `DRAIN_FOR`.
async fn drain<H: EnvelopeHandler>(
    mut ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    handler: Arc<H>,
) {
    let deadline = Instant::now() + DRAIN_FOR;
    loop {
        let msg = tokio::select! {
            m = ws.next() => m,
            _ = tokio::time::sleep_until(deadline) => break,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            Some(Ok(_)) => continue,
        };
        let Ok(envelope @ Value::Object(_)) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        if let Some(id) = envelope.get("envelope_id").and_then(Value::as_str) {
            let ack = json!({"envelope_id": id}).to_string();
            if ws.send(Message::Text(ack.into())).await.is_err() {
                break;
            }
        }
        if envelope.get("type").and_then(Value::as_str) == Some("interactive") {
            if let Some(p @ Value::Object(_)) = envelope.get("payload") {
                handler.clone().interactive(p.clone());
            }
        }
    }
    let _ = ws.close(None).await;
}

async fn connect_once<H: EnvelopeHandler>(
    url: &str,
    tls: Option<&Connector>,
    handler: &Arc<H>,
    status: &watch::Sender<ConnStatus>,
) -> Ended {
    let dropped = |why: String, greeted| Ended::Dropped { greeted, why };
    if url.starts_with("wss://") && tls.is_none() {
        return dropped("no TLS configuration".into(), false);
    }
    // The URL's ticket is a credential: unencrypted only to this machine (tests).
    if !(url.starts_with("wss://") || agp_contracts::url::is_loopback_url(url, "ws://")) {
        return dropped(
            "refusing a Socket Mode URL that is neither wss:// nor loopback".into(),
            false,
        );
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let connect =
        tokio_tungstenite::connect_async_tls_with_config(url, Some(config), false, tls.cloned());
    let (mut ws, _) = match timeout(HELLO_TIMEOUT, connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return dropped(format!("WebSocket connect failed: {e}"), false),
        Err(_) => return dropped("WebSocket connect timed out".into(), false),
    };
    let mut greeted = false;
    let mut last_seen = Instant::now();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let hello_deadline = Instant::now() + HELLO_TIMEOUT;
    loop {
        let idle_deadline = if greeted {
            last_seen + IDLE_LIMIT
        } else {
            hello_deadline
        };
        let msg = tokio::select! {
            m = ws.next() => m,
            _ = ping.tick() => {
                if let Err(e) = ws.send(Message::Ping(Vec::new().into())).await {
                    return dropped(format!("ping failed: {e}"), greeted);
                }
                continue;
            }
            _ = tokio::time::sleep_until(idle_deadline) => {
                let _ = ws.close(None).await;
                return dropped(if greeted { "connection idle" } else { "no hello" }.into(), greeted);
            }
        };
        last_seen = Instant::now();
        let text = match msg {
            None => return dropped("closed".into(), greeted),
            Some(Err(e)) => return dropped(e.to_string(), greeted),
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(frame))) => {
                return dropped(format!("closed by Slack: {frame:?}"), greeted)
            }
            Some(Ok(_)) => continue, // ping/pong/binary: tungstenite answers pings itself
        };
        let envelope: Value = if let Ok(v @ Value::Object(_)) = serde_json::from_str(text.as_str())
        {
            v
        } else {
            tracing::warn!(
                bytes = text.len(),
                "ignoring a malformed Socket Mode message"
            );
            continue;
        };
        // Acknowledge first: whatever follows, Slack must not show the clicker a failure for
        // an envelope we received.
        if let Some(id) = envelope.get("envelope_id").and_then(Value::as_str) {
            let ack = json!({"envelope_id": id}).to_string();
            if let Err(e) = ws.send(Message::Text(ack.into())).await {
                return dropped(format!("ack failed: {e}"), greeted);
            }
        }
        match envelope.get("type").and_then(Value::as_str) {
            Some("hello") => {
                greeted = true;
                status.send_modify(|s| {
                    s.connected = true;
                    s.generation += 1;
                });
                tracing::info!("Slack Socket Mode connected");
            }
            Some("disconnect") => {
                let reason = envelope.get("reason").and_then(Value::as_str).unwrap_or("");
                if reason == "link_disabled" {
                    let _ = ws.close(None).await;
                    return Ended::LinkDisabled;
                }
                // Slack may still deliver on this connection until it closes it: keep reading
                // (and acknowledging) it while the replacement is opened, so no click is lost.
                tokio::spawn(drain(ws, handler.clone()));
                return Ended::Refresh;
            }
            Some("interactive") => {
                if let Some(p @ Value::Object(_)) = envelope.get("payload") {
                    handler.clone().interactive(p.clone());
                } else {
                    tracing::warn!("ignoring an interactive envelope without a payload");
                }
            }
            Some(other) => tracing::debug!(kind = other, "ignoring Socket Mode envelope"),
            None => tracing::warn!("ignoring a Socket Mode message without a type"),
        }
    }
}
