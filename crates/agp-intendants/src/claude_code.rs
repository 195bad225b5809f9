//! Claude Code, governed through its hooks, inside agp's sandbox.
//!
//! The hook wiring lives in the MANAGED settings file (`/etc/claude-code/managed-settings.json`,
//! bound read-only) with `allowManagedHooksOnly: true`, so neither the agent nor the repository
//! can add, remove or shadow a hook: project and `--settings` hooks are suppressed. agp never
//! passes `--bare` (it skips every hook) nor any flag that loads other settings.

use std::path::PathBuf;

use agp_contracts::intendant::{IntendantError, LaunchContext, ProcessPlan, SeededFile};
use agp_contracts::sandbox::SANDBOX_HOME;
use serde_json::{json, Value};

use crate::identity;
use crate::live::{self, LiveConfig};

pub const NAME: &str = "claude-code";
/// Where Claude Code reads managed settings.
pub const MANAGED_SETTINGS: &str = "/etc/claude-code/managed-settings.json";
/// The vendor's API host when no `ANTHROPIC_BASE_URL` is configured.
pub const DEFAULT_API: &str = "https://api.anthropic.com";

/// Host environment variables passed through when set (the user's own configuration of the
/// agent; agp holds no model key).
pub const PASSTHROUGH_ENV: &[&str] = &[
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "ANTHROPIC_MODEL",
    "ANTHROPIC_SMALL_FAST_MODEL",
];

/// The events agp's hook is wired to.
pub const HOOK_EVENTS: &[&str] = &["PreToolUse", "PostToolUse", "PostToolUseFailure"];

/// Flags that would skip or replace the managed hook wiring.
const FORBIDDEN_FLAGS: &[&str] = &[
    "--bare",
    "--settings",
    "--managed-settings",
    "--setting-sources",
    "--dangerously-skip-permissions",
];

pub struct ClaudeCodeAdapter {
    pub config: LiveConfig,
    /// The user's existing Claude Code login (`~/.claude/.credentials.json`), bound read-only
    /// when present.
    pub credentials: Option<PathBuf>,
}

impl ClaudeCodeAdapter {
    pub fn new(config: LiveConfig, user_home: &std::path::Path) -> Self {
        let creds = user_home.join(".claude/.credentials.json");
        Self {
            config,
            credentials: creds.is_file().then_some(creds),
        }
    }

    /// The API base URL the agent will use.
    pub fn api_base_url(&self) -> String {
        self.config
            .passthrough_env
            .iter()
            .find(|(k, _)| k == "ANTHROPIC_BASE_URL")
            .map_or_else(|| DEFAULT_API.into(), |(_, v)| v.clone())
    }

    /// Whether this version honours `"onFailure": "block"` (older ones ignore the key).
    pub fn blocks_on_hook_failure(&self) -> bool {
        self.config
            .version
            .is_some_and(|v| v >= identity::CLAUDE_ON_FAILURE_BLOCK)
    }

    /// The managed settings: agp's hooks on every tool, and nothing else may add hooks.
    /// `PostToolUseFailure` too: Claude Code 2.1.197 fires only that one for a failed call.
    pub fn managed_settings(&self, ctx: &LaunchContext) -> Value {
        let mut entry = json!({
            "type": "command",
            "command": live::hook_command(ctx, NAME),
            "timeout": self.config.harness_hook_timeout_secs(),
        });
        if self.blocks_on_hook_failure() {
            // A hook that cannot start or is killed blocks the call instead of letting it run.
            entry["onFailure"] = json!("block");
        }
        let hook = json!([{"matcher": "*", "hooks": [entry]}]);
        let mut hooks = serde_json::Map::new();
        for event in HOOK_EVENTS {
            hooks.insert(event.to_string(), hook.clone());
        }
        json!({
            "allowManagedHooksOnly": true,
            "disableAllHooks": false,
            "hooks": hooks,
        })
    }
}

live::live_adapter!(ClaudeCodeAdapter);

