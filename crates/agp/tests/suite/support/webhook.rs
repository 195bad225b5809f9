//! A team's webhook receiver for the tests: a real HTTP server (hyper) that checks agp's
//! signature on every approval request with its own HMAC code (not agp-webhook's), keeps what
//! it received, and sends decisions back to agp's callback URL, signed or forged.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::Value;
use sha2::Sha256;

/// The secret the tests share with agp (a file of mode 0600 in the agp home).
pub const SECRET: &str = "5f0c2b8e4a9d13f7c6e2a1b0d9f8e7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0";

/// One POST the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub doc: Value,
    /// Whether its signature verified under [`SECRET`] within 5 minutes of now.
    pub verified: bool,
    /// The HTTP status the receiver answered.
    pub answered: u16,
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    /// Requests still to be answered 503 (to make agp retry).
    fail_next: u32,
}

pub struct Receiver {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>`, as the README specifies.
pub fn sign(secret: &[u8], ts: u64, body: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    m.update(format!("{ts}.").as_bytes());
    m.update(body);
    format!("v1={}", hex::encode(m.finalize().into_bytes()))
}

fn verify(headers: &hyper::HeaderMap, body: &[u8]) -> bool {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let (Some(ts), Some(sig)) = (get("x-agp-timestamp"), get("x-agp-signature")) else {
        return false;
    };
    let Ok(ts) = ts.parse::<u64>() else {
        return false;
    };
    ts.abs_diff(now_secs()) <= 300 && sign(SECRET.as_bytes(), ts, body) == sig
}

impl Receiver {
    /// Starts on 127.0.0.1 (a free port); the first `fail_first` requests are answered 503.
    pub async fn start(fail_first: u32) -> Receiver {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            fail_next: fail_first,
            ..State::default()
        }));
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = tcp.accept().await else {
                    return;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let st = st.clone();
                            async move {
                                let headers = req.headers().clone();
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                let verified = verify(&headers, &body);
                                let doc = serde_json::from_slice(&body).unwrap_or(Value::Null);
                                let mut s = st.lock().unwrap();
                                let answered = if s.fail_next > 0 {
                                    s.fail_next -= 1;
                                    503
                                } else if verified {
                                    200
                                } else {
                                    401
                                };
                                s.received.push(Received {
                                    doc,
                                    verified,
                                    answered,
                                });
                                let mut resp =
                                    hyper::Response::new(Full::new(Bytes::from_static(b"{}")));
                                *resp.status_mut() = hyper::StatusCode::from_u16(answered).unwrap();
                                Ok::<_, Infallible>(resp)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Receiver { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/approvals", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Waits (up to `secs`) for an accepted, verified request whose summary contains `text`.
    pub async fn wait_request(&self, text: &str, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let found = self.received().into_iter().find(|r| {
                r.answered == 200
                    && r.doc["input_summary"]
                        .as_str()
                        .is_some_and(|s| s.contains(text))
            });
            if let Some(r) = found {
                assert!(r.verified);
                return r.doc;
            }
            assert!(
                Instant::now() < deadline,
                "no approval request for {text:?} reached the receiver: {:?}",
                self.received()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A decision about `request` (the document agp sent) by `approver`.
pub fn decision(request: &Value, decision: &str, approver: &str) -> Value {
    serde_json::json!({
        "call_id": request["call_id"],
        "input_sha256": request["input_sha256"],
        "nonce": request["nonce"],
        "decision": decision,
        "approver": approver,
    })
}

/// How a callback is signed.
#[derive(Debug, Clone, Copy)]
pub enum Signing<'a> {
    /// With the shared secret, now.
    Good,
    /// With the shared secret at this unix time.
    At(u64),
    /// With another secret.
    Key(&'a str),
    /// No signature headers.
    None,
}

/// POSTs `body` to agp's callback URL of `request`; the status and agp's JSON answer.
pub async fn callback(request: &Value, body: &Value, signing: Signing<'_>) -> (u16, Value) {
    let url = request["callback_url"].as_str().unwrap().to_owned();
    let bytes = serde_json::to_vec(body).unwrap();
    let headers: Vec<(&str, String)> = match signing {
        Signing::Good => {
            let ts = now_secs();
            vec![
                ("x-agp-timestamp", ts.to_string()),
                ("x-agp-signature", sign(SECRET.as_bytes(), ts, &bytes)),
            ]
        }
        Signing::At(ts) => vec![
            ("x-agp-timestamp", ts.to_string()),
            ("x-agp-signature", sign(SECRET.as_bytes(), ts, &bytes)),
        ],
        Signing::Key(key) => {
            let ts = now_secs();
            vec![
                ("x-agp-timestamp", ts.to_string()),
                ("x-agp-signature", sign(key.as_bytes(), ts, &bytes)),
            ]
        }
        Signing::None => vec![],
    };
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut req = agent.post(&url).header("content-type", "application/json");
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        let mut resp = req.send(&bytes[..]).unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    })
    .await
    .unwrap()
}

/// Writes the shared secret (mode 0600, where agp looks by default) and an `[approvals]` section sending approvals to
/// `receiver_url` into the agp home's config.toml; `extra` goes into `[approvals.webhook]`.
pub fn configure(home: &std::path::Path, receiver_url: &str, extra: &str) {
    use std::os::unix::fs::PermissionsExt;
    let secret = home.join("keys/webhook.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = home.join("config.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    let section = format!(
        "\n[approvals]\nchannel = \"webhook\"\n\n[approvals.webhook]\nurl = \"{receiver_url}\"\n\
         listen = \"127.0.0.1:0\"\napprovers = [\"alice\", \"bob\"]\n{extra}\n"
    );
    let updated = original.replacen("\n[approvals]\n", &section, 1);
    assert_ne!(original, updated, "agp init writes an [approvals] section");
    std::fs::write(&config, updated).unwrap();
}
