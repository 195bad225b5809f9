//! Before launching an agent CLI: does it have what it needs to reach its model? Without
//! credentials the CLIs print raw JSON or retry in silence; agp says it in one line, with the fix.

use std::path::Path;

use anyhow::{bail, Result};

fn set(var: &str) -> bool {
    std::env::var_os(var).is_some_and(|v| !v.is_empty())
}

/// Claude Code: an API key or token in the environment, or the login `claude` keeps.
pub fn check_claude(credentials: Option<&Path>) -> Result<()> {
    const VARS: &[&str] = &[
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "CLAUDE_CODE_OAUTH_TOKEN",
    ];
    if credentials.is_some() || VARS.iter().any(|v| set(v)) {
        return Ok(());
    }
    bail!(
        "Claude Code is not logged in: set ANTHROPIC_API_KEY (or CLAUDE_CODE_OAUTH_TOKEN from \
         `claude setup-token`), or log in once with `claude` (agp reuses ~/.claude/.credentials.json)"
    )
}

/// Codex: its `auth.json`, or the key variable of its model provider. A custom provider
/// without `env_key` needs no key.
pub fn check_codex(
    auth: Option<&Path>,
    custom_provider: bool,
    key_var: Option<&str>,
) -> Result<()> {
    if auth.is_some() {
        return Ok(());
    }
    match key_var {
        Some(var) if set(var) => Ok(()),
        Some(var) => bail!(
            "Codex has no credentials: set {var} (the env_key of the model provider in its \
             config.toml), or log in with `codex login`"
        ),
        None if custom_provider => Ok(()),
        None if set("OPENAI_API_KEY") || set("CODEX_API_KEY") => Ok(()),
        None => bail!(
            "Codex is not logged in: set OPENAI_API_KEY, or log in with `codex login` (agp reuses \
             $CODEX_HOME/auth.json)"
        ),
    }
}
