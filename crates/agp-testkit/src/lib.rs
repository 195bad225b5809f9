//! Test support for agp's real-agent tests, [`MemJournal`], the in-memory journal the crates'
//! tests share, and [`pty`], a pseudo-terminal for tests that play the human at a terminal.
//!
//! [`FakeModel`] is a scripted model API on `127.0.0.1`: an Anthropic Messages endpoint
//! (`POST /v1/messages`, streamed as Server-Sent Events with `event:` lines, which is what Claude
//! Code expects) or an OpenAI Responses endpoint (`POST /v1/responses`, what Codex expects). Each
//! agent turn takes the next scripted [`Turn`] — a tool call or a final text — and every request
//! body is recorded, so a test can assert what the model was told (for example that a
//! `tool_result` carries agp's deny reason).

pub mod browser;
pub mod docker;
mod http;
mod journal;
pub mod podman;
pub mod postgres;
pub mod pty;
mod refused;
mod sse;
pub mod tls;

pub use journal::{Appended, MemJournal, BROKEN};
pub use refused::RefusedPort;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

/// Which wire API the fake model speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Anthropic Messages (`POST /v1/messages`).
    Anthropic,
    /// OpenAI Responses (`POST /v1/responses`).
    OpenAiResponses,
}

/// One scripted model turn.
#[derive(Debug, Clone, PartialEq)]
pub enum Turn {
    /// Run a shell command with the client's shell tool (`Bash` for Claude Code,
    /// `exec_command` for Codex).
    Shell(String),
    /// Call a named tool with this input object.
    Tool { name: String, input: Value },
    /// Answer with text and end the turn.
    Text(String),
    /// Codex only: type `chars` into the command session the previous tool output named
    /// ("session ID N") with the `write_stdin` tool.
    WriteStdin(String),
}

/// One request the fake model received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub body: Value,
    /// The request's headers as received (names as sent), in order.
    pub headers: Vec<(String, String)>,
    /// Whether this request took a scripted turn (agent turns carry tools; auxiliary requests
    /// such as title generation do not).
    pub scripted: bool,
}

struct State {
    turns: std::collections::VecDeque<Turn>,
    requests: Vec<RecordedRequest>,
    next_id: u64,
}

/// A running fake model server; stops accepting when dropped.
pub struct FakeModel {
    api: Api,
    addr: SocketAddr,
    /// Served over TLS (with a certificate from a [`tls::TestCa`]).
    https: bool,
    state: Arc<Mutex<State>>,
}

/// Text the fake model answers with once the script is exhausted.
pub const DONE_TEXT: &str = "All done.";

impl FakeModel {
    pub fn start(api: Api, turns: Vec<Turn>) -> io::Result<Self> {
        Self::serve(api, turns, None)
    }

    /// As [`FakeModel::start`], over HTTPS with `tls`'s certificate (see [`tls::TestCa`]).
    pub fn start_tls(
        api: Api,
        turns: Vec<Turn>,
        tls: Arc<rustls::ServerConfig>,
    ) -> io::Result<Self> {
        Self::serve(api, turns, Some(tls))
    }

