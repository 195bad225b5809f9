//! The channel's edges that the binary's end-to-end tests do not reach: a receiver that
//! decides before it answers the POST, a caller that stops waiting, an unreachable quorum,
//! tampered and oversized messages, and the bound on journaling unauthenticated refusals.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agp_contracts::{ApprovalChannel, ApprovalOutcome, ApprovalRequest, ChannelError};
use agp_testkit::MemJournal;
use agp_webhook::{sign, Settings, WebhookChannel, WebhookConfig};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789";

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// What the test receiver does with a request before answering 200.
#[derive(Clone, Copy)]
enum Behaviour {
    Answer,
    /// Sends Alice's signed allow and waits for agp's answer, then answers the POST.
    DecideFirst,
}

struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Value>>>,
}

async fn receiver(behaviour: Behaviour) -> Receiver {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", tcp.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = tcp.accept().await {
            let g = g.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let g = g.clone();
                        async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let doc: Value = serde_json::from_slice(&body).unwrap();
                            g.lock().unwrap().push(doc.clone());
                            if let Behaviour::DecideFirst = behaviour {
                                let (code, _) =
                                    post(&doc, &decision(&doc, "allow", "alice"), Sig::Good).await;
                                assert_eq!(code, 200);
                            }
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Receiver { url, got }
}

fn config(url: &str, home: &std::path::Path) -> WebhookConfig {
    let settings: Settings = toml::from_str(&format!(
        "url = \"{url}\"\nsecret_env = \"S\"\nlisten = \"127.0.0.1:0\"\napprovers = [\"alice\", \"bob\"]\n"
    ))
    .unwrap();
    WebhookConfig::from_settings(&settings, home, |_| Some(SECRET.into())).unwrap()
}

fn request(call: &str, approvers: &[&str], quorum: u32) -> ApprovalRequest {
    // From JSON, as the daemon stores it: members added to the contract later take their
    // defaults.
    serde_json::from_value(json!({
        "session": "s1", "call_id": call, "tool": "Bash",
        "redacted_input": {"command": "mkdir x"}, "input_sha256": "ab".repeat(32),
        "rule_id": "r", "reason": "needs a human", "approvers": approvers,
        "quorum": quorum, "expires_at_ms": now_ms() + 60_000,
    }))
    .unwrap()
}

fn decision(doc: &Value, decision: &str, approver: &str) -> Value {
    json!({"call_id": doc["call_id"], "input_sha256": doc["input_sha256"],
           "nonce": doc["nonce"], "decision": decision, "approver": approver})
}

#[derive(Clone, Copy)]
enum Sig<'a> {
    Good,
    /// Signed over these bytes, but the decision is sent.
    OtherBody(&'a [u8]),
}

async fn post_raw(url: &str, headers: Vec<(&'static str, String)>, body: Vec<u8>) -> (u16, Value) {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut req = agent.post(&url);
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        let mut resp = req.send(&body[..]).unwrap();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (
            resp.status().as_u16(),
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    })
    .await
    .unwrap()
}

async fn post(doc: &Value, body: &Value, sig: Sig<'_>) -> (u16, Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    let ts = now_ms() / 1000;
    let secret = agp_webhook::Secret::new(SECRET);
    let signed = match sig {
        Sig::Good => sign::sign(&secret, ts, &bytes).unwrap(),
        Sig::OtherBody(other) => sign::sign(&secret, ts, other).unwrap(),
    };
    post_raw(
        doc["callback_url"].as_str().unwrap(),
        vec![
            ("x-agp-timestamp", ts.to_string()),
            ("x-agp-signature", signed),
        ],
        bytes,
    )
    .await
}

