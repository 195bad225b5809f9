//! `agp install-hooks`: wire `agp hook --attach` into a Claude Code or Codex configuration, for
//! people who run their agent normally and want agp's policy, approvals and journal through a
//! running `agp daemon`.
//!
//! WEAKER than `agp run`: no sandbox (allowed commands run with the user's privileges and
//! network), no egress control, and the hook settings live in files the agent's own commands
//! could change (the policy's protected-paths guard denies the obvious edits, but a program the
//! policy allowed is not watched). Said on every install.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args};
use serde_json::{json, Value};

use crate::exit::Exit;
use crate::home::Home;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("agent").required(true).args(["claude", "codex"])))]
#[command(group(ArgGroup::new("scope").required(true).args(["project", "user"])))]
pub struct InstallHooksArgs {
    /// Claude Code: `.claude/settings.json` of the project, or `~/.claude/settings.json`.
    #[arg(long)]
    pub claude: bool,
    /// Codex: `.codex/hooks.json` of the project, or `$CODEX_HOME/hooks.json` (~/.codex).
    #[arg(long)]
    pub codex: bool,
    /// Install for one project directory.
    #[arg(long, value_name = "DIR")]
    pub project: Option<PathBuf>,
    /// Install for the current user (every project).
    #[arg(long)]
    pub user: bool,
    /// Print what was installed (and Codex's view of it) as one JSON document
    #[arg(long)]
    pub json: bool,
}

/// The lines install-hooks reports: printed as they come, or gathered for `--json`.
struct Notes {
    json: bool,
    lines: Vec<String>,
}

impl Notes {
    fn say(&mut self, line: String) {
        if self.json {
            self.lines.push(line);
        } else {
            println!("{line}");
        }
    }
}

/// Single-quotes `s` for the harness's shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn user_home() -> Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .context("HOME is not set")
}

/// Whether a hook entry is one agp installed (so a reinstall replaces it).
fn is_agp_hook(h: &Value) -> bool {
    h["command"].as_str().is_some_and(|c| {
        c.contains(" hook --harness ")
            && (c.ends_with(" --attach") || c.contains(" --attach --project "))
    })
}

/// Adds agp's hooks to a Claude-format settings object, replacing earlier agp entries.
fn merge(mut settings: Value, command: &str) -> Result<Value> {
    if !settings.is_object() {
        bail!("the settings file does not hold a JSON object");
    }
    if !settings["hooks"].is_object() {
        if !settings["hooks"].is_null() {
            bail!("its \"hooks\" is not an object");
        }
        settings["hooks"] = json!({});
    }
    for event in ["PreToolUse", "PostToolUse"] {
        let groups = &mut settings["hooks"][event];
        if groups.is_null() {
            *groups = json!([]);
        }
        let list = groups
            .as_array_mut()
            .with_context(|| format!("its hooks.{event} is not a list"))?;
        for g in list.iter_mut() {
            if let Some(hs) = g["hooks"].as_array_mut() {
                hs.retain(|h| !is_agp_hook(h));
            }
        }
        list.retain(|g| g["hooks"].as_array().is_none_or(|hs| !hs.is_empty()));
        list.push(json!({"matcher": "*", "hooks": [{
            "type": "command", "command": command, "timeout": 3600}]}));
    }
    Ok(settings)
}

