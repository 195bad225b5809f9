//! OpenAI Codex, governed through its hooks, inside agp's sandbox.
//!
//! The hooks live in `/etc/codex/requirements.toml` (bound read-only), which Codex runs without a
//! trust step, with `allow_managed_hooks_only = true` so no user or project hook is loaded. Codex
//! skips an untrusted hook SILENTLY, so before launch agp proves the wiring from inside the same
//! sandbox: `codex app-server` `hooks/list` must report agp's hook as managed and enabled for
//! every tool, before and after the call ([`check_hooks_list`]). Codex's own bubblewrap sandbox
//! cannot nest inside agp's, so it runs with `--sandbox danger-full-access`: agp's sandbox is
//! the boundary.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use agp_contracts::intendant::{IntendantError, LaunchContext, ProcessPlan, SeededFile};
use agp_contracts::sandbox::SANDBOX_HOME;
use serde_json::{json, Value};

use crate::live::{self, LiveConfig};
use crate::proc_report;

pub const NAME: &str = "codex";
pub const REQUIREMENTS: &str = "/etc/codex/requirements.toml";
/// Vendor endpoints when no custom provider is configured (API key and ChatGPT login).
pub const DEFAULT_HOSTS: &[&str] = &["api.openai.com:443", "chatgpt.com:443"];

/// Flags that would skip or weaken the hook wiring.
const FORBIDDEN_FLAGS: &[&str] = &[
    "--dangerously-bypass-hook-trust",
    "--dangerously-bypass-approvals-and-sandbox",
];
/// A file seeded into the sandbox's CODEX_HOME so that the directory always exists.
pub const HOME_MARKER: &str = "agp-session.txt";

/// The feature whose TTY command sessions `write_stdin` could type into past every hook.
pub const NO_TTY_FEATURE: &str = "unified_exec_tty";

/// The only `-c` overrides agp passes. Without DNS in the sandbox, Codex's analytics lookup
/// would add seconds to every run.
const ALLOWED_OVERRIDES: &[&str] = &["analytics.enabled=false"];

pub struct CodexAdapter {
    pub config: LiveConfig,
    /// The user's Codex auth (`$CODEX_HOME/auth.json`), bound read-only when present.
    pub auth: Option<PathBuf>,
    /// The user's Codex config (`$CODEX_HOME/config.toml`: model and provider), bound read-only
    /// when present. Its hooks never run (`allow_managed_hooks_only`).
    pub user_config: Option<PathBuf>,
    /// `base_url` of the configured model provider, when it is not the vendor's.
    pub provider_base_url: Option<String>,
}

impl CodexAdapter {
    /// The managed requirements: agp's hooks on every tool, nothing else may add hooks.
    pub fn requirements(&self, ctx: &LaunchContext) -> String {
        let command = toml_string(&live::hook_command(ctx, NAME));
        let timeout = self.config.harness_hook_timeout_secs();
        let mut out = String::from(
            "# Written by agp for this session; bound read-only into the sandbox.\n\
             allow_managed_hooks_only = true\n",
        );
        for event in ["PreToolUse", "PostToolUse"] {
            out.push_str(&format!(
                "\n[[hooks.{event}]]\nmatcher = \"*\"\n[[hooks.{event}.hooks]]\ntype = \"command\"\n\
                 command = {command}\ntimeout = {timeout}\n"
            ));
        }
        out
    }

    /// Codex's executable inside the sandbox.
    pub fn sandbox_exe(&self) -> PathBuf {
        live::agent_placement(&self.config, <Self as live::LiveAgent>::EXE).0
    }

    /// The command that lists Codex's hooks (run in the session's sandbox by the launcher).
    pub fn probe_argv(&self) -> Vec<String> {
        probe_argv(&self.sandbox_exe())
    }
}

