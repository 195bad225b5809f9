//! `[approvals.webhook]` of config.toml, and where the shared secret comes from: a file only
//! its owner may read, or an environment variable; never config.toml itself.

use agp_contracts::url::is_loopback_url;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::secret::{Secret, MIN_SECRET_BYTES};

/// The secret file when neither `secret_file` nor `secret_env` is set (in the agp home). Whoever
/// reads it can approve calls, so it sits with agp's signing keys: sandboxed calls cannot see
/// the agp home, and the policy denies reading `keys/` to any agent, as it does the keys.
pub const DEFAULT_SECRET_FILE: &str = "keys/webhook.secret";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8645";
/// How long a request is retried while the receiver cannot be reached, by default.
pub const DEFAULT_DELIVER_WITHIN_SECS: u64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("[approvals.webhook] {0}")]
    Missing(String),
    #[error("[approvals.webhook] has an unknown key {key:?}: {hint}")]
    UnknownKey { key: String, hint: &'static str },
    #[error("[approvals.webhook] {field} is invalid: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("cannot read the webhook secret {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the webhook secret {path} has mode {mode:o}; run `chmod 600 {path}`")]
    Permissions { path: PathBuf, mode: u32 },
}

/// `[approvals.webhook]` as written. Members agp does not know are collected (not refused by
/// the parser, whose message would quote the line, perhaps a secret) and refused by name.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Settings {
    /// Where approval requests are POSTed (https://, or http:// to this machine).
    pub url: Option<String>,
    /// A file holding the shared secret, mode 0600 (relative: in the agp home).
    pub secret_file: Option<PathBuf>,
    /// The name of an environment variable holding the shared secret.
    pub secret_env: Option<String>,
    /// The decision listener's address [default: 127.0.0.1:8645].
    pub listen: Option<String>,
    /// The callback URL told to the receiver, when it reaches agp through a proxy or tunnel
    /// [default: http://<listen>/agp/v1/decision].
    pub callback_url: Option<String>,
    /// Approver identities (as the receiver names them) whose decisions count.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// How long an undeliverable request is retried before the call is denied [default: 30].
    pub deliver_within_secs: Option<u64>,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, IgnoredAny>,
}

/// Where the secret comes from (for `agp doctor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

impl std::fmt::Display for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::File(p) => write!(f, "file {}", p.display()),
            SecretSource::Env(v) => write!(f, "environment variable {v}"),
        }
    }
}

/// The validated settings of the webhook channel.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: Secret,
    pub secret_source: SecretSource,
    pub listen: SocketAddr,
    pub callback_url: Option<String>,
    pub approvers: Vec<String>,
    pub deliver_within: Duration,
    /// Per-attempt HTTP timeout of a delivery.
    pub http_timeout: Duration,
}

