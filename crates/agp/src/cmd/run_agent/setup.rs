//! What the agent needs from the host before it starts: its login, its adapter with the
//! settings and variables it passes through, and the domains the policy lets it fetch.

use std::path::{Path, PathBuf};

use agp_contracts::intendant::IntendantAdapter;
use agp_intendants::claude_code::{self, ClaudeCodeAdapter};
use agp_intendants::codex::CodexAdapter;
use anyhow::{anyhow, Context, Result};

use super::{model_keys, LiveAgent};

/// Where Codex sends an API key when no provider is configured.
const OPENAI_API: &str = "https://api.openai.com/v1";
use crate::cmd::agent_binary::AgentBinary;
use crate::cmd::agent_login;

/// Domains the policy allows the agent to fetch (`WebFetch(domain:…)` in allow rules): the
/// sandbox may reach them too.
pub(super) fn policy_domains(path: &Path) -> Result<Vec<String>> {
    let policy = agp_policy::Policy::load(path)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("policy {} is invalid", path.display()))?;
    Ok(policy
        .rules()
        .iter()
        .filter(|r| r.effect == agp_contracts::Decision::Allow)
        .flat_map(|r| r.matchers.iter())
        .filter_map(|m| match &m.spec {
            agp_policy::matcher::Spec::Domain(d) => Some(d.clone()),
            _ => None,
        })
        .collect())
}

fn host_env(names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .filter_map(|n| std::env::var(n).ok().map(|v| (n.to_string(), v)))
        .collect()
}

/// The user's Codex home on the host: `$CODEX_HOME`, else `~/.codex`.
fn codex_home(user_home: &Path) -> PathBuf {
    std::env::var_os("CODEX_HOME")
        .filter(|v| !v.is_empty())
        .map_or_else(|| user_home.join(".codex"), PathBuf::from)
}

/// The configured model provider's base URL and key variable, from the user's Codex config.
fn codex_provider(config: Option<&Path>) -> Result<(Option<String>, Option<String>)> {
    let Some(path) = config else {
        return Ok((None, None));
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: toml::Value =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    let Some(provider) = value.get("model_provider").and_then(|v| v.as_str()) else {
        return Ok((None, None));
    };
    let table = value.get("model_providers").and_then(|p| p.get(provider));
    let url = table
        .and_then(|t| t.get("base_url"))
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let key = table
        .and_then(|t| t.get("env_key"))
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    Ok((url, key))
}

/// The agent's adapter, its model keys replaced by placeholders where agp can add them from
/// outside (see [`model_keys`]).
pub(super) fn adapter(
    agent: LiveAgent,
    binary: &AgentBinary,
    hook_timeout_secs: u64,
    user_home: &Path,
    scratch: &Path,
) -> Result<(Box<dyn IntendantAdapter>, model_keys::Outside)> {
    Ok(match agent {
        LiveAgent::ClaudeCode => {
            let mut env = host_env(claude_code::PASSTHROUGH_ENV);
            let base = env
                .iter()
                .find(|(k, _)| k == "ANTHROPIC_BASE_URL")
                .map_or_else(|| claude_code::DEFAULT_API.to_owned(), |(_, v)| v.clone());
            let outside = model_keys::keep_outside(agent, &mut env, &base, &[]);
            let adapter =
                ClaudeCodeAdapter::new(binary.live_config(hook_timeout_secs, env), user_home);
            (Box::new(adapter), outside)
        }
        LiveAgent::Codex => {
            let home = codex_home(user_home);
            let existing = |name: &str| Some(home.join(name)).filter(|p| p.is_file());
            let user_config = existing("config.toml");
            let (provider_base_url, key_var) = codex_provider(user_config.as_deref())?;
            let mut vars = vec!["OPENAI_API_KEY", "CODEX_API_KEY"];
            if let Some(k) = key_var.as_deref() {
                vars.push(k);
            }
            let mut env = host_env(&vars);
            let mut auth = existing("auth.json");
            if let Some((key, placeholder_file)) = auth
                .as_deref()
                .map(codex_api_key_login)
                .transpose()?
                .flatten()
            {
                // `codex login --with-api-key`: the sandbox sees the file with the placeholder
                // (the same as the variable's), and the key is added from outside.
                if !env.iter().any(|(k, _)| k == "OPENAI_API_KEY") {
                    env.push(("OPENAI_API_KEY".into(), key));
                }
                let copy = scratch.join("codex-auth.json");
                write_private(&copy, &placeholder_file)?;
                auth = Some(copy);
            }
            let base = provider_base_url
                .clone()
                .unwrap_or_else(|| OPENAI_API.to_owned());
            let extra: Vec<String> = key_var.into_iter().collect();
            let outside = model_keys::keep_outside(agent, &mut env, &base, &extra);
            let adapter = CodexAdapter {
                config: binary.live_config(hook_timeout_secs, env),
                auth,
                user_config,
                provider_base_url,
            };
            (Box::new(adapter), outside)
        }
    })
}

/// Codex's `auth.json` when it holds an API key and no ChatGPT tokens: the key, and the file
/// with the placeholder in its place. A ChatGPT login (OAuth tokens, refreshed by Codex itself)
/// is left as it is.
fn codex_api_key_login(path: &Path) -> Result<Option<(String, Vec<u8>)>> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let Ok(serde_json::Value::Object(mut auth)) = serde_json::from_slice(&text) else {
        return Ok(None);
    };
    let key = match auth.get("OPENAI_API_KEY") {
        Some(serde_json::Value::String(k)) if !k.is_empty() => k.clone(),
        _ => return Ok(None),
    };
    if auth.get("tokens").is_some_and(|t| !t.is_null()) {
        return Ok(None);
    }
    auth.insert(
        "OPENAI_API_KEY".into(),
        format!("{}OPENAI_API_KEY", model_keys::PLACEHOLDER_PREFIX).into(),
    );
    Ok(Some((key, serde_json::to_vec_pretty(&auth)?)))
}

fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(contents)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Whether the agent has credentials for its model (before anything else is prepared).
pub(super) fn check_login(agent: LiveAgent, user_home: &Path) -> Result<()> {
    match agent {
        LiveAgent::ClaudeCode => {
            let creds = user_home.join(".claude/.credentials.json");
            agent_login::check_claude(Some(creds.as_path()).filter(|p| p.is_file()))
        }
        LiveAgent::Codex => {
            let home = codex_home(user_home);
            let config = Some(home.join("config.toml")).filter(|p| p.is_file());
            let (url, key_var) = codex_provider(config.as_deref())?;
            let auth = Some(home.join("auth.json")).filter(|p| p.is_file());
            agent_login::check_codex(auth.as_deref(), url.is_some(), key_var.as_deref())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codex_api_key_login_is_rewritten_and_chatgpt_login_left() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("auth.json");
        std::fs::write(
            &p,
            r#"{"OPENAI_API_KEY":"sk-real-1","tokens":null,"last_refresh":null}"#,
        )
        .unwrap();
        let (key, file) = codex_api_key_login(&p).unwrap().unwrap();
        assert_eq!(key, "sk-real-1");
        let file = String::from_utf8(file).unwrap();
        assert!(!file.contains("sk-real-1"), "{file}");
        assert!(file.contains("agp-placeholder-OPENAI_API_KEY"), "{file}");
        assert!(file.contains("last_refresh"), "other fields kept: {file}");
        for left in [
            r#"{"OPENAI_API_KEY":null,"tokens":{"access_token":"a","refresh_token":"r"}}"#,
            r#"{"OPENAI_API_KEY":"sk-real-1","tokens":{"access_token":"a"}}"#,
            "not json",
        ] {
            std::fs::write(&p, left).unwrap();
            assert!(codex_api_key_login(&p).unwrap().is_none(), "{left}");
        }
    }
}