/// `codex app-server` for Codex at `exe` in the sandbox.
pub fn probe_argv(exe: &Path) -> Vec<String> {
    {
        vec![
            exe.display().to_string(),
            "app-server".into(),
            "-c".into(),
            ALLOWED_OVERRIDES[0].into(),
        ]
    }
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

live::live_adapter!(CodexAdapter);

impl live::LiveAgent for CodexAdapter {
    const NAME: &'static str = NAME;
    const EXE: &'static str = "codex";
    const HEADLESS_ARGS: &'static [&'static str] = &["exec", "--skip-git-repo-check"];
    const ARGS: &'static [&'static str] = &[
        "--sandbox",
        "danger-full-access",
        "--disable",
        "plugins",
        // Codex 0.169 runs no hook for `write_stdin`: with TTY sessions an allowed
        // long-running command (a REPL, `make -f -`) would take unjudged input. Without
        // a TTY the command's stdin is closed, and `write_stdin` can only poll output.
        "--disable",
        NO_TTY_FEATURE,
        "-c",
        ALLOWED_OVERRIDES[0],
    ];
    const FORBIDDEN_FLAGS: &'static [&'static str] = FORBIDDEN_FLAGS;

    fn config(&self) -> &LiveConfig {
        &self.config
    }

    fn launch(&self, ctx: &LaunchContext) -> Result<live::AgentLaunch, IntendantError> {
        let codex_home = PathBuf::from(SANDBOX_HOME).join(".codex");
        let env = vec![("CODEX_HOME".into(), codex_home.display().to_string())];
        let mut ro_binds = Vec::new();
        if let Some(a) = &self.auth {
            ro_binds.push((a.clone(), codex_home.join("auth.json")));
        }
        if let Some(c) = &self.user_config {
            ro_binds.push((c.clone(), codex_home.join("config.toml")));
        }
        let egress_hosts = match &self.provider_base_url {
            Some(url) => {
                let (h, p) = crate::claude_code::authority(url)?;
                vec![format!("{h}:{p}")]
            }
            None => DEFAULT_HOSTS
                .iter()
                .map(std::string::ToString::to_string)
                .collect(),
        };
        let files = vec![
            SeededFile {
                path: REQUIREMENTS.into(),
                contents: self.requirements(ctx).into_bytes(),
                mode: 0o644,
                read_only: true,
            },
            // CODEX_HOME must exist (and be writable) even for a user with only an API key and
            // nothing to bind into it: seeding a file creates the directory in the sandbox HOME.
            SeededFile {
                path: codex_home.join(HOME_MARKER),
                contents: b"CODEX_HOME of an agp session (a tmpfs that ends with it)\n".to_vec(),
                mode: 0o644,
                read_only: false,
            },
        ];
        Ok(live::AgentLaunch {
            env,
            ro_binds,
            files,
            egress_hosts,
        })
    }

    /// The static half of the proof (the plan); the launcher adds the dynamic half with
    /// [`probe_hooks`] inside the sandbox.
    fn check_wiring(&self, _ctx: &LaunchContext, p: &ProcessPlan) -> Result<(), IntendantError> {
        for (i, a) in p.argv.iter().enumerate() {
            let value = match a.as_str() {
                "-c" | "--config" => p.argv.get(i + 1).map(String::as_str),
                _ => a.strip_prefix("--config="),
            };
            if let Some(v) = value {
                if !ALLOWED_OVERRIDES.contains(&v) {
                    return Err(live::unverified(
                        NAME,
                        format!("config override {v:?} is not allowed"),
                    ));
                }
            }
        }
        let sandbox_off = p
            .argv
            .windows(2)
            .any(|w| w[0] == "--sandbox" && w[1] == "danger-full-access");
        let tty_off = p
            .argv
            .windows(2)
            .any(|w| w[0] == "--disable" && w[1] == NO_TTY_FEATURE);
        if !tty_off {
            return Err(live::unverified(
                NAME,
                "TTY command sessions must be off: `write_stdin` into them runs no hook",
            ));
        }
        if !sandbox_off {
            // Codex's own bwrap cannot nest in agp's: every command would fail.
            return Err(live::unverified(
                NAME,
                "Codex's own sandbox must be off inside agp's",
            ));
        }
        let file = live::managed_file(NAME, p, REQUIREMENTS, "requirements")?;
        let text = std::str::from_utf8(&file.contents)
            .map_err(|_| live::unverified(NAME, "requirements are not UTF-8"))?;
        if !text
            .lines()
            .any(|l| l.trim() == "allow_managed_hooks_only = true")
        {
            return Err(live::unverified(
                NAME,
                "allow_managed_hooks_only is not set",
            ));
        }
        Ok(())
    }
}

/// Runs `codex app-server` (the command given, already sandboxed by the caller) and proves from
/// its `hooks/list` that agp's hook is managed, enabled and matches every tool, before and after
/// each call.
pub fn probe_hooks(
    cmd: Command,
    ctx: &LaunchContext,
    timeout: Duration,
) -> Result<(), IntendantError> {
    check_hooks_list(&list_hooks(cmd, &ctx.repo, timeout)?, ctx)
}

