//! The few Slack Web API methods agp uses, over a small blocking HTTP client (ureq) run on
//! tokio's blocking pool. Rate limits (HTTP 429 + `Retry-After`) are waited out a bounded number
//! of times; every other failure is returned to the caller, who decides how to fail closed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::SlackConfig;
use crate::secret::Secret;

/// How many times one call is retried after a 429 before giving up.
const MAX_RATE_LIMIT_RETRIES: u32 = 5;
/// A `Retry-After` longer than this is treated as "Slack is unavailable" instead of waited out.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Responses larger than this are refused (Slack's are a few KiB).
const MAX_RESPONSE_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Slack {method}: HTTP request failed: {message}")]
    Transport { method: String, message: String },
    #[error("Slack {method}: HTTP status {status}")]
    Status { method: String, status: u16 },
    #[error("Slack {method}: still rate limited after {MAX_RATE_LIMIT_RETRIES} retries")]
    RateLimited { method: String },
    #[error("Slack {method} failed: {error}")]
    Slack { method: String, error: String },
    #[error("Slack {method}: malformed response: {message}")]
    Malformed { method: String, message: String },
}

impl ApiError {
    /// The Slack error code (`invalid_auth`, `channel_not_found`, ...), if Slack sent one.
    pub fn slack_error(&self) -> Option<&str> {
        match self {
            ApiError::Slack { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Which token authenticates a call.
#[derive(Debug, Clone, Copy)]
pub enum Token {
    Bot,
    App,
}

/// Request body: Slack's write methods take JSON, several read methods only form fields.
#[derive(Debug, Clone)]
pub enum Body {
    Json(Value),
    Form(Vec<(&'static str, String)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub id: String,
    pub name: String,
    pub is_bot: bool,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthInfo {
    pub user_id: String,
    pub user: String,
    pub team: String,
    pub bot_id: Option<String>,
}

#[derive(Clone)]
pub struct SlackApi {
    inner: Arc<Inner>,
}

struct Inner {
    agent: ureq::Agent,
    base: String,
    bot: Secret,
    app: Secret,
}

impl std::fmt::Debug for SlackApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackApi")
            .field("base", &self.inner.base)
            .finish_non_exhaustive()
    }
}

impl SlackApi {
    pub fn new(cfg: &SlackConfig) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(cfg.http_timeout))
            .http_status_as_error(false)
            .user_agent(concat!("agp-slack/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        SlackApi {
            inner: Arc::new(Inner {
                agent,
                base: cfg.api_url.clone(),
                bot: cfg.bot_token.clone(),
                app: cfg.app_token.clone(),
            }),
        }
    }

    /// Calls `method` and returns the whole `{"ok":true,...}` object.
    pub async fn call(&self, method: &str, token: Token, body: Body) -> Result<Value, ApiError> {
        let mut retries = 0;
        loop {
            let inner = self.inner.clone();
            let m = method.to_owned();
            let b = body.clone();
            let attempt = tokio::task::spawn_blocking(move || inner.send(&m, token, &b))
                .await
                .map_err(|e| ApiError::Transport {
                    method: method.to_owned(),
                    message: e.to_string(),
                })??;
            match attempt {
                Attempt::Done(v) => return Ok(v),
                Attempt::RateLimited(wait) => {
                    retries += 1;
                    if retries > MAX_RATE_LIMIT_RETRIES || wait > MAX_RETRY_AFTER {
                        return Err(ApiError::RateLimited {
                            method: method.to_owned(),
                        });
                    }
                    tracing::warn!(method, wait_s = wait.as_secs(), "Slack rate limit; waiting");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    pub async fn auth_test(&self) -> Result<AuthInfo, ApiError> {
        let v = self
            .call("auth.test", Token::Bot, Body::Form(vec![]))
            .await?;
        Ok(AuthInfo {
            user_id: str_field(&v, "user_id", "auth.test")?,
            user: v["user"].as_str().unwrap_or_default().to_owned(),
            team: v["team"].as_str().unwrap_or_default().to_owned(),
            bot_id: v["bot_id"].as_str().map(str::to_owned),
        })
    }

    /// A fresh, single-use Socket Mode URL.
    pub async fn connections_open(&self) -> Result<String, ApiError> {
        let v = self
            .call("apps.connections.open", Token::App, Body::Form(vec![]))
            .await?;
        str_field(&v, "url", "apps.connections.open")
    }

    /// Posts a message; returns its `ts`.
    pub async fn post_message(
        &self,
        channel: &str,
        text: &str,
        blocks: Option<&Value>,
        thread_ts: Option<&str>,
    ) -> Result<String, ApiError> {
        let body = with_blocks_and_thread(
            json!({"channel": channel, "text": text, "unfurl_links": false, "unfurl_media": false}),
            blocks,
            thread_ts,
        );
        let v = self
            .call("chat.postMessage", Token::Bot, Body::Json(body))
            .await?;
        str_field(&v, "ts", "chat.postMessage")
    }

    pub async fn update(
        &self,
        channel: &str,
        ts: &str,
        text: &str,
        blocks: &Value,
    ) -> Result<(), ApiError> {
        let body = json!({"channel": channel, "ts": ts, "text": text, "blocks": blocks});
        self.call("chat.update", Token::Bot, Body::Json(body))
            .await
            .map(drop)
    }

    pub async fn post_ephemeral(
        &self,
        channel: &str,
        user: &str,
        text: &str,
        blocks: Option<&Value>,
        thread_ts: Option<&str>,
    ) -> Result<(), ApiError> {
        let body = with_blocks_and_thread(
            json!({"channel": channel, "user": user, "text": text}),
            blocks,
            thread_ts,
        );
        self.call("chat.postEphemeral", Token::Bot, Body::Json(body))
            .await
            .map(drop)
    }

    pub async fn users_info(&self, user: &str) -> Result<UserInfo, ApiError> {
        let v = self
            .call(
                "users.info",
                Token::Bot,
                Body::Form(vec![("user", user.to_owned())]),
            )
            .await?;
        let u = &v["user"];
        let id = str_field(u, "id", "users.info")?;
        let name = u["real_name"]
            .as_str()
            .filter(|s| !s.is_empty())
            .or(u["name"].as_str())
            .unwrap_or(&id)
            .to_owned();
        Ok(UserInfo {
            // App users act for an app, not a person: treated as bots.
            is_bot: u["is_bot"].as_bool().unwrap_or(false)
                || u["is_app_user"].as_bool().unwrap_or(false)
                || id == "USLACKBOT",
            deleted: u["deleted"].as_bool().unwrap_or(false),
            id,
            name,
        })
    }

    pub async fn usergroup_members(&self, group: &str) -> Result<Vec<String>, ApiError> {
        let v = self
            .call(
                "usergroups.users.list",
                Token::Bot,
                Body::Form(vec![("usergroup", group.to_owned())]),
            )
            .await?;
        let users = v["users"].as_array().ok_or_else(|| ApiError::Malformed {
            method: "usergroups.users.list".into(),
            message: "no users array".into(),
        })?;
        Ok(users
            .iter()
            .filter_map(|u| u.as_str().map(str::to_owned))
            .collect())
    }
}

enum Attempt {
    Done(Value),
    RateLimited(Duration),
}

impl Inner {
    fn send(&self, method: &str, token: Token, body: &Body) -> Result<Attempt, ApiError> {
        let url = format!("{}{}", self.base, method);
        let secret = match token {
            Token::Bot => &self.bot,
            Token::App => &self.app,
        };
        let transport = |e: ureq::Error| ApiError::Transport {
            method: method.to_owned(),
            message: e.to_string(),
        };
        let req = self
            .agent
            .post(&url)
            .header("Authorization", &format!("Bearer {}", secret.expose()));
        let mut resp = match body {
            Body::Json(v) => req
                .header("Content-Type", "application/json; charset=utf-8")
                .send(v.to_string())
                .map_err(transport)?,
            Body::Form(fields) => req
                .send_form(fields.iter().map(|(k, v)| (*k, v.as_str())))
                .map_err(transport)?,
        };
        let status = resp.status().as_u16();
        if status == 429 {
            let wait = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(1);
            return Ok(Attempt::RateLimited(Duration::from_secs(wait)));
        }
        if !(200..300).contains(&status) {
            return Err(ApiError::Status {
                method: method.to_owned(),
                status,
            });
        }
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_string()
            .map_err(transport)?;
        let v: Value = serde_json::from_str(&text).map_err(|e| ApiError::Malformed {
            method: method.to_owned(),
            message: e.to_string(),
        })?;
        match v["ok"].as_bool() {
            Some(true) => Ok(Attempt::Done(v)),
            Some(false) => Err(ApiError::Slack {
                method: method.to_owned(),
                error: v["error"].as_str().unwrap_or("unknown_error").to_owned(),
            }),
            None => Err(ApiError::Malformed {
                method: method.to_owned(),
                message: "no \"ok\" field".into(),
            }),
        }
    }
}

/// A post's body with the `blocks` and the thread (`thread_ts`) it may carry.
fn with_blocks_and_thread(
    mut body: Value,
    blocks: Option<&Value>,
    thread_ts: Option<&str>,
) -> Value {
    if let Some(b) = blocks {
        body["blocks"] = b.clone();
    }
    if let Some(t) = thread_ts {
        body["thread_ts"] = json!(t);
    }
    body
}

fn str_field(v: &Value, field: &str, method: &str) -> Result<String, ApiError> {
    v[field]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| ApiError::Malformed {
            method: method.to_owned(),
            message: format!("missing {field}"),
        })
}
