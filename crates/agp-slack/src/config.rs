//! Where the Slack channel's settings and tokens come from: the environment first, then a
//! `slack.toml` that only its owner may read (mode 0600).

use agp_contracts::url::is_loopback_url;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::secret::Secret;

pub const ENV_BOT_TOKEN: &str = "AGP_SLACK_BOT_TOKEN";
pub const ENV_APP_TOKEN: &str = "AGP_SLACK_APP_TOKEN";
pub const ENV_CHANNEL: &str = "AGP_SLACK_CHANNEL";
pub const ENV_APPROVERS: &str = "AGP_SLACK_APPROVERS";
pub const ENV_APPROVER_GROUP: &str = "AGP_SLACK_APPROVER_GROUP";
pub const ENV_API_URL: &str = "AGP_SLACK_API_URL";
pub const DEFAULT_API_URL: &str = "https://slack.com/api/";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds Slack tokens but its mode is {mode:o}; run `chmod 600 {path}`")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("{path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("Slack is not configured: {0}")]
    Missing(String),
    #[error("Slack setting {field} is invalid: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

/// The settings file as written by an operator. Every field is optional because the
/// environment may supply it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    bot_token: Option<String>,
    app_token: Option<String>,
    channel: Option<String>,
    approvers: Option<Vec<String>>,
    approver_group: Option<String>,
    api_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// Bot token (`xoxb-`): Web API calls.
    pub bot_token: Secret,
    /// App-level token (`xapp-`, scope `connections:write`): Socket Mode only.
    pub app_token: Secret,
    /// Channel id where sessions and approvals are posted.
    pub channel: String,
    /// Slack user ids allowed to decide.
    pub approvers: Vec<String>,
    /// A user group (`S...`) whose current members may also decide.
    pub approver_group: Option<String>,
    /// Web API base URL, always ending in `/`.
    pub api_url: String,
    /// Per-request HTTP timeout.
    pub http_timeout: Duration,
    /// Upper bound of the Socket Mode reconnect backoff.
    pub max_backoff: Duration,
    /// How many characters of the redacted input the approval message shows before "Details".
    pub preview_chars: usize,
}

impl SlackConfig {
    /// A config with the given tokens and channel and the defaults for everything else.
    pub fn new(bot_token: Secret, app_token: Secret, channel: impl Into<String>) -> Self {
        SlackConfig {
            bot_token,
            app_token,
            channel: channel.into(),
            approvers: Vec::new(),
            approver_group: None,
            api_url: DEFAULT_API_URL.to_owned(),
            http_timeout: Duration::from_secs(15),
            max_backoff: Duration::from_secs(30),
            preview_chars: 600,
        }
    }

    /// Loads `file` (if it exists) and lets the process environment override it.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        Self::load_with(file, |k| std::env::var(k).ok())
    }

    /// As [`load`](Self::load) with an explicit environment, for tests.
    pub fn load_with(
        file: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let from_file = read_file(file)?;
        let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let bot = env(ENV_BOT_TOKEN).or(from_file.bot_token).ok_or_else(|| {
            ConfigError::Missing(format!(
                "no bot token (set {ENV_BOT_TOKEN} or bot_token in {})",
                file.display()
            ))
        })?;
        let app = env(ENV_APP_TOKEN).or(from_file.app_token).ok_or_else(|| {
            ConfigError::Missing(format!(
                "no app-level token (set {ENV_APP_TOKEN} or app_token in {})",
                file.display()
            ))
        })?;
        let channel = env(ENV_CHANNEL).or(from_file.channel).ok_or_else(|| {
            ConfigError::Missing(format!(
                "no channel (set {ENV_CHANNEL} or channel in {})",
                file.display()
            ))
        })?;
        let mut cfg = SlackConfig::new(Secret::new(bot), Secret::new(app), channel);
        cfg.approvers = match env(ENV_APPROVERS) {
            Some(list) => list
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            None => from_file.approvers.unwrap_or_default(),
        };
        cfg.approver_group = env(ENV_APPROVER_GROUP).or(from_file.approver_group);
        if let Some(url) = env(ENV_API_URL).or(from_file.api_url) {
            cfg.api_url = url;
        }
        cfg.validate()
    }

    /// Checks the settings and normalises the API URL. Fails closed: a channel nobody may
    /// decide on is refused here rather than turning every approval into a timeout.
    pub fn validate(mut self) -> Result<Self, ConfigError> {
        if !self.bot_token.expose().starts_with("xoxb-") {
            return Err(ConfigError::Invalid {
                field: "bot_token",
                message: "a bot token starts with xoxb-".into(),
            });
        }
        if !self.app_token.expose().starts_with("xapp-") {
            return Err(ConfigError::Invalid {
                field: "app_token",
                message: "Socket Mode needs an app-level token (xapp-...)".into(),
            });
        }
        if !is_slack_id(&self.channel) {
            return Err(ConfigError::Invalid {
                field: "channel",
                message: format!("{:?} is not a channel id (C..., G...)", self.channel),
            });
        }
        for a in &self.approvers {
            if !is_slack_id(a) {
                return Err(ConfigError::Invalid {
                    field: "approvers",
                    message: format!("{a:?} is not a Slack user id (U..., W...)"),
                });
            }
        }
        if let Some(g) = &self.approver_group {
            if !is_slack_id(g) {
                return Err(ConfigError::Invalid {
                    field: "approver_group",
                    message: format!("{g:?} is not a user group id (S...)"),
                });
            }
        }
        if self.approvers.is_empty() && self.approver_group.is_none() {
            return Err(ConfigError::Missing(
                "no approvers: list Slack user ids in approvers or set approver_group".into(),
            ));
        }
        // Tokens travel in the Authorization header: plain http only to this machine (tests,
        // a local relay), never across a network.
        if !(self.api_url.starts_with("https://") || is_loopback_url(&self.api_url, "http://")) {
            return Err(ConfigError::Invalid {
                field: "api_url",
                message: "must be an https:// URL (http:// only to 127.0.0.1, ::1 or localhost)"
                    .into(),
            });
        }
        if !self.api_url.ends_with('/') {
            self.api_url.push('/');
        }
        Ok(self)
    }
}

