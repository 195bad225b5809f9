//! A fake Slack for tests: the Web API over plain HTTP and Socket Mode over a real WebSocket,
//! speaking Slack's documented wire formats (Bearer tokens, form or JSON bodies,
//! `{"ok":...}` envelopes, 429 + `Retry-After`, `hello` / `disconnect` / `interactive`
//! envelopes with `envelope_id`, `block_actions` payloads). Tests drive it as Slack would be
//! driven by people: click a button as a given user, drop the connection, send garbage.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::Message;

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
    /// Close politely (close frame).
    Close,
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
        let out = f(&mut self.state.lock().expect("fake state"));
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

    /// Waits until `pred` holds on the fake's state (re-checked on every change).
    async fn wait_for<T>(
        &self,
        within: Duration,
        mut pred: impl FnMut(&State) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = pred(&self.shared.state.lock().expect("fake state")) {
                return Some(v);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    pub async fn wait_hellos(&self, n: u64, within: Duration) -> bool {
        self.wait_for(within, |s| {
            (s.hellos >= n && s.conn.is_some()).then_some(())
        })
        .await
        .is_some()
    }

    /// Waits for a message (posted or updated) satisfying `pred`.
    pub async fn wait_message(
        &self,
        within: Duration,
        mut pred: impl FnMut(&PostedMessage) -> bool,
    ) -> Option<PostedMessage> {
        self.wait_for(within, |s| s.messages.iter().find(|m| pred(m)).cloned())
            .await
    }

    /// Waits for the approval message with buttons (the n-th, 0-based).
    pub async fn wait_approval(&self, nth: usize, within: Duration) -> Option<PostedMessage> {
        self.wait_for(within, |s| {
            s.messages
                .iter()
                .filter(|m| m.thread_ts.is_some() && m.text.contains("approval needed"))
                .nth(nth)
                .cloned()
        })
        .await
    }

    pub async fn wait_ephemeral(
        &self,
        user: &str,
        contains: &str,
        within: Duration,
    ) -> Option<Ephemeral> {
        self.wait_for(within, |s| {
            s.ephemerals
                .iter()
                .find(|e| e.user == user && format!("{} {}", e.text, e.blocks).contains(contains))
                .cloned()
        })
        .await
    }

    pub async fn wait_ack(&self, envelope_id: &str, within: Duration) -> bool {
        self.wait_for(within, |s| s.acks.contains(envelope_id).then_some(()))
            .await
            .is_some()
    }

    fn send(&self, cmd: WsCmd) -> Result<(), String> {
        self.shared.with(|s| match &s.conn {
            Some((_, tx)) => tx.send(cmd).map_err(|_| "connection gone".to_string()),
            None => Err("no Socket Mode connection".into()),
        })
    }

    /// Clicks `action_id` on message `ts` as `user`; returns the envelope id.
    pub fn click(&self, user: &str, ts: &str, action_id: &str) -> Result<String, String> {
        let msg = self.message(ts).ok_or("no such message")?;
        let button = find_button(&msg.blocks, action_id).ok_or("no such button")?;
        self.click_with(user, &msg, button)
    }

    /// Clicks a button whose `value` was altered (a forged or stale button).
    pub fn click_value(
        &self,
        user: &str,
        ts: &str,
        action_id: &str,
        value: &str,
    ) -> Result<String, String> {
        let msg = self.message(ts).ok_or("no such message")?;
        // The button may be gone from the message already (a replay of an old client view).
        let mut button = find_button(&msg.blocks, action_id).unwrap_or_else(|| {
            json!({"type": "button", "action_id": action_id,
                   "text": {"type": "plain_text", "text": action_id}})
        });
        button["value"] = json!(value);
        self.click_with(user, &msg, button)
    }

    fn click_with(&self, user: &str, msg: &PostedMessage, button: Value) -> Result<String, String> {
        let name = self.shared.with(|s| {
            s.users
                .get(user)
                .map_or_else(|| user.to_lowercase(), |u| u.name.clone())
        });
        let (envelope_id, trigger) = self.shared.with(|s| {
            s.counter += 1;
            (
                format!("env-{:08}", s.counter),
                format!("trigger-{}", s.counter),
            )
        });
        let payload = json!({
            "type": "block_actions",
            "user": {"id": user, "username": name, "name": name, "team_id": "T0AGP"},
            "api_app_id": "A0AGP",
            "token": "fake-verification-token",
            "container": {
                "type": "message",
                "message_ts": msg.ts,
                "channel_id": msg.channel,
                "is_ephemeral": false,
                "thread_ts": msg.thread_ts,
            },
            "trigger_id": trigger,
            "team": {"id": "T0AGP", "domain": "agp-test"},
            "enterprise": null,
            "is_enterprise_install": false,
            "channel": {"id": msg.channel, "name": "approvals"},
            "message": {
                "type": "message", "user": BOT_USER, "ts": msg.ts,
                "thread_ts": msg.thread_ts, "text": msg.text, "blocks": msg.blocks,
            },
            "state": {"values": {}},
            "response_url": format!("http://{}/actions/T0AGP/{}", self.shared.http_addr, envelope_id),
            "actions": [{
                "action_id": button["action_id"],
                "block_id": "agp_decision",
                "text": button["text"],
                "value": button["value"],
                "style": button.get("style"),
                "type": "button",
                "action_ts": "1700000000.000001",
            }],
        });
        let envelope = json!({
            "envelope_id": envelope_id,
            "payload": payload,
            "type": "interactive",
            "accepts_response_payload": false,
        });
        self.send(WsCmd::Text(envelope.to_string()))?;
        Ok(envelope_id)
    }

    /// Sends raw text on the Socket Mode connection (malformed envelopes).
    pub fn send_raw(&self, text: &str) -> Result<(), String> {
        self.send(WsCmd::Text(text.into()))
    }

    /// Sends `{"type":"disconnect","reason":reason}` and closes the connection.
    pub fn disconnect(&self, reason: &str) -> Result<(), String> {
        let msg = json!({"type": "disconnect", "reason": reason,
                         "debug_info": {"host": "fake-slack"}});
        self.send(WsCmd::Text(msg.to_string()))?;
        self.send(WsCmd::Close)
    }

    /// Sends `{"type":"disconnect","reason":reason}` and keeps the connection open, as Slack
    /// does for a while after `refresh_requested` or `warning`.
    pub fn disconnect_soft(&self, reason: &str) -> Result<(), String> {
        let msg = json!({"type": "disconnect", "reason": reason,
                         "debug_info": {"host": "fake-slack"}});
        self.send(WsCmd::Text(msg.to_string()))
    }

    /// Drops the TCP connection without a close frame.
    pub fn drop_connection(&self) -> Result<(), String> {
        // A client that was just told to reconnect may be between two connections; dropping
        // "the current connection" then means the next one, so wait briefly for it.
        for _ in 0..200 {
            match self.send(WsCmd::Abort) {
                Err(e) if e == "no Socket Mode connection" => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => return other,
            }
        }
        self.send(WsCmd::Abort)
    }
}

fn find_button(blocks: &Value, action_id: &str) -> Option<Value> {
    blocks.as_array()?.iter().find_map(|b| {
        b["elements"]
            .as_array()?
            .iter()
            .find(|e| e["action_id"] == action_id)
            .cloned()
    })
}

// ---- Web API over HTTP/1.1 ----------------------------------------------------------------

async fn serve_http(shared: Arc<Shared>, mut stream: TcpStream) {
    let Some((path, headers, body)) = read_request(&mut stream).await else {
        return;
    };
    let method = path
        .split('?')
        .next()
        .unwrap_or("")
        .trim_start_matches("/api/")
        .to_owned();
    shared.with(|s| s.calls.push((method.clone(), Instant::now())));
    let limited = shared.with(|s| match s.rate_limits.get_mut(&method) {
        Some((n, after)) if *n > 0 => {
            *n -= 1;
            Some(*after)
        }
        _ => None,
    });
    if let Some(after) = limited {
        let body = json!({"ok": false, "error": "ratelimited"}).to_string();
        let extra = format!("Retry-After: {after}\r\n");
        let _ = write_response(&mut stream, "429 Too Many Requests", &extra, &body).await;
        return;
    }
    let ctype = headers.get("content-type").cloned().unwrap_or_default();
    let params = parse_body(&ctype, &body);
    let token = headers
        .get("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_owned();
    let reply = shared.with(|s| api_method(&shared, s, &method, &token, &params));
    if let Some(d) = shared.with(|s| s.delays.get(&method).copied()) {
        tokio::time::sleep(d).await;
    }
    let _ = write_response(&mut stream, "200 OK", "", &reply.to_string()).await;
}

fn api_method(shared: &Shared, s: &mut State, method: &str, token: &str, p: &Value) -> Value {
    let err = |e: &str| json!({"ok": false, "error": e});
    let needs_app = method == "apps.connections.open";
    match (token, needs_app) {
        ("", _) => return err("not_authed"),
        (APP_TOKEN, true) | (BOT_TOKEN, false) => {}
        (APP_TOKEN, false) | (BOT_TOKEN, true) => return err("not_allowed_token_type"),
        _ => return err("invalid_auth"),
    }
    if let Some((n, e)) = s.failures.get_mut(method) {
        if *n > 0 {
            *n -= 1;
            return err(&e.clone());
        }
    }
    let str_param = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_owned);
    match method {
        "auth.test" => json!({"ok": true, "url": "https://agp-test.slack.com/", "team": "agp-test",
                              "user": "agp", "team_id": "T0AGP", "user_id": BOT_USER, "bot_id": "B0AGP"}),
        "apps.connections.open" => {
            s.counter += 1;
            s.opens += 1;
            let ticket = format!("ticket-{}", s.counter);
            s.tickets.insert(ticket.clone());
            json!({"ok": true, "url": format!("ws://{}/link/?ticket={ticket}&app_id=A0AGP", shared.ws_addr)})
        }
        "chat.postMessage" => {
            let Some(channel) = str_param("channel") else {
                return err("channel_not_found");
            };
            if channel != CHANNEL {
                return err("channel_not_found");
            }
            s.counter += 1;
            let ts = format!("1700000000.{:06}", s.counter);
            let m = PostedMessage {
                channel: channel.clone(),
                ts: ts.clone(),
                thread_ts: str_param("thread_ts"),
                text: str_param("text").unwrap_or_default(),
                blocks: blocks_param(p),
                updates: 0,
            };
            s.messages.push(m);
            json!({"ok": true, "channel": channel, "ts": ts,
                   "message": {"type": "message", "user": BOT_USER, "ts": ts}})
        }
        "chat.update" => {
            let (Some(channel), Some(ts)) = (str_param("channel"), str_param("ts")) else {
                return err("invalid_arguments");
            };
            let blocks = blocks_param(p);
            match s
                .messages
                .iter_mut()
                .find(|m| m.channel == channel && m.ts == ts)
            {
                None => err("message_not_found"),
                Some(m) => {
                    m.text = str_param("text").unwrap_or_default();
                    m.blocks = blocks;
                    m.updates += 1;
                    json!({"ok": true, "channel": channel, "ts": ts, "text": m.text})
                }
            }
        }
        "chat.postEphemeral" => {
            let (Some(channel), Some(user)) = (str_param("channel"), str_param("user")) else {
                return err("invalid_arguments");
            };
            if !s.users.contains_key(&user) {
                return err("user_not_found");
            }
            s.counter += 1;
            s.ephemerals.push(Ephemeral {
                channel,
                user,
                text: str_param("text").unwrap_or_default(),
                blocks: blocks_param(p),
                thread_ts: str_param("thread_ts"),
            });
            json!({"ok": true, "message_ts": format!("1700000000.{:06}", s.counter)})
        }
        "users.info" => match str_param("user").and_then(|u| s.users.get(&u)) {
            None => err("user_not_found"),
            Some(u) => json!({"ok": true, "user": {
                "id": u.id, "team_id": "T0AGP", "name": u.name.to_lowercase(),
                "real_name": u.name, "deleted": u.deleted, "is_bot": u.is_bot,
                "is_app_user": false, "profile": {"real_name": u.name, "display_name": u.name},
            }}),
        },
        "usergroups.users.list" => match str_param("usergroup").and_then(|g| s.groups.get(&g)) {
            None => err("no_such_subteam"),
            Some(m) => json!({"ok": true, "users": m}),
        },
        _ => err("unknown_method"),
    }
}

/// `blocks` may arrive as JSON (JSON body) or as a JSON string (form body).
fn blocks_param(p: &Value) -> Value {
    match p.get("blocks") {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::Null),
        Some(v) => v.clone(),
        None => Value::Null,
    }
}