impl live::LiveAgent for ClaudeCodeAdapter {
    const NAME: &'static str = NAME;
    const EXE: &'static str = "claude";
    const HEADLESS_ARGS: &'static [&'static str] = &["-p", "--output-format", "json"];
    const ARGS: &'static [&'static str] = &[];
    const FORBIDDEN_FLAGS: &'static [&'static str] = FORBIDDEN_FLAGS;

    fn config(&self) -> &LiveConfig {
        &self.config
    }

    fn launch(&self, ctx: &LaunchContext) -> Result<live::AgentLaunch, IntendantError> {
        let mut env: Vec<(String, String)> = [
            ("DISABLE_TELEMETRY", "1"),
            ("DISABLE_ERROR_REPORTING", "1"),
            ("DISABLE_AUTOUPDATER", "1"),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        // Every command line the harness runs (Bash, hooks, MCP servers) goes through agp's
        // wrapper: the daemon tells the hook from the agent's tools by it.
        env.push((
            "CLAUDE_CODE_SHELL_PREFIX".into(),
            live::tool_shell_prefix(ctx),
        ));
        let settings = serde_json::to_vec_pretty(&self.managed_settings(ctx))
            .map_err(|e| IntendantError::Invalid(e.to_string()))?;
        let ro_binds = self
            .credentials
            .iter()
            .map(|c| {
                (
                    c.clone(),
                    PathBuf::from(SANDBOX_HOME).join(".claude/.credentials.json"),
                )
            })
            .collect();
        let (host, port) = authority(&self.api_base_url())?;
        let mut files = vec![SeededFile {
            path: MANAGED_SETTINGS.into(),
            contents: settings,
            mode: 0o644,
            read_only: true,
        }];
        if ctx.interactive {
            // A fresh HOME would start the first-run onboarding, whose connectivity check goes
            // to the vendor host whatever the base URL, and the folder-trust prompt. The user
            // chose the repository by launching agp on it; the hooks are managed either way.
            let state = json!({
                "hasCompletedOnboarding": true,
                "projects": {ctx.repo.display().to_string(): {"hasTrustDialogAccepted": true}},
            });
            files.push(SeededFile {
                path: PathBuf::from(SANDBOX_HOME).join(".claude.json"),
                contents: state.to_string().into_bytes(),
                mode: 0o600,
                read_only: false,
            });
        }
        Ok(live::AgentLaunch {
            env,
            ro_binds,
            files,
            egress_hosts: vec![format!("{host}:{port}")],
        })
    }

    fn check_wiring(&self, ctx: &LaunchContext, p: &ProcessPlan) -> Result<(), IntendantError> {
        let file = live::managed_file(NAME, p, MANAGED_SETTINGS, "settings")?;
        let settings: Value = serde_json::from_slice(&file.contents)
            .map_err(|e| live::unverified(NAME, format!("managed settings are not JSON: {e}")))?;
        if settings["allowManagedHooksOnly"] != true {
            return Err(live::unverified(NAME, "allowManagedHooksOnly is not set"));
        }
        if settings["disableAllHooks"] == true {
            return Err(live::unverified(NAME, "disableAllHooks is set"));
        }
        let command = live::hook_command(ctx, NAME);
        let must_block = self.blocks_on_hook_failure();
        for event in HOOK_EVENTS {
            let wired = settings["hooks"][event].as_array().is_some_and(|groups| {
                groups.iter().any(|g| {
                    matches!(g["matcher"].as_str(), Some("*" | "") | None)
                        && g["hooks"].as_array().is_some_and(|hs| {
                            hs.iter().any(|h| {
                                h["type"] == "command"
                                    && h["command"] == command.as_str()
                                    && (!must_block || h["onFailure"] == "block")
                            })
                        })
                })
            });
            if !wired {
                let fail_closed = if must_block {
                    " failing closed (onFailure: block)"
                } else {
                    ""
                };
                return Err(live::unverified(
                    NAME,
                    format!("no agp hook{fail_closed} on every tool for {event}"),
                ));
            }
        }
        Ok(())
    }
}

