//! `agp doctor`: is this agp home healthy? One line per check, each failure with a fix.

use std::os::unix::fs::PermissionsExt;

use agp_contracts::{SandboxProvider, SandboxSpec};
use anyhow::Result;
use clap::Args;
use serde::Serialize;

use crate::app::assemble::load_policy;
use crate::app::config::Config;
use crate::exit::Exit;
use crate::home::Home;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Policy file to check [default: <home>/policy.toml]
    #[arg(long, value_name = "FILE")]
    pub policy: Option<std::path::PathBuf>,
}

#[derive(Debug, Serialize)]
struct Check {
    check: &'static str,
    ok: bool,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
    /// Healthy, but weaker than it could be: said loudly, without failing the check.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    warning: bool,
}

fn pass(check: &'static str, detail: impl Into<String>) -> Check {
    Check {
        check,
        ok: true,
        detail: detail.into(),
        fix: None,
        warning: false,
    }
}

fn fail(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        check,
        ok: false,
        detail: detail.into(),
        fix: Some(fix.into()),
        warning: false,
    }
}

pub fn run(home: &Home, args: &DoctorArgs) -> Result<Exit> {
    let mut checks = Vec::new();
    let mut policy_mode = None;
    if home.config().is_file() {
        checks.push(pass(
            "home",
            format!("agp home at {}", home.root().display()),
        ));
        checks.push(check_key(home));
        checks.push(check_policy(home, args.policy.as_deref()));
        checks.push(check_journal(home));
        checks.push(check_state(home));
        // Read once; a config.toml that does not parse fails both checks that read it.
        let config = Config::load(home);
        checks.push(check_sandbox(home, &config));
        checks.push(check_slack(home, &config));
        checks.extend(check_webhook(home, &config));
        policy_mode = config.as_ref().ok().map(Config::policy_mode);
        checks.extend(policy_mode.and_then(check_mode));
    } else {
        checks.push(fail(
            "home",
            format!("no agp home at {}", home.root().display()),
            "run `agp init` (or pass --home / set AGP_HOME)",
        ));
    }
    let ok = checks.iter().all(|c| c.ok);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "ok": ok,
                "policy_mode": policy_mode.map(agp_contracts::PolicyMode::as_str),
                "checks": checks
            }))?
        );
    } else {
        for c in &checks {
            let mark = match (c.ok, c.warning) {
                (false, _) => "✗",
                (true, true) => "!",
                (true, false) => "✓",
            };
            match &c.fix {
                Some(fix) => println!("{mark} {:<8} {} — fix: {fix}", c.check, c.detail),
                None => println!("{mark} {:<8} {}", c.check, c.detail),
            }
        }
    }
    Ok(if ok { Exit::Ok } else { Exit::Bad })
}

/// A policy that is not enforced is a warning: agp still records, but refuses nothing.
fn check_mode(mode: agp_contracts::PolicyMode) -> Option<Check> {
    let what = match mode {
        agp_contracts::PolicyMode::Enforce => return None,
        agp_contracts::PolicyMode::Shadow => {
            "shadow: calls are judged and journaled (would_deny / would_require) but NOT \
             enforced, and nobody is asked"
        }
        agp_contracts::PolicyMode::Observe => {
            "observe: calls are journaled and run WITHOUT being judged by the policy"
        }
    };
    Some(Check {
        check: "mode",
        ok: true,
        detail: format!("WARNING: config.toml [policy] mode = {what}"),
        fix: Some("set [policy] mode = \"enforce\" (or remove it) to enforce the policy".into()),
        warning: true,
    })
}

fn check_key(home: &Home) -> Check {
    let path = home.signer_key();
    let Ok(meta) = std::fs::symlink_metadata(&path) else {
        let entries = home.journal_dir().join(agp_journal::ENTRIES_FILE);
        let started = std::fs::metadata(&entries).is_ok_and(|m| m.len() > 0);
        let fix = if started {
            format!(
                "restore {} from your backup: the journal in {} was started with it and no \
                 other key can extend it (or move that journal away, then `{} keygen`)",
                path.display(),
                home.journal_dir().display(),
                home.agp()
            )
        } else {
            format!("run `{} keygen`", home.agp())
        };
        return fail(
            "key",
            format!("no journal signing key at {}", path.display()),
            fix,
        );
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return fail(
            "key",
            format!("{} has mode {mode:04o}: readable by others", path.display()),
            format!("chmod 600 {}", path.display()),
        );
    }
    match agp_journal::keys::load_signer_key(&path) {
        Ok(_) => pass(
            "key",
            format!("{} present, mode {mode:04o}", path.display()),
        ),
        Err(e) => fail(
            "key",
            e.to_string(),
            "restore the key from your backup (rotating needs the current key too)",
        ),
    }
}

