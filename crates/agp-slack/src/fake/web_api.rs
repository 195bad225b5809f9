//! The Web API methods agp calls, answered as Slack answers them (`{"ok":...}` envelopes,
//! 429 with `Retry-After` when rate limited).

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use tokio::net::TcpStream;

use super::http::{parse_body, read_request, write_response};
use super::{Ephemeral, PostedMessage, Shared, State, APP_TOKEN, BOT_TOKEN, BOT_USER, CHANNEL};

pub(super) async fn serve_http(shared: Arc<Shared>, mut stream: TcpStream) {
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
