//! Socket Mode over a real WebSocket: the ticket check at the handshake, `hello`, and the
//! envelopes the tests send as people act.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::Message;

use super::{Shared, WsCmd};

// tungstenite's handshake callback signature fixes the error type.
#[allow(clippy::result_large_err)]
pub(super) async fn serve_ws(shared: Arc<Shared>, stream: TcpStream) {
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
                Some(WsCmd::TextThenClose(t)) => {
                    if ws.send(Message::Text(t.into())).await.is_ok() {
                        let _ = ws.close(None).await;
                    }
                    break;
                }
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
