//! What people do to Slack, sent down the Socket Mode connection: click buttons (also forged
//! ones), and what Slack itself does to the connection: disconnect, drop it, send garbage.

use serde_json::{json, Value};

use super::{FakeSlack, PostedMessage, WsCmd, BOT_USER};

impl FakeSlack {
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
        self.click_with(user, &msg, &button)
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
        self.click_with(user, &msg, &button)
    }

    fn click_with(
        &self,
        user: &str,
        msg: &PostedMessage,
        button: &Value,
    ) -> Result<String, String> {
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
        self.send(WsCmd::TextThenClose(msg.to_string()))
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