/// Runs `codex app-server` (the command given) and returns its `hooks/list` result for `cwd`.
pub fn list_hooks(
    mut cmd: Command,
    cwd: &Path,
    timeout: Duration,
) -> Result<Value, IntendantError> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        live::unverified(
            NAME,
            format!("cannot start `codex app-server` to list hooks: {e}"),
        )
    })?;
    let stderr = child.stderr.take().map(proc_report::keep_tail);
    let result = exchange(&mut child, cwd, timeout);
    // Killing a process that already exited (a zombie) leaves its exit status as it was.
    let _ = child.kill();
    let status = child.wait().ok();
    let tail = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    result.map_err(|e| {
        let what = match e {
            Exchange::Ended => "`codex app-server` stopped before listing its hooks: it".into(),
            Exchange::TimedOut => format!(
                "`codex app-server` did not list its hooks within {} s; killed, it",
                timeout.as_secs()
            ),
            Exchange::Failed(m) => return live::unverified(NAME, m),
        };
        live::unverified(
            NAME,
            format!("{what} {}", proc_report::describe(status, &tail)),
        )
    })
}

enum Exchange {
    Ended,
    TimedOut,
    Failed(String),
}

fn exchange(
    child: &mut std::process::Child,
    cwd: &Path,
    timeout: Duration,
) -> Result<Value, Exchange> {
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| Exchange::Failed("no stdin".into()))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Exchange::Failed("no stdout".into()))?;
    let requests = [
        json!({"id": 1, "method": "initialize",
               "params": {"clientInfo": {"name": "agp", "version": env!("CARGO_PKG_VERSION")}}}),
        json!({"method": "initialized"}),
        json!({"id": 2, "method": "hooks/list", "params": {"cwds": [cwd]}}),
    ];
    for r in requests {
        // A write fails when the server is already gone: its status and stderr say why.
        if writeln!(stdin, "{r}").is_err() {
            return Err(Exchange::Ended);
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v["id"] == 2 {
                    let _ = tx.send(v);
                    break;
                }
            }
        }
    });
    let reply = rx.recv_timeout(timeout).map_err(|e| match e {
        std::sync::mpsc::RecvTimeoutError::Timeout => Exchange::TimedOut,
        std::sync::mpsc::RecvTimeoutError::Disconnected => Exchange::Ended,
    })?;
    drop(stdin);
    if !reply["error"].is_null() {
        return Err(Exchange::Failed(format!(
            "hooks/list failed: {}",
            reply["error"]
        )));
    }
    Ok(reply["result"].clone())
}