    fn serve(
        api: Api,
        turns: Vec<Turn>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<Self> {
        let https = tls.is_some();
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            turns: turns.into(),
            requests: Vec::new(),
            next_id: 1,
        }));
        let shared = state.clone();
        std::thread::Builder::new()
            .name("fake-model".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let Ok(stream) = conn else { continue };
                    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(30)));
                    let shared = shared.clone();
                    let tls = tls.clone();
                    std::thread::spawn(move || match tls {
                        None => http::serve_connection(stream, api, &shared),
                        Some(config) => {
                            let Ok(conn) = rustls::ServerConnection::new(config) else {
                                return;
                            };
                            let tls = rustls::StreamOwned::new(conn, stream);
                            http::serve_connection(tls, api, &shared);
                        }
                    });
                }
            })?;
        Ok(Self {
            api,
            addr,
            https,
            state,
        })
    }

    pub fn anthropic(turns: Vec<Turn>) -> io::Result<Self> {
        Self::start(Api::Anthropic, turns)
    }

    pub fn openai(turns: Vec<Turn>) -> io::Result<Self> {
        Self::start(Api::OpenAiResponses, turns)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL a client is configured with: `http://127.0.0.1:PORT` for Anthropic
    /// (`ANTHROPIC_BASE_URL`), `http://127.0.0.1:PORT/v1` for a Codex provider `base_url`.
    pub fn base_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        match self.api {
            Api::Anthropic => format!("{scheme}://{}", self.addr),
            Api::OpenAiResponses => format!("{scheme}://{}/v1", self.addr),
        }
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// Turns not yet taken.
    pub fn remaining_turns(&self) -> usize {
        self.lock().turns.len()
    }

    /// Every tool result the client sent back to the model, in order, as
    /// `(call id, text, is_error)`. `is_error` is what the client said (Anthropic) or `None`
    /// (the Responses API has no such flag).
    pub fn tool_results(&self) -> Vec<(String, String, Option<bool>)> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for r in self.requests() {
            for item in tool_results_in(&r.body) {
                // Each request repeats the whole conversation: keep the first sighting.
                if seen.insert(item.0.clone()) {
                    out.push(item);
                }
            }
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn tool_results_in(body: &Value) -> Vec<(String, String, Option<bool>)> {
    let mut out = Vec::new();
    // Anthropic: messages[].content[] of type tool_result.
    for msg in body["messages"].as_array().into_iter().flatten() {
        for block in msg["content"].as_array().into_iter().flatten() {
            if block["type"] == "tool_result" {
                let id = block["tool_use_id"].as_str().unwrap_or_default().to_owned();
                out.push((
                    id,
                    content_text(&block["content"]),
                    block["is_error"].as_bool(),
                ));
            }
        }
    }
    // Responses: input[] of type function_call_output.
    for item in body["input"].as_array().into_iter().flatten() {
        if item["type"] == "function_call_output" {
            let id = item["call_id"].as_str().unwrap_or_default().to_owned();
            out.push((id, content_text(&item["output"]), None));
        }
    }
    out
}

/// Flattens a content value (a string, or a list of text blocks) to text.
fn content_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| match &i["text"] {
                Value::String(s) => s.clone(),
                _ => content_text(i),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The next response for a request: a scripted turn for agent requests, a short text otherwise.
fn respond(
    api: Api,
    state: &Mutex<State>,
    path: &str,
    headers: Vec<(String, String)>,
    body: Value,
) -> Vec<u8> {
    let mut st = state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let has_tools = body["tools"].as_array().is_some_and(|t| !t.is_empty());
    let turn = if has_tools {
        st.turns.pop_front().unwrap_or(Turn::Text(DONE_TEXT.into()))
    } else {
        Turn::Text("ok".into())
    };
    // Tool call ids count scripted turns only (`toolu_fake_1` is the first scripted call),
    // whatever auxiliary requests the client makes in between.
    let id = if has_tools {
        st.next_id += 1;
        st.next_id - 1
    } else {
        0
    };
    let turn = match turn {
        Turn::WriteStdin(chars) => Turn::Tool {
            name: "write_stdin".into(),
            input: json!({"session_id": last_session_id(&body), "chars": chars,
                          "yield_time_ms": 1000}),
        },
        other => other,
    };
    st.requests.push(RecordedRequest {
        method: "POST".into(),
        path: path.into(),
        body,
        headers,
        scripted: has_tools,
    });
    drop(st);
    match api {
        Api::Anthropic => sse::anthropic(&turn, id),
        Api::OpenAiResponses => sse::responses(&turn, id),
    }
}

/// The last "session ID N" a tool output in the conversation named (0 when none).
fn last_session_id(body: &Value) -> u64 {
    let text = body.to_string();
    text.rmatch_indices("session ID ")
        .find_map(|(i, m)| {
            let digits: String = text[i + m.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .unwrap_or(0)
}

/// The Claude Code tool call for a shell command.
fn anthropic_tool(turn: &Turn) -> Option<(String, Value)> {
    match turn {
        Turn::Shell(cmd) => Some((
            "Bash".into(),
            json!({"command": cmd, "description": "scripted by the fake model"}),
        )),
        Turn::Tool { name, input } => Some((name.clone(), input.clone())),
        Turn::Text(_) | Turn::WriteStdin(_) => None,
    }
}

/// The Codex tool call for a shell command.
fn responses_tool(turn: &Turn) -> Option<(String, Value)> {
    match turn {
        Turn::Shell(cmd) => Some(("exec_command".into(), json!({"cmd": cmd}))),
        Turn::Tool { name, input } => Some((name.clone(), input.clone())),
        Turn::Text(_) | Turn::WriteStdin(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn post(addr: SocketAddr, path: &str, body: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// The names of the server-sent events in a response, in order.
    fn event_names(response: &str) -> Vec<&str> {
        response
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect()
    }

    #[test]
    fn anthropic_stream_has_event_lines_and_tool_use() {
        let m = FakeModel::anthropic(vec![Turn::Shell("echo hi".into())]).unwrap();
        let out = post(
            m.addr(),
            "/v1/messages?beta=true",
            r#"{"stream":true,"tools":[{"name":"Bash"}],"messages":[]}"#,
        );
        assert!(out.starts_with("HTTP/1.1 200"));
        assert!(out.contains("text/event-stream"));
        let events = event_names(&out);
        assert_eq!(
            events,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert!(out.contains(r#""stop_reason":"tool_use""#));
        assert!(out.contains("echo hi"));
        // Script exhausted: a final text.
        let out = post(
            m.addr(),
            "/v1/messages",
            r#"{"tools":[{"name":"Bash"}],"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"denied by agp","is_error":true}]}]}"#,
        );
        assert!(out.contains(r#""stop_reason":"end_turn""#));
        assert!(out.contains(DONE_TEXT));
        assert_eq!(
            m.tool_results(),
            vec![("toolu_1".into(), "denied by agp".into(), Some(true))]
        );
        assert_eq!(m.requests().len(), 2);
    }

    #[test]
    fn responses_stream_has_function_call_and_completion() {
        let m = FakeModel::openai(vec![Turn::Shell("ls".into())]).unwrap();
        let out = post(
            m.addr(),
            "/v1/responses",
            r#"{"stream":true,"tools":[{"type":"function"}],"input":[]}"#,
        );
        let events = event_names(&out);
        assert_eq!(
            events,
            [
                "response.created",
                "response.output_item.added",
                "response.output_item.done",
                "response.completed"
            ]
        );
        assert!(out.contains(r#""name":"exec_command""#));
        assert!(out.contains(r#"\"cmd\":\"ls\""#));
        let _ = post(
            m.addr(),
            "/v1/responses",
            r#"{"tools":[{"type":"function"}],"input":[{"type":"function_call_output","call_id":"call_1","output":"Command blocked by PreToolUse hook: no"}]}"#,
        );
        assert_eq!(
            m.tool_results()[0].1,
            "Command blocked by PreToolUse hook: no"
        );
    }

    #[test]
    fn write_stdin_targets_the_last_named_session() {
        let m = FakeModel::openai(vec![Turn::WriteStdin("hi\n".into())]).unwrap();
        let body = r#"{"tools":[{"type":"function"}],"input":[{"type":"function_call_output","call_id":"c","output":"Process running with session ID 4242\nOutput:"}]}"#;
        let out = post(m.addr(), "/v1/responses", body);
        assert!(out.contains(r#""name":"write_stdin""#), "{out}");
        assert!(out.contains(r#"\"session_id\":4242"#), "{out}");
    }

    #[test]
    fn unknown_paths_and_bad_bodies_get_errors() {
        let m = FakeModel::anthropic(vec![]).unwrap();
        assert!(post(m.addr(), "/v1/other", "{}").starts_with("HTTP/1.1 404"));
        assert!(post(m.addr(), "/v1/messages", "not json").starts_with("HTTP/1.1 400"));
        assert!(m.requests().is_empty());
    }
}