impl WebhookConfig {
    /// Validates `settings` of the agp home `home`, reading the secret from its file or
    /// `env`. Fails closed: a channel nobody can decide on, or a secret others can read, is
    /// refused here rather than at the first approval.
    pub fn from_settings(
        settings: &Settings,
        home: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        if let Some(key) = settings.unknown.keys().next() {
            let hint = if key == "secret" {
                "the secret is never written in config.toml: put it in a file of mode 0600 \
                 (secret_file) or an environment variable (secret_env)"
            } else {
                "expected url, secret_file, secret_env, listen, callback_url, approvers, \
                 deliver_within_secs"
            };
            return Err(ConfigError::UnknownKey {
                key: key.clone(),
                hint,
            });
        }
        let url = settings
            .url
            .clone()
            .ok_or_else(|| ConfigError::Missing("needs url = \"https://...\"".into()))?;
        check_url("url", &url)?;
        if let Some(cb) = &settings.callback_url {
            if !(cb.starts_with("https://") || cb.starts_with("http://")) {
                return Err(ConfigError::Invalid {
                    field: "callback_url",
                    message: "must be an http:// or https:// URL".into(),
                });
            }
        }
        let (secret, secret_source) = read_secret(settings, home, env)?;
        let listen_text = settings.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen_text.parse().map_err(|_| ConfigError::Invalid {
            field: "listen",
            message: format!("{listen_text:?} is not an address:port such as 127.0.0.1:8645"),
        })?;
        if settings.approvers.is_empty() {
            return Err(ConfigError::Missing(
                "needs approvers = [\"...\"]: the identities whose decisions count".into(),
            ));
        }
        for a in &settings.approvers {
            if a.trim().is_empty() || a.len() > 256 || a.chars().any(char::is_control) {
                return Err(ConfigError::Invalid {
                    field: "approvers",
                    message: format!("{a:?} is not an identity (1 to 256 printable characters)"),
                });
            }
        }
        let deliver = settings
            .deliver_within_secs
            .unwrap_or(DEFAULT_DELIVER_WITHIN_SECS);
        if deliver == 0 {
            return Err(ConfigError::Invalid {
                field: "deliver_within_secs",
                message: "must be at least 1".into(),
            });
        }
        Ok(WebhookConfig {
            url,
            secret,
            secret_source,
            listen,
            callback_url: settings.callback_url.clone(),
            approvers: settings.approvers.clone(),
            deliver_within: Duration::from_secs(deliver),
            http_timeout: Duration::from_secs(10),
        })
    }

    /// The receiver's URL as shown in messages, logs and the journal: scheme, host and port
    /// only, since a path or query string (or user info) may carry a token of the receiver's.
    pub fn url_origin(&self) -> String {
        origin(&self.url)
    }

    /// Whether the listener accepts connections from other machines (plain HTTP).
    pub fn listens_beyond_loopback(&self) -> bool {
        !self.listen.ip().is_loopback()
    }
}

/// `scheme://host[:port]` of `url`, without user info, path, query or fragment.
pub fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}")
}

/// Requests carry the (redacted) input of the call: https, or plain http to this machine only.
fn check_url(field: &'static str, url: &str) -> Result<(), ConfigError> {
    if url.starts_with("https://") || is_loopback_url(url, "http://") {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            field,
            message: format!(
                "{url:?} must be an https:// URL (http:// only to 127.0.0.1, ::1 or localhost)"
            ),
        })
    }
}

fn read_secret(
    settings: &Settings,
    home: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(Secret, SecretSource), ConfigError> {
    let (raw, source) = match (&settings.secret_env, &settings.secret_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Invalid {
                field: "secret_env",
                message: "set secret_env or secret_file, not both".into(),
            })
        }
        (Some(var), None) => {
            let value = env(var).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                ConfigError::Missing(format!(
                    "secret_env names {var}, which is not set in agp's environment"
                ))
            })?;
            (value.into_bytes(), SecretSource::Env(var.clone()))
        }
        (None, file) => {
            let path = match file {
                Some(p) if p.is_absolute() => p.clone(),
                Some(p) => home.join(p),
                None => home.join(DEFAULT_SECRET_FILE),
            };
            (read_private(&path)?, SecretSource::File(path))
        }
    };
    let trimmed = trim_ascii(&raw);
    if trimmed.len() < MIN_SECRET_BYTES {
        return Err(ConfigError::Invalid {
            field: "secret",
            message: format!(
                "the secret ({source}) has {} bytes; use at least {MIN_SECRET_BYTES} random bytes \
                 (e.g. `openssl rand -hex 32`)",
                trimmed.len()
            ),
        });
    }
    Ok((Secret::new(trimmed.to_vec()), source))
}

/// A trailing newline (an editor's, `echo`'s) is not part of the secret.
fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &b[start..end]
}