/// Host and port of an http(s) base URL (IPv6 literals are not supported here).
pub(crate) fn authority(url: &str) -> Result<(String, u16), IntendantError> {
    let bad = || IntendantError::Invalid(format!("API base URL {url:?} is not an http(s) URL"));
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let default = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return Err(bad()),
    };
    let auth = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (host, port) = match auth.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
        None => (auth, default),
    };
    if host.is_empty() || host.contains(['[', ']', ':', '@']) {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::{test_context as ctx, verified_process};
    use agp_contracts::intendant::{IntendantAdapter, LaunchPlan};

    fn adapter() -> ClaudeCodeAdapter {
        ClaudeCodeAdapter {
            config: LiveConfig {
                binary: "/opt/claude".into(),
                hook_timeout_secs: 330,
                passthrough_env: vec![(
                    "ANTHROPIC_BASE_URL".into(),
                    "http://127.0.0.1:4000".into(),
                )],
                version: Some(identity::Version(2, 1, 331)),
                ..Default::default()
            },
            credentials: None,
        }
    }

    #[test]
    fn plan_is_headless_with_managed_hooks_and_model_egress() {
        let p = verified_process(&adapter(), &ctx());
        assert_eq!(
            p.argv,
            [
                "/run/agp/bin/claude",
                "-p",
                "--output-format",
                "json",
                "fix the bug"
            ]
        );
        assert_eq!(p.egress_hosts, ["127.0.0.1:4000"]);
        assert!(p.env.contains(&("AGP_SESSION_TOKEN".into(), "tok".into())));
        assert!(p
            .env
            .contains(&("HTTPS_PROXY".into(), "http://127.0.0.1:3128".into())));
        let s: Value = serde_json::from_slice(&p.files[0].contents).unwrap();
        for event in HOOK_EVENTS {
            let h = &s["hooks"][event][0]["hooks"][0];
            assert_eq!(
                h["command"],
                "/run/agp/bin/agp hook --harness claude-code || { echo 'agp: the agp hook failed \
                 to run, so this call is blocked' >&2; exit 2; }"
            );
            assert_eq!(h["timeout"], 390);
            assert_eq!(h["onFailure"], "block");
        }
    }

    #[test]
    fn on_failure_block_is_required_where_supported_and_left_out_before() {
        let mut a = adapter();
        let good = a.plan(&ctx()).unwrap();
        let LaunchPlan::Process(mut p) = good else {
            panic!()
        };
        let mut s: Value = serde_json::from_slice(&p.files[0].contents).unwrap();
        s["hooks"]["PostToolUseFailure"][0]["hooks"][0]
            .as_object_mut()
            .unwrap()
            .remove("onFailure");
        p.files[0].contents = s.to_string().into_bytes();
        let err = a
            .verify_wiring(&ctx(), &LaunchPlan::Process(p))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("onFailure") && err.contains("PostToolUseFailure"),
            "{err}"
        );

        a.config.version = Some(identity::Version(2, 1, 197));
        let p = verified_process(&a, &ctx());
        let s: Value = serde_json::from_slice(&p.files[0].contents).unwrap();
        assert!(s["hooks"]["PreToolUse"][0]["hooks"][0]["onFailure"].is_null());
        assert!(s["hooks"]["PostToolUseFailure"].is_array());
    }

    #[test]
    fn a_bundle_is_bound_whole_with_its_helpers_first_on_path() {
        let mut a = adapter();
        a.config.binary = "/opt/pkg/vendor/t/bin/claude".into();
        a.config.bundle = Some("/opt/pkg/vendor/t".into());
        a.config.path_dirs = vec!["helpers".into()];
        let LaunchPlan::Process(p) = a.plan(&ctx()).unwrap() else {
            panic!()
        };
        assert_eq!(p.argv[0], "/run/agp/agent/bin/claude");
        assert!(p
            .ro_binds
            .contains(&("/opt/pkg/vendor/t".into(), "/run/agp/agent".into())));
        let path = &p.env.iter().find(|(k, _)| k == "PATH").unwrap().1;
        assert!(
            path.starts_with("/run/agp/agent/helpers:/run/agp/bin:"),
            "{path}"
        );
    }

    #[test]
    fn wiring_that_could_be_bypassed_is_refused() {
        let a = adapter();
        let good = a.plan(&ctx()).unwrap();
        let mutate = |f: &dyn Fn(&mut ProcessPlan)| {
            let LaunchPlan::Process(mut p) = good.clone() else {
                panic!()
            };
            f(&mut p);
            a.verify_wiring(&ctx(), &LaunchPlan::Process(p))
        };
        assert!(mutate(&|p| p.argv.push("--bare".into())).is_err());
        assert!(mutate(&|p| p.argv.push("--settings=/x".into())).is_err());
        assert!(mutate(&|p| p.files[0].read_only = false).is_err());
        assert!(mutate(&|p| p.files.clear()).is_err());
        assert!(mutate(&|p| {
            let mut s: Value = serde_json::from_slice(&p.files[0].contents).unwrap();
            s["allowManagedHooksOnly"] = json!(false);
            p.files[0].contents = s.to_string().into_bytes();
        })
        .is_err());
        assert!(mutate(&|p| {
            let mut s: Value = serde_json::from_slice(&p.files[0].contents).unwrap();
            s["hooks"]["PreToolUse"][0]["matcher"] = json!("Read");
            p.files[0].contents = s.to_string().into_bytes();
        })
        .is_err());
        assert!(mutate(&|p| p.env.retain(|(k, _)| k != "AGP_SESSION_TOKEN")).is_err());
        assert!(a.verify_wiring(&ctx(), &LaunchPlan::InProcess).is_err());
    }

    #[test]
    fn tasks_and_urls_are_checked() {
        let a = adapter();
        let mut c = ctx();
        c.task = Some("--bare".into());
        assert!(a.plan(&c).is_err());
        c.task = None;
        assert!(a.plan(&c).is_err());
        assert_eq!(
            authority("https://api.anthropic.com").unwrap(),
            ("api.anthropic.com".into(), 443)
        );
        assert!(authority("ftp://x").is_err());
    }
}