fn check_policy(home: &Home, explicit: Option<&std::path::Path>) -> Check {
    let path = crate::app::assemble::policy_path(home, explicit);
    match load_policy(&path) {
        Ok(p) => pass(
            "policy",
            format!(
                "{} valid (sha256 {})",
                path.display(),
                &p.policy_sha256()[..12.min(p.policy_sha256().len())]
            ),
        ),
        Err(e) => fail(
            "policy",
            crate::exit::one_line(&e),
            format!("`agp policy check {}` shows every problem", path.display()),
        ),
    }
}

fn check_journal(home: &Home) -> Check {
    let dir = home.journal_dir();
    if !dir.join(agp_journal::ENTRIES_FILE).exists() {
        return pass("journal", "empty (created by the first session)");
    }
    let pub_path = home.verifier_key();
    let key = match agp_journal::keys::load_verifier_key(&pub_path.to_string_lossy()) {
        Ok(k) => k,
        Err(e) => {
            return fail(
                "journal",
                format!("cannot load the public key: {e}"),
                format!(
                    "`{} keygen --repair-pub` rebuilds keys/journal.pub from keys/journal.key",
                    home.agp()
                ),
            )
        }
    };
    let opts = agp_journal::VerifyOptions {
        trusted_key: key,
        trusted_checkpoint: None,
    };
    match agp_journal::verify_dir(&dir, &opts) {
        Ok(r) if r.intact => pass(
            "journal",
            format!("verifies: {} entries, {} sealed", r.entries, r.sealed_size),
        ),
        Ok(r) => fail(
            "journal",
            format!("does NOT verify ({} problem(s))", r.errors().count()),
            "run `agp verify` for details; do not delete the journal, it is evidence",
        ),
        Err(e) => fail("journal", e.to_string(), "run `agp verify` for details"),
    }
}

fn check_state(home: &Home) -> Check {
    match crate::app::state::shared(home) {
        Ok(Some((url, member))) => return check_shared_state(&url, &member),
        Ok(None) => {}
        Err(e) => return fail("state", format!("{e:#}"), "fix [state] in config.toml"),
    }
    let db = home.state_db();
    if !db.exists() {
        return pass(
            "state",
            "no state database yet (created by the first daemon start)",
        );
    }
    let fix = format!(
        "stop the daemon and move {} aside (sessions are also in the journal)",
        db.display()
    );
    match agp_daemon::store::Store::open_existing(&db) {
        Ok(store) => match store.quick_check() {
            Ok(r) if r == "ok" => pass(
                "state",
                format!(
                    "{} ok (schema v{})",
                    db.display(),
                    store.schema_version().unwrap_or(0)
                ),
            ),
            Ok(r) => fail("state", format!("integrity check: {r}"), fix),
            Err(e) => fail("state", e.to_string(), fix),
        },
        Err(e) => fail("state", e.to_string(), fix),
    }
}

/// Team mode: the shared PostgreSQL reachable, its schema current.
fn check_shared_state(url: &str, member: &str) -> Check {
    use agp_daemon::store::StateStore;
    let read = crate::app::state::with_shared(url, member, async |store| {
        Ok(store.schema_version().await?)
    });
    match read {
        Ok(version) => pass(
            "state",
            format!("shared state (PostgreSQL) ok (schema v{version}, this daemon is {member:?})"),
        ),
        Err(e) => fail(
            "state",
            format!("{e:#}"),
            "start PostgreSQL, or fix [state] url in config.toml",
        ),
    }
}

/// The container provider: its configuration, the engine reachable and recent enough, the
/// runtime registered, the pinned image present. (No preflight in a scratch container yet.)
fn check_docker(home: &Home, config: &Result<Config>) -> Check {
    let Ok(config) = config else {
        return fail("sandbox", "config.toml is not valid", "fix config.toml");
    };
    let provider = match config.docker_provider(home) {
        Ok(p) => p,
        Err(e) => {
            return fail(
                "sandbox",
                format!("{e:#}"),
                "fix [sandbox.docker] in config.toml",
            )
        }
    };
    let summary = match provider.check_engine() {
        Ok(summary) => summary,
        Err(e) => {
            let why = e.to_string();
            let fix = docker_fix(&why, home, config).unwrap_or_else(|| {
                "start the engine, or run `agp sandbox image build` and pin what it prints".into()
            });
            return fail("sandbox", why, fix);
        }
    };
    // The engine looks right; whether a session with this home's bounds runs is only known
    // by starting one (Podman, say, may not apply all of it).
    match trial_session(home, config, &provider) {
        Ok(checks) => pass(
            "sandbox",
            format!(
                "docker provider: {summary}; a default session runs (preflight passed, {checks} checks)"
            ),
        ),
        Err(why) => {
            let fix = docker_fix(&why, home, config).unwrap_or_else(|| {
                format!(
                    "default sessions are refused for the reason above; fix the engine as it \
                     says, or set [sandbox] provider = \"bwrap\" in {}",
                    home.config().display()
                )
            });
            fail("sandbox", format!("docker provider: {summary}; {why}"), fix)
        }
    }
}

