//! A fake Slack for tests: the Web API over plain HTTP and Socket Mode over a real WebSocket,
//! speaking Slack's documented wire formats (Bearer tokens, form or JSON bodies,
//! `{"ok":...}` envelopes, 429 + `Retry-After`, `hello` / `disconnect` / `interactive`
//! envelopes with `envelope_id`, `block_actions` payloads). Tests drive it as Slack would be
//! driven by people: click a button as a given user, drop the connection, send garbage.

mod http;
mod people;
mod socket_mode;
mod wait;
mod web_api;

use socket_mode::serve_ws;
use web_api::serve_http;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

pub const BOT_TOKEN: &str = "xoxb-fake-bot-token";
pub const APP_TOKEN: &str = "xapp-fake-app-token";
pub const BOT_USER: &str = "UAGPBOT";
pub const CHANNEL: &str = "CAPPROVALS";

#[derive(Debug, Clone)]
pub struct FakeUser {
    pub id: String,
    pub name: String,
    pub is_bot: bool,
    pub deleted: bool,
}

#[derive(Debug, Clone)]
pub struct PostedMessage {
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    pub text: String,
    pub blocks: Value,
    pub updates: u32,
}

impl PostedMessage {
    /// Whether the message still shows buttons.
    pub fn has_buttons(&self) -> bool {
        self.blocks
            .as_array()
            .is_some_and(|b| b.iter().any(|x| x["type"] == "actions"))
    }
    /// All text of the message (text plus blocks), for assertions.
    pub fn all_text(&self) -> String {
        format!("{} {}", self.text, self.blocks)
    }
}

#[derive(Debug, Clone)]
pub struct Ephemeral {
    pub channel: String,
    pub user: String,
    pub text: String,
    pub blocks: Value,
    pub thread_ts: Option<String>,
}

enum WsCmd {
    Text(String),
    /// Send this text, then close politely (close frame). One command, so that the close can
    /// neither miss a connection the client ends on reading the text nor hit its successor.
    TextThenClose(String),
    /// Drop the TCP connection without a close frame.
    Abort,
}

#[derive(Default)]
struct State {
    users: HashMap<String, FakeUser>,
    groups: HashMap<String, Vec<String>>,
    messages: Vec<PostedMessage>,
    ephemerals: Vec<Ephemeral>,
    calls: Vec<(String, Instant)>,
    rate_limits: HashMap<String, (u32, u64)>,
    failures: HashMap<String, (u32, String)>,
    delays: HashMap<String, Duration>,
    tickets: HashSet<String>,
    conn: Option<(u64, mpsc::UnboundedSender<WsCmd>)>,
    conn_seq: u64,
    hellos: u64,
    opens: u64,
    acks: HashSet<String>,
    counter: u64,
}

struct Shared {
    state: Mutex<State>,
    changed: Notify,
    ws_addr: SocketAddr,
    http_addr: SocketAddr,
}

impl Shared {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let out = f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner));
        self.changed.notify_waiters();
        out
    }
}

/// A running fake Slack. Dropping it stops both servers.
pub struct FakeSlack {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Ok(mut s) = self.shared.state.lock() {
            if let Some((_, tx)) = s.conn.take() {
                let _ = tx.send(WsCmd::Abort);
            }
        }
    }
}

impl FakeSlack {
    /// Starts the Web API and Socket Mode servers on ephemeral loopback ports.
    pub async fn start() -> std::io::Result<FakeSlack> {
        let http = TcpListener::bind("127.0.0.1:0").await?;
        let ws = TcpListener::bind("127.0.0.1:0").await?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            ws_addr: ws.local_addr()?,
            http_addr: http.local_addr()?,
        });
        let s1 = shared.clone();
        let s2 = shared.clone();
        let tasks = vec![
            tokio::spawn(async move {
                while let Ok((stream, _)) = http.accept().await {
                    tokio::spawn(serve_http(s1.clone(), stream));
                }
            }),
            tokio::spawn(async move {
                while let Ok((stream, _)) = ws.accept().await {
                    tokio::spawn(serve_ws(s2.clone(), stream));
                }
            }),
        ];
        Ok(FakeSlack { shared, tasks })
    }

    /// The Web API base URL (`AGP_SLACK_API_URL`).
    pub fn api_url(&self) -> String {
        format!("http://{}/api/", self.shared.http_addr)
    }

    pub fn add_user(&self, id: &str, name: &str) {
        self.put_user(id, name, false, false);
    }

    pub fn add_bot(&self, id: &str, name: &str) {
        self.put_user(id, name, true, false);
    }

    pub fn put_user(&self, id: &str, name: &str, is_bot: bool, deleted: bool) {
        let u = FakeUser {
            id: id.into(),
            name: name.into(),
            is_bot,
            deleted,
        };
        self.shared.with(|s| s.users.insert(id.into(), u));
    }

    pub fn set_group(&self, id: &str, members: &[&str]) {
        let m = members
            .iter()
            .map(std::string::ToString::to_string)
            .collect();
        self.shared.with(|s| s.groups.insert(id.into(), m));
    }

    /// The next `times` calls of `method` get HTTP 429 with `Retry-After: retry_after_s`.
    pub fn rate_limit(&self, method: &str, times: u32, retry_after_s: u64) {
        self.shared
            .with(|s| s.rate_limits.insert(method.into(), (times, retry_after_s)));
    }

    /// Calls of `method` take effect at once but are answered only after `delay` (a slow
    /// network between Slack and agp).
    pub fn delay(&self, method: &str, delay: Duration) {
        self.shared.with(|s| s.delays.insert(method.into(), delay));
    }

    /// The next `times` calls of `method` answer `{"ok":false,"error":error}`.
    pub fn fail(&self, method: &str, times: u32, error: &str) {
        self.shared
            .with(|s| s.failures.insert(method.into(), (times, error.into())));
    }

    pub fn messages(&self) -> Vec<PostedMessage> {
        self.shared.with(|s| s.messages.clone())
    }

    /// The top-level messages (session roots), oldest first; the rest are thread replies.
    pub fn roots(&self) -> Vec<PostedMessage> {
        let mut all = self.messages();
        all.retain(|m| m.thread_ts.is_none());
        all
    }

    pub fn message(&self, ts: &str) -> Option<PostedMessage> {
        self.shared
            .with(|s| s.messages.iter().find(|m| m.ts == ts).cloned())
    }

    pub fn ephemerals(&self) -> Vec<Ephemeral> {
        self.shared.with(|s| s.ephemerals.clone())
    }

    /// When each call of `method` arrived.
    pub fn calls(&self, method: &str) -> Vec<Instant> {
        self.shared.with(|s| {
            s.calls
                .iter()
                .filter(|(m, _)| m == method)
                .map(|(_, t)| *t)
                .collect()
        })
    }

    /// How many Socket Mode connections received `hello`.
    pub fn hellos(&self) -> u64 {
        self.shared.with(|s| s.hellos)
    }

    /// How many times apps.connections.open was answered.
    pub fn connection_opens(&self) -> u64 {
        self.shared.with(|s| s.opens)
    }

    pub fn acked(&self, envelope_id: &str) -> bool {
        self.shared.with(|s| s.acks.contains(envelope_id))
    }
}