/// Reads a file only its owner may read. The mode is checked on the opened file, so a rename
/// between check and read cannot swap in another one.
fn read_private(path: &Path) -> Result<Vec<u8>, ConfigError> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let read_err = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(read_err)?;
    let meta = f.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(read_err(std::io::Error::other("not a regular file")));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(read_err)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn settings(toml_text: &str) -> Settings {
        toml::from_str(toml_text).unwrap()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn home_with_secret(mode: u32) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(DEFAULT_SECRET_FILE);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("{SECRET}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        dir
    }

    const BASE: &str = "url = \"https://hooks.example/agp\"\napprovers = [\"alice\"]\n";

    #[test]
    fn the_default_secret_file_is_read_trimmed_and_hidden() {
        let home = home_with_secret(0o600);
        let cfg = WebhookConfig::from_settings(&settings(BASE), home.path(), no_env).unwrap();
        assert_eq!(cfg.secret.expose(), SECRET.as_bytes());
        assert_eq!(cfg.listen.to_string(), DEFAULT_LISTEN);
        assert!(!format!("{cfg:?}").contains(SECRET));
        assert_eq!(
            cfg.secret_source,
            SecretSource::File(home.path().join(DEFAULT_SECRET_FILE))
        );
    }

    #[test]
    fn a_secret_file_others_can_read_is_refused() {
        let home = home_with_secret(0o640);
        let err = WebhookConfig::from_settings(&settings(BASE), home.path(), no_env).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn an_inline_secret_or_unknown_key_is_refused_without_echoing_it() {
        let home = home_with_secret(0o600);
        let s = settings(&format!("{BASE}secret = \"{SECRET}\"\n"));
        let err = WebhookConfig::from_settings(&s, home.path(), no_env).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("never written in config.toml"), "{msg}");
        assert!(!msg.contains(SECRET), "{msg}");
        let s = settings(&format!("{BASE}secert = \"{SECRET}\"\n"));
        let msg = WebhookConfig::from_settings(&s, home.path(), no_env)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("secert") && !msg.contains(SECRET), "{msg}");
    }

    #[test]
    fn the_secret_may_come_from_the_environment_and_must_be_long() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(&format!("{BASE}secret_env = \"HOOK_SECRET\"\n"));
        let cfg = WebhookConfig::from_settings(&s, dir.path(), |k| {
            (k == "HOOK_SECRET").then(|| SECRET.to_owned())
        })
        .unwrap();
        assert_eq!(cfg.secret_source, SecretSource::Env("HOOK_SECRET".into()));
        let err = WebhookConfig::from_settings(&s, dir.path(), no_env).unwrap_err();
        assert!(err.to_string().contains("not set"), "{err}");
        let err =
            WebhookConfig::from_settings(&s, dir.path(), |_| Some("short".into())).unwrap_err();
        assert!(err.to_string().contains("at least 32"), "{err}");
    }

    #[test]
    fn only_the_origin_of_the_url_is_shown() {
        assert_eq!(
            origin("https://user:pw@hooks.example:8443/t/0123secret?k=v#f"),
            "https://hooks.example:8443"
        );
        assert_eq!(origin("http://127.0.0.1:9"), "http://127.0.0.1:9");
        assert_eq!(origin("http://[::1]:9/x"), "http://[::1]:9");
    }

    #[test]
    fn urls_listen_addresses_and_approvers_are_checked() {
        let home = home_with_secret(0o600);
        let check = |text: &str| WebhookConfig::from_settings(&settings(text), home.path(), no_env);
        assert!(check("url = \"http://hooks.example/\"\napprovers = [\"a\"]").is_err());
        assert!(check("url = \"http://127.0.0.1@evil.example/\"\napprovers = [\"a\"]").is_err());
        assert!(check("url = \"http://127.0.0.1:9/x\"\napprovers = [\"a\"]").is_ok());
        assert!(check("url = \"https://h/\"\napprovers = []").is_err());
        assert!(check("approvers = [\"a\"]").is_err());
        assert!(check(&format!("{BASE}listen = \"localhost\"")).is_err());
        let cfg = check(&format!("{BASE}listen = \"0.0.0.0:9000\"")).unwrap();
        assert!(cfg.listens_beyond_loopback());
        assert!(check(&format!("{BASE}deliver_within_secs = 0")).is_err());
        assert!(check(&format!("{BASE}callback_url = \"ftp://x\"")).is_err());
    }
}