/// Slack ids are upper-case alphanumerics (`U024BE7LH`, `C0123`, `S0614TZR7`).
fn is_slack_id(s: &str) -> bool {
    (2..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileConfig::default()),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        // toml's message quotes the offending line, which may be a token: keep only the reason.
        message: e.message().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    const FULL: &[(&str, &str)] = &[
        (ENV_BOT_TOKEN, "xoxb-1"),
        (ENV_APP_TOKEN, "xapp-1"),
        (ENV_CHANNEL, "C1"),
        (ENV_APPROVERS, "U1, U2"),
    ];

    #[test]
    fn environment_alone_is_enough() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SlackConfig::load_with(&dir.path().join("slack.toml"), env(FULL)).unwrap();
        assert_eq!(cfg.approvers, vec!["U1", "U2"]);
        assert_eq!(cfg.api_url, DEFAULT_API_URL);
        assert!(!format!("{cfg:?}").contains("xoxb-1"));
    }

    #[test]
    fn a_readable_by_others_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("slack.toml");
        std::fs::write(&p, "bot_token = \"xoxb-2\"\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SlackConfig::load_with(&p, env(FULL)).unwrap_err();
        assert!(matches!(err, ConfigError::Permissions { .. }), "{err}");
    }

    #[test]
    fn file_values_apply_and_env_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("slack.toml");
        std::fs::write(
            &p,
            "bot_token = \"xoxb-file\"\napp_token = \"xapp-file\"\nchannel = \"C9\"\n\
             approver_group = \"S1\"\napi_url = \"http://127.0.0.1:1/api\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let cfg = SlackConfig::load_with(&p, env(&[(ENV_BOT_TOKEN, "xoxb-env")])).unwrap();
        assert_eq!(cfg.bot_token.expose(), "xoxb-env");
        assert_eq!(cfg.app_token.expose(), "xapp-file");
        assert_eq!(cfg.api_url, "http://127.0.0.1:1/api/");
        assert_eq!(cfg.approver_group.as_deref(), Some("S1"));
    }

    #[test]
    fn plain_http_is_only_for_loopback() {
        assert!(is_loopback_url("http://127.0.0.1:8080/api/", "http://"));
        assert!(is_loopback_url("http://[::1]:1/api/", "http://"));
        assert!(is_loopback_url("http://localhost/api/", "http://"));
        assert!(!is_loopback_url("http://slack.example.com/api/", "http://"));
        assert!(!is_loopback_url(
            "http://127.0.0.1@evil.example/api/",
            "http://"
        ));
        assert!(!is_loopback_url(
            "http://127.0.0.1.evil.example/",
            "http://"
        ));
        let dir = tempfile::tempdir().unwrap();
        let mut e: Vec<(&str, &str)> = FULL.to_vec();
        e.push((ENV_API_URL, "http://slack.example.com/api/"));
        let err = SlackConfig::load_with(&dir.path().join("x.toml"), env(&e)).unwrap_err();
        assert!(err.to_string().contains("https"), "{err}");
    }

    #[test]
    fn no_approvers_or_swapped_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("none.toml");
        let err = SlackConfig::load_with(&p, env(&FULL[..3])).unwrap_err();
        assert!(err.to_string().contains("no approvers"), "{err}");
        let swapped = [
            (ENV_BOT_TOKEN, "xapp-1"),
            (ENV_APP_TOKEN, "xoxb-1"),
            (ENV_CHANNEL, "C1"),
            (ENV_APPROVERS, "U1"),
        ];
        let err = SlackConfig::load_with(&p, env(&swapped)).unwrap_err();
        assert!(err.to_string().contains("bot_token"), "{err}");
        assert!(!err.to_string().contains("xapp-1"));
    }
}
