//! How the daemon and `agp doctor` find and check the Slack channel of an agp home.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agp_contracts::Journal;

use crate::api::{ApiError, AuthInfo, SlackApi};
use crate::channel::{SlackChannel, SlackError};
use crate::config::{ConfigError, SlackConfig, ENV_BOT_TOKEN};
use crate::pending::SqliteStore;

/// The Slack settings file of an agp home.
pub fn settings_path(agp_home: &Path) -> PathBuf {
    agp_home.join("slack.toml")
}

/// Whether Slack is set up for this home, and if so whether the settings are valid.
#[derive(Debug)]
pub enum SlackSetup {
    /// No `slack.toml` and no `AGP_SLACK_BOT_TOKEN`: Slack is simply not used.
    NotConfigured,
    Configured(SlackConfig),
    Invalid(ConfigError),
}

pub fn setup(agp_home: &Path) -> SlackSetup {
    let file = settings_path(agp_home);
    if !file.exists() && std::env::var_os(ENV_BOT_TOKEN).is_none() {
        return SlackSetup::NotConfigured;
    }
    match SlackConfig::load(&file) {
        Ok(cfg) => SlackSetup::Configured(cfg),
        Err(e) => SlackSetup::Invalid(e),
    }
}

/// Both tokens checked against Slack (for `agp doctor` and `agp slack check`).
#[derive(Debug)]
pub struct TokenCheck {
    /// auth.test with the bot token.
    pub bot: Result<AuthInfo, ApiError>,
    /// apps.connections.open with the app-level token.
    pub app: Result<(), ApiError>,
}

impl TokenCheck {
    pub fn ok(&self) -> bool {
        self.bot.is_ok() && self.app.is_ok()
    }
}

pub async fn check_tokens(cfg: &SlackConfig) -> TokenCheck {
    let api = SlackApi::new(cfg);
    TokenCheck {
        bot: api.auth_test().await,
        app: api.connections_open().await.map(drop),
    }
}

/// The daemon's Slack channel for `agp_home`: settings from `slack.toml` and `AGP_SLACK_*`,
/// pending approvals in the daemon's `state.db` (tables `slack_*`), refused clicks journaled.
/// Must be called inside a tokio runtime; fails if the bot token is refused.
pub async fn open_channel(
    agp_home: &Path,
    state_db: &Path,
    journal: Arc<dyn Journal>,
) -> Result<SlackChannel, SlackError> {
    let cfg = SlackConfig::load(&settings_path(agp_home))?;
    let store = Arc::new(SqliteStore::open(state_db)?);
    SlackChannel::builder(cfg, store)
        .journal(journal)
        .start()
        .await
}