/// A session with this home's bounds in a scratch repository: started, preflighted and
/// removed. The number of preflight checks, or why it was refused.
fn trial_session(
    home: &Home,
    config: &Config,
    provider: &agp_sandbox::docker::DockerProvider,
) -> Result<usize, String> {
    let defaults =
        agp_daemon::DaemonConfig::new(home.root().to_path_buf(), crate::app::assemble::user_home());
    let mut limits = defaults.sandbox_limits;
    config
        .sandbox
        .limits
        .apply(&mut limits)
        .map_err(|e| format!("{e:#}"))?;
    let scratch = tempfile::Builder::new()
        .prefix("agp-doctor-")
        .tempdir()
        .map_err(|e| format!("cannot create a scratch repository: {e}"))?;
    // The container runs as the repository's owner, never root.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let uid = agp_sandbox::docker::image::DEFAULT_IMAGE_UID;
        std::os::unix::fs::chown(scratch.path(), Some(uid), Some(uid))
            .map_err(|e| format!("cannot give the scratch repository to uid {uid}: {e}"))?;
    }
    let mut spec = SandboxSpec::new("agp-doctor", scratch.path());
    spec.limits = limits;
    spec.env = defaults.sandbox_env;
    let provider = provider.clone().protect(home.root());
    let session = provider.spawn(&spec).map_err(|e| e.to_string())?;
    let report = provider.run_preflight(&session);
    let _ = provider.teardown(session);
    match report {
        Ok(r) if r.passed => Ok(r.checks.len()),
        Ok(r) => Err(format!("preflight failed: {}", r.failure_summary())),
        Err(e) => Err(e.to_string()),
    }
}

/// The fix for a refusal the container provider explains, as it can be done.
fn docker_fix(why: &str, home: &Home, config: &Config) -> Option<String> {
    let runtime = config.sandbox.docker.runtime.as_deref().unwrap_or("runc");
    if why.contains("containers/podman#28429") || why.contains("Podman ran") {
        Some(format!(
            "{}, or set runtime = \"runc\" under [sandbox.docker] in {}",
            agp_sandbox::docker::podman_runtime_fix(runtime),
            home.config().display()
        ))
    } else if why.contains("seccomp_profile") {
        Some(
            "set `seccomp_profile` under [containers] in the Podman service's containers.conf \
             to a profile that refuses unshare, setns and mount (as Docker's default does) and \
             restart the service"
                .into(),
        )
    } else {
        None
    }
}

fn check_sandbox(home: &Home, config: &Result<Config>) -> Check {
    let choice = match config {
        Ok(config) => config.sandbox(home),
        Err(e) => Err(anyhow::anyhow!(crate::exit::one_line(e))),
    };
    match choice {
        Ok(crate::cmd::daemon::SandboxChoice::Bwrap) => {}
        Ok(crate::cmd::daemon::SandboxChoice::Docker) => {
            return check_docker(home, config);
        }
        Ok(crate::cmd::daemon::SandboxChoice::None) => {
            return fail(
                "sandbox",
                "config.toml sets [sandbox] provider = \"none\": allowed calls run unisolated",
                format!("set provider = \"bwrap\" in {}", home.config().display()),
            )
        }
        Err(e) => return fail("sandbox", crate::exit::one_line(&e), "fix config.toml"),
    }
    let provider = agp_sandbox::BubblewrapProvider::new().protect(home.root());
    if let Err(e) = provider.bwrap() {
        return fail("sandbox", e.to_string(), "apt-get install bubblewrap");
    }
    // A fresh scratch repository outside the agp home (the provider refuses one inside it).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let scratch = std::env::temp_dir().join(format!("agp-doctor-{}-{nanos}", std::process::id()));
    if let Err(e) = std::fs::create_dir(&scratch) {
        return fail(
            "sandbox",
            format!("cannot create {}: {e}", scratch.display()),
            "check $TMPDIR",
        );
    }
    let spec = SandboxSpec::new("doctor", &scratch);
    let proven = provider.spawn(&spec).and_then(|s| provider.preflight(&s));
    let _ = std::fs::remove_dir_all(&scratch);
    match proven {
        Ok(report) if report.passed => pass(
            "sandbox",
            format!("bubblewrap preflight passed ({} checks, {} ms)", report.checks.len(), report.duration_ms),
        ),
        Ok(report) => fail(
            "sandbox",
            format!("preflight failed: {}", report.failure_summary()),
            "the kernel must allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1) or run as root",
        ),
        Err(e) => fail(
            "sandbox",
            e.to_string(),
            "the kernel must allow user namespaces for bubblewrap; see `agp doctor --json` for details",
        ),
    }
}