fn parse_body(ctype: &str, body: &[u8]) -> Value {
    if ctype.starts_with("application/json") {
        return serde_json::from_slice(body).unwrap_or(Value::Null);
    }
    let text = String::from_utf8_lossy(body);
    let mut map = serde_json::Map::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        map.insert(url_decode(k), Value::String(url_decode(v)));
    }
    Value::Object(map)
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

type Headers = HashMap<String, String>;

async fn read_request(stream: &mut TcpStream) -> Option<(String, Headers, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_owned();
    let headers: Headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Some((path, headers, body))
}

async fn write_response(
    stream: &mut TcpStream,
    status: &str,
    extra_headers: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json; charset=utf-8\r\n\
         Content-Length: {}\r\n{extra_headers}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

// ---- Socket Mode over WebSocket -----------------------------------------------------------

// tungstenite's handshake callback signature fixes the error type.
#[allow(clippy::result_large_err)]
async fn serve_ws(shared: Arc<Shared>, stream: TcpStream) {
    let check = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let uri = req.uri();
        let ticket = uri
            .query()
            .unwrap_or("")
            .split('&')
            .find_map(|kv| kv.strip_prefix("ticket="))
            .unwrap_or("")
            .to_owned();
        // URLs from apps.connections.open are single-use.
        let valid = uri.path() == "/link/" && shared.with(|s| s.tickets.remove(&ticket));
        if valid {
            Ok(resp)
        } else {
            let mut r = ErrorResponse::new(Some("invalid ticket".into()));
            *r.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::UNAUTHORIZED;
            Err(r)
        }
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, check).await else {
        return;
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = shared.with(|s| {
        s.conn_seq += 1;
        // A newer connection replaces the old one, as when Slack rotates links.
        s.conn = Some((s.conn_seq, tx));
        s.conn_seq
    });
    let hello = json!({"type": "hello", "num_connections": 1,
        "debug_info": {"host": "fake-slack", "build_number": 1, "approximate_connection_time": 18060},
        "connection_info": {"app_id": "A0AGP"}});
    if ws
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    shared.with(|s| s.hellos += 1);
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(WsCmd::Text(t)) => {
                    if ws.send(Message::Text(t.into())).await.is_err() { break; }
                }
                Some(WsCmd::Close) => { let _ = ws.close(None).await; break; }
                Some(WsCmd::Abort) | None => break,
            },
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    if let Ok(v) = serde_json::from_str::<Value>(t.as_str()) {
                        if let Some(e) = v.get("envelope_id").and_then(Value::as_str) {
                            let e = e.to_owned();
                            shared.with(|s| s.acks.insert(e));
                        }
                    }
                }
                Some(Ok(_)) => {}
                _ => break,
            },
        }
    }
    shared.with(|s| {
        if s.conn.as_ref().is_some_and(|(c, _)| *c == id) {
            s.conn = None;
        }
    });
}