fn write_atomically(path: &Path, value: &Value) -> Result<()> {
    let dir = path.parent().context("settings path has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o7777);
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(serde_json::to_string_pretty(value)?.as_bytes())?;
    tmp.write_all(b"\n")?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

pub fn run(home: &Home, args: &InstallHooksArgs) -> Result<Exit> {
    let (harness, file) = match (args.claude, &args.project) {
        (true, Some(dir)) => ("claude-code", dir.join(".claude/settings.json")),
        (true, None) => ("claude-code", user_home()?.join(".claude/settings.json")),
        (false, Some(dir)) => ("codex", dir.join(".codex/hooks.json")),
        (false, None) => {
            let codex_home = std::env::var_os("CODEX_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .map_or_else(|| user_home().map(|h| h.join(".codex")), Ok)?;
            ("codex", codex_home.join("hooks.json"))
        }
    };
    if let Some(dir) = &args.project {
        if !dir.is_dir() {
            bail!("project directory {} does not exist", dir.display());
        }
    }
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .context("cannot find agp's own executable")?;
    let home_dir = std::path::absolute(home.root()).context("agp home path")?;
    let mut command = format!(
        "{} --home {} hook --harness {harness} --attach",
        shell_quote(&exe.display().to_string()),
        shell_quote(&home_dir.display().to_string())
    );
    // The project's root is recorded here, never taken from an event's cwd at run time.
    if let Some(dir) = &args.project {
        let root = std::fs::canonicalize(dir)
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        command.push_str(&format!(
            " --project {}",
            shell_quote(&root.display().to_string())
        ));
    }
    let existing = match std::fs::read_to_string(&file) {
        Ok(text) if text.trim().is_empty() => json!({}),
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", file.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => json!({}),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    let merged = merge(existing, &command).with_context(|| format!("{}", file.display()))?;
    write_atomically(&file, &merged)?;

    let mut notes = Notes {
        json: args.json,
        lines: Vec::new(),
    };
    notes.say(format!(
        "agp: installed the agp hook (PreToolUse, PostToolUse) for {harness} in {}",
        file.display()
    ));
    notes.say(format!(
        "agp: start `agp --home {} daemon` before the agent: while it is not running, every tool call is denied",
        home_dir.display()
    ));
    notes.say(format!(
        "agp: WARNING: this mode is weaker than `agp run`: no sandbox and no egress control; \
         allowed commands run with your privileges and network, and the agent's own programs \
         could edit {}",
        file.display()
    ));
    let mut exit = Exit::Ok;
    let mut codex_hooks = Value::Null;
    if harness == "codex" {
        let cwd = match &args.project {
            Some(dir) => dir.clone(),
            None => std::env::current_dir().context("current directory")?,
        };
        (exit, codex_hooks) = check_codex(&command, &cwd, &mut notes)?;
    }
    if args.json {
        let out = json!({
            "harness": harness,
            "file": file,
            "command": command,
            "home": home_dir,
            "codex_hooks": codex_hooks,
            "ok": exit == Exit::Ok,
            "notes": notes.lines,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(exit)
}

/// Codex skips an untrusted hook SILENTLY: ask Codex itself (`app-server` `hooks/list`) whether
/// it will run the hook just installed, and say so. Exit 1 when it will not. Also returns, per
/// event, whether Codex will run the hook (`null`: codex not found).
fn check_codex(command: &str, cwd: &Path, notes: &mut Notes) -> Result<(Exit, Value)> {
    let codex = std::env::var_os(crate::cmd::run_agent::ENV_CODEX_BIN)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|d| d.join("codex"))
                .find(|p| p.is_file())
        });
    let Some(codex) = codex else {
        notes.say(
            "agp: WARNING: codex not found, so agp cannot check that Codex will run the hook; \
             Codex skips untrusted hooks SILENTLY: trust the agp hook in Codex before relying on it"
                .to_owned(),
        );
        return Ok((Exit::Ok, Value::Null));
    };
    let mut cmd = std::process::Command::new(&codex);
    cmd.args(["app-server", "-c", "analytics.enabled=false"])
        .current_dir(cwd);
    let listed = agp_intendants::codex::list_hooks(cmd, cwd, std::time::Duration::from_secs(30))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let hooks: Vec<Value> = listed["data"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|d| d["hooks"].as_array().cloned().unwrap_or_default())
        .filter(|h| h["command"] == command)
        .collect();
    let mut active = 0;
    let mut seen = serde_json::Map::new();
    for event in ["preToolUse", "postToolUse"] {
        match hooks.iter().find(|h| h["eventName"] == event) {
            None => {
                seen.insert(event.into(), json!({"listed": false, "will_run": false}));
                notes.say(format!("agp: ✗ Codex does not list the agp {event} hook (an untrusted project's config is not loaded)"));
            }
            Some(h) => {
                let trust = h["trustStatus"].as_str().unwrap_or("unknown");
                let ok = h["enabled"] == true && matches!(trust, "trusted" | "managed");
                seen.insert(
                    event.into(),
                    json!({"listed": true, "will_run": ok, "trust": trust}),
                );
                if ok {
                    active += 1;
                    notes.say(format!(
                        "agp: ✓ Codex will run the agp {event} hook ({trust})"
                    ));
                } else {
                    notes.say(format!(
                        "agp: ✗ Codex will SKIP the agp {event} hook (status: {trust}): trust it in Codex, then run this again"
                    ));
                }
            }
        }
    }
    let exit = if active == 2 { Exit::Ok } else { Exit::Bad };
    Ok((exit, Value::Object(seen)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_other_hooks_and_replaces_agp_ones() {
        let existing = json!({"model": "x", "hooks": {"PreToolUse": [
            {"matcher": "Bash", "hooks": [{"type": "command", "command": "mine.sh"}]},
            {"matcher": "*", "hooks": [{"type": "command",
                "command": "'/old/agp' --home '/h' hook --harness claude-code --attach"}]}]}});
        let merged = merge(
            existing,
            "NEW --home 'h' hook --harness claude-code --attach",
        )
        .unwrap();
        let pre = merged["hooks"]["PreToolUse"].as_array().unwrap();
        assert_eq!(pre.len(), 2);
        assert_eq!(pre[0]["hooks"][0]["command"], "mine.sh");
        assert!(pre[1]["hooks"][0]["command"]
            .as_str()
            .unwrap()
            .starts_with("NEW"));
        assert_eq!(merged["hooks"]["PostToolUse"].as_array().unwrap().len(), 1);
        assert_eq!(merged["model"], "x");
        // Idempotent.
        let again = merge(
            merged.clone(),
            "NEW --home 'h' hook --harness claude-code --attach",
        )
        .unwrap();
        assert_eq!(again, merged);
        // An entry that records its project is agp's too.
        let recorded = "NEW --home 'h' hook --harness claude-code --attach --project '/p'";
        let replaced = merge(merged.clone(), recorded).unwrap();
        let pre = replaced["hooks"]["PreToolUse"].as_array().unwrap();
        assert_eq!(pre.len(), 2);
        assert_eq!(pre[1]["hooks"][0]["command"], recorded);
    }

    #[test]
    fn malformed_settings_are_refused() {
        assert!(merge(json!([1]), "c").is_err());
        assert!(merge(json!({"hooks": 3}), "c").is_err());
        assert!(merge(json!({"hooks": {"PreToolUse": {}}}), "c").is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
    }
}