/// The proof itself, on a `hooks/list` result.
pub fn check_hooks_list(result: &Value, ctx: &LaunchContext) -> Result<(), IntendantError> {
    let entries = result["data"]
        .as_array()
        .ok_or_else(|| live::unverified(NAME, "hooks/list returned no data"))?;
    let entry = entries
        .iter()
        .find(|e| e["cwd"].as_str() == Some(&ctx.repo.display().to_string()))
        .or(entries.first())
        .ok_or_else(|| live::unverified(NAME, "hooks/list returned no entry for the repository"))?;
    if let Some(errors) = entry["errors"].as_array().filter(|e| !e.is_empty()) {
        return Err(live::unverified(
            NAME,
            format!("Codex reports hook errors: {errors:?}"),
        ));
    }
    let command = live::hook_command(ctx, NAME);
    let hooks = entry["hooks"].as_array().cloned().unwrap_or_default();
    for event in ["preToolUse", "postToolUse"] {
        let active = hooks.iter().any(|h| {
            h["eventName"] == event
                && h["command"] == command.as_str()
                && h["enabled"] == true
                && h["isManaged"] == true
                // An async hook's verdict comes too late to block; any other handler type
                // would not run agp at all.
                && h["async"] != true
                && matches!(h["handlerType"].as_str(), Some("command") | None)
                && matches!(h["trustStatus"].as_str(), Some("managed" | "trusted"))
                && matches!(h["matcher"].as_str(), Some("*" | "") | None)
        });
        if !active {
            return Err(live::unverified(
                NAME,
                format!(
                    "Codex does not report agp's {event} hook as a managed, enabled, \
                     synchronous command on every tool"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::{test_context as ctx, verified_process};
    use agp_contracts::intendant::{IntendantAdapter, LaunchPlan};

    fn adapter() -> CodexAdapter {
        CodexAdapter {
            config: LiveConfig {
                binary: "/opt/codex".into(),
                hook_timeout_secs: 100,
                ..Default::default()
            },
            auth: None,
            user_config: None,
            provider_base_url: Some("http://127.0.0.1:5000/v1".into()),
        }
    }

    fn hook(event: &str, trust: &str) -> Value {
        json!({"eventName": event, "command": live::hook_command(&ctx(), NAME),
               "enabled": true, "isManaged": true, "trustStatus": trust, "matcher": "*",
               "handlerType": "command", "async": false})
    }

    #[test]
    fn plan_turns_codex_sandbox_off_and_wires_managed_hooks() {
        let p = verified_process(&adapter(), &ctx());
        assert_eq!(p.argv[1], "exec");
        assert!(p
            .argv
            .windows(2)
            .any(|w| w == ["--sandbox", "danger-full-access"]));
        assert_eq!(p.egress_hosts, ["127.0.0.1:5000"]);
        let text = String::from_utf8(p.files[0].contents.clone()).unwrap();
        assert!(text.contains("allow_managed_hooks_only = true"));
        assert!(text.contains("[[hooks.PostToolUse.hooks]]"));
        assert!(text.contains(
            "command = \"/run/agp/bin/agp hook --harness codex || { echo 'agp: the agp hook \
             failed to run, so this call is blocked' >&2; exit 2; }\""
        ));
        let home = Path::new(SANDBOX_HOME).join(".codex");
        assert!(p
            .files
            .iter()
            .any(|f| f.path == home.join(HOME_MARKER) && !f.read_only));
        assert!(p
            .env
            .contains(&("CODEX_HOME".into(), home.display().to_string())));
        assert!(text.contains("timeout = 160"));
    }

    #[test]
    fn weakened_plans_are_refused() {
        let a = adapter();
        let LaunchPlan::Process(good) = a.plan(&ctx()).unwrap() else {
            panic!()
        };
        let check = |p: ProcessPlan| a.verify_wiring(&ctx(), &LaunchPlan::Process(p));
        let mut p = good.clone();
        p.argv.push("--dangerously-bypass-hook-trust".into());
        assert!(check(p).is_err());
        let mut p = good.clone();
        p.argv.extend(["-c".into(), "hooks={}".into()]);
        assert!(check(p).is_err());
        let mut p = good.clone();
        p.argv.retain(|a| a != "danger-full-access");
        assert!(check(p).is_err());
        let mut p = good.clone();
        p.argv.retain(|a| a != NO_TTY_FEATURE);
        assert!(check(p).is_err());
        let mut p = good.clone();
        p.files[0].contents = b"[hooks]".to_vec();
        assert!(check(p).is_err());
        let mut p = good;
        p.files[0].read_only = false;
        assert!(check(p).is_err());
    }

    #[test]
    fn hooks_list_must_prove_both_hooks_managed() {
        let ok = json!({"data": [{"cwd": "/src/repo", "errors": [], "hooks": [
            hook("preToolUse", "managed"), hook("postToolUse", "managed")]}]});
        check_hooks_list(&ok, &ctx()).unwrap();
        for bad in [
            json!({"data": [{"cwd": "/src/repo", "errors": [], "hooks": [hook("preToolUse", "managed")]}]}),
            json!({"data": [{"cwd": "/src/repo", "errors": [], "hooks": [
                hook("preToolUse", "untrusted"), hook("postToolUse", "managed")]}]}),
            json!({"data": [{"cwd": "/src/repo", "errors": ["bad"], "hooks": [
                hook("preToolUse", "managed"), hook("postToolUse", "managed")]}]}),
            json!({"data": []}),
            json!({}),
        ] {
            assert!(check_hooks_list(&bad, &ctx()).is_err(), "{bad}");
        }
        for (field, value) in [
            ("enabled", json!(false)),
            ("async", json!(true)),
            ("handlerType", json!("prompt")),
            ("command", json!("/run/agp/bin/agp hook --harness codex")),
        ] {
            let mut weak = ok.clone();
            weak["data"][0]["hooks"][0][field] = value;
            assert!(check_hooks_list(&weak, &ctx()).is_err(), "{field}");
        }
    }
}