/// Slack is optional; once configured (slack.toml or AGP_SLACK_BOT_TOKEN) both tokens must work,
/// and a home whose config.toml sends approvals to Slack must have it configured.
fn check_slack(home: &Home, config: &Result<Config>) -> Check {
    let required = match config {
        Ok(config) => config.channel() == crate::cmd::daemon::ChannelChoice::Slack,
        Err(e) => return fail("slack", crate::exit::one_line(e), "fix config.toml"),
    };
    let settings = home.slack_settings();
    let cfg = match agp_slack::setup(home.root()) {
        agp_slack::SlackSetup::NotConfigured if required => {
            return fail(
                "slack",
                "config.toml sends approvals to Slack ([approvals] channel = \"slack\"), but Slack is not configured",
                format!(
                    "create {} (mode 0600; see crates/agp-slack/README.md) or set AGP_SLACK_*",
                    settings.display()
                ),
            )
        }
        agp_slack::SlackSetup::NotConfigured => {
            return pass("slack", "not configured (optional)");
        }
        agp_slack::SlackSetup::Invalid(e) => {
            return fail(
                "slack",
                e.to_string(),
                format!("fix {} or the AGP_SLACK_* variables", settings.display()),
            )
        }
        agp_slack::SlackSetup::Configured(cfg) => cfg,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail("slack", format!("cannot start a runtime: {e}"), "retry"),
    };
    let result = rt.block_on(agp_slack::check_tokens(&cfg));
    let fix = "check the tokens with `agp slack check`";
    match (&result.bot, &result.app) {
        (Ok(who), Ok(())) => pass(
            "slack",
            format!(
                "bot {} ({}) in team {}, Socket Mode token accepted, channel {}",
                who.user, who.user_id, who.team, cfg.channel
            ),
        ),
        (Err(e), _) => fail("slack", format!("bot token refused: {e}"), fix),
        (Ok(_), Err(e)) => fail("slack", format!("app-level token refused: {e}"), fix),
    }
}

/// The webhook channel, checked when config.toml uses it or describes it: its settings and
/// secret (file mode, length), its receiver URL, and whether its listen address can be bound.
/// Nothing is sent to the receiver.
fn check_webhook(home: &Home, config: &Result<Config>) -> Option<Check> {
    let Ok(config) = config else {
        // check_slack already reported the config.toml that does not parse.
        return None;
    };
    let required = config.channel() == crate::cmd::daemon::ChannelChoice::Webhook;
    if !required && config.approvals.webhook.is_none() {
        return None;
    }
    let cfg = match config.webhook(home) {
        Ok(cfg) => cfg,
        Err(e) => {
            let line = crate::exit::one_line(&e);
            let fix = if line.contains("chmod 600") {
                "make the secret file readable by its owner only (chmod 600)".to_owned()
            } else if line.contains("cannot read the webhook secret") {
                "create it with the secret shared with the receiver, e.g. \
                 `(umask 077; openssl rand -hex 32 > FILE)`"
                    .to_owned()
            } else {
                format!(
                    "fix [approvals.webhook] in {} (README \"Webhook approvals\")",
                    home.config().display()
                )
            };
            return Some(fail("webhook", line, fix));
        }
    };
    let listen = match std::net::TcpListener::bind(cfg.listen) {
        Ok(_) => format!("listener {} free", cfg.listen),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => format!(
            "listener {} in use (a running agp daemon of this home holds it, or another program)",
            cfg.listen
        ),
        Err(e) => {
            return Some(fail(
                "webhook",
                format!("cannot listen on {}: {e}", cfg.listen),
                "set [approvals.webhook] listen to an address:port this user may bind",
            ))
        }
    };
    let exposure = if cfg.listens_beyond_loopback() {
        " (reachable from other machines over plain HTTP; decisions are still signed)"
    } else {
        ""
    };
    let mut detail = format!(
        "posts to {}, secret from {}, {listen}{exposure}, {} approver(s)",
        cfg.url_origin(),
        cfg.secret_source,
        cfg.approvers.len()
    );
    if !required {
        detail.push_str(" (configured, but [approvals] channel is not \"webhook\")");
    }
    Some(pass("webhook", detail))
}