async fn wait_docs(r: &Receiver, n: usize) -> Vec<Value> {
    for _ in 0..600 {
        let got = r.got.lock().unwrap().clone();
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the receiver did not get {n} request(s)");
}

/// A channel journaling into `journal`, posting to a test receiver that behaves as `behaviour`.
struct Setup {
    journal: Arc<MemJournal>,
    r: Receiver,
    ch: Arc<WebhookChannel>,
    _home: tempfile::TempDir,
}

async fn setup(behaviour: Behaviour) -> Setup {
    let journal = Arc::new(MemJournal::new());
    let r = receiver(behaviour).await;
    let home = tempfile::tempdir().unwrap();
    let j: Arc<dyn agp_contracts::Journal> = journal.clone();
    let ch = WebhookChannel::builder(config(&r.url, home.path()))
        .journal(j)
        .start()
        .await
        .unwrap();
    Setup {
        journal,
        r,
        ch: Arc::new(ch),
        _home: home,
    }
}

/// Asks `ch` for `req`'s approval in a task of its own.
fn ask(
    ch: &Arc<WebhookChannel>,
    req: ApprovalRequest,
) -> JoinHandle<Result<ApprovalOutcome, ChannelError>> {
    let ch = ch.clone();
    tokio::spawn(async move { ch.request_approval(&req).await })
}

fn rejected(journal: &MemJournal) -> Vec<String> {
    journal
        .events()
        .into_iter()
        .filter(|(k, _, _)| k == "approval.rejected")
        .map(|(_, _, b)| b["reason"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_sent_before_the_post_is_answered_counts() {
    let Setup {
        journal,
        r: _r,
        ch,
        _home,
    } = setup(Behaviour::DecideFirst).await;
    let outcome = ch.request_approval(&request("c1", &[], 1)).await.unwrap();
    match outcome {
        ApprovalOutcome::Granted { by } => assert_eq!(by[0].id, "alice"),
        other => panic!("{other:?}"),
    }
    assert!(rejected(&journal).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_after_agp_stopped_waiting_is_refused() {
    let Setup {
        journal,
        r,
        ch,
        _home,
    } = setup(Behaviour::Answer).await;
    let asking = ask(&ch, request("c1", &[], 1));
    let doc = wait_docs(&r, 1).await.remove(0);
    // The caller gives up (the daemon's own timeout, the agent disconnecting): its future is
    // dropped once the task is aborted.
    asking.abort();
    assert!(asking.await.unwrap_err().is_cancelled());
    let (code, answer) = post(&doc, &decision(&doc, "allow", "alice"), Sig::Good).await;
    assert_eq!((code, answer["reason"].clone()), (409, json!("replayed")));
    assert_eq!(rejected(&journal), ["replayed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_the_allowed_approvers_cannot_reach_is_refused_without_asking() {
    let Setup {
        journal: _journal,
        r,
        ch,
        _home,
    } = setup(Behaviour::Answer).await;
    // The rule names carol (not configured) and alice: one eligible approver, two needed.
    let outcome = ch
        .request_approval(&request("c1", &["carol", "alice"], 2))
        .await
        .unwrap();
    match outcome {
        ApprovalOutcome::Unavailable { reason } => {
            assert!(reason.contains("quorum 2 cannot be reached"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        r.got.lock().unwrap().is_empty(),
        "nobody should have been asked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_oversized_and_flooding_messages_are_refused_and_bounded() {
    let Setup {
        journal,
        r,
        ch,
        _home,
    } = setup(Behaviour::Answer).await;
    let asking = ask(&ch, request("c1", &["bob"], 1));
    let doc = wait_docs(&r, 1).await.remove(0);
    assert_eq!(
        doc["approvers"],
        json!(["bob"]),
        "the rule narrows the configured list"
    );
    let allow = decision(&doc, "allow", "bob");
    let deny = serde_json::to_vec(&decision(&doc, "deny", "bob")).unwrap();
    // A signature over a deny does not carry an allow.
    let (code, answer) = post(&doc, &allow, Sig::OtherBody(&deny)).await;
    assert_eq!(
        (code, answer["reason"].clone()),
        (401, json!("bad_signature"))
    );
    // Alice is configured, but this rule allows only bob.
    let (code, answer) = post(&doc, &decision(&doc, "allow", "alice"), Sig::Good).await;
    assert_eq!(
        (code, answer["reason"].clone()),
        (403, json!("not_an_approver"))
    );
    let url = doc["callback_url"].as_str().unwrap();
    let (code, _) = post_raw(url, vec![], vec![b'x'; 100 * 1024]).await;
    assert_eq!(code, 400);
    // Another path or method is not a decision: answered, not journaled.
    let base = url.trim_end_matches("/agp/v1/decision");
    assert_eq!(
        post_raw(&format!("{base}/other"), vec![], vec![]).await.0,
        404
    );
    let before = rejected(&journal).len();
    // A flood of unsigned messages: each refused, at most 60 a minute journaled. 130 cannot all
    // be journaled even if a minute begins during the flood (58 + 60 at most).
    for _ in 0..130 {
        let (code, _) = post_raw(url, vec![], serde_json::to_vec(&allow).unwrap()).await;
        assert_eq!(code, 401);
    }
    let journaled = rejected(&journal).len() - before;
    assert!((58..130).contains(&journaled), "{journaled} journaled");
    // The call is still undecided, and the real approver still decides it.
    let (code, answer) = post(&doc, &allow, Sig::Good).await;
    assert_eq!((code, answer["status"].clone()), (200, json!("granted")));
    assert!(asking.await.unwrap().unwrap().is_granted());
}
