//! The shared state of team mode (`[state] url` in config.toml) for the operator commands:
//! they are synchronous, so each opens the store on a small runtime of its own.

use anyhow::{Context, Result};

use crate::app::config::Config;
use crate::home::Home;

/// Where this home's shared state is: `(url, member)`, or `None` for the local SQLite file.
pub fn shared(home: &Home) -> Result<Option<(String, String)>> {
    if !home.config().is_file() {
        return Ok(None);
    }
    let file = Config::load(home)?;
    Ok(file.state.url.map(|url| {
        let member = file
            .state
            .member
            .unwrap_or_else(|| agp_daemon::default_member(home.root()));
        (url, member)
    }))
}

/// Runs `f` against the shared store at `url`, as `member`.
pub fn with_shared<T>(
    url: &str,
    member: &str,
    f: impl AsyncFnOnce(&agp_daemon::store::PgStore) -> Result<T>,
) -> Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime for the shared state")?;
    rt.block_on(async {
        let store = agp_daemon::store::PgStore::connect(url, member)
            .await
            .context("cannot open the shared state ([state] url in config.toml)")?;
        f(&store).await
    })
}
