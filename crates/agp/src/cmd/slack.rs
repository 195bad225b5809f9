//! `agp slack`: check the Slack channel's tokens, or put a test approval to the configured
//! channel and wait for someone to click.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agp_contracts::events::SessionStarted;
use agp_contracts::{canonical, ApprovalChannel, ApprovalOutcome, ApprovalRequest};
use agp_slack::{SlackChannel, SlackConfig, SqliteStore};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::exit::{Exit, EXIT_CODES_HELP};
use crate::home::Home;

#[derive(Debug, Args)]
pub struct SlackArgs {
    /// Slack settings file (mode 0600) [default: <home>/slack.toml]; AGP_SLACK_* variables
    /// override it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the result as one JSON document
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: SlackCommand,
}

#[derive(Debug, Subcommand)]
pub enum SlackCommand {
    /// Check both tokens (auth.test with the bot token, apps.connections.open with the
    /// app-level token) without posting anything.
    #[command(after_help = EXIT_CODES_HELP)]
    Check,
    /// Post a test approval to the configured channel and wait for a click on Allow or Deny.
    /// Exit 0 when someone allowed the test call, 1 when it was denied or nobody decided.
    #[command(after_help = EXIT_CODES_HELP)]
    Test {
        /// How long to wait for a click.
        #[arg(long, default_value_t = 300, value_name = "SECONDS")]
        timeout: u64,
    },
}

pub fn run(home: &Home, args: SlackArgs) -> Result<Exit> {
    let file = args.config.unwrap_or_else(|| home.slack_settings());
    let cfg = SlackConfig::load(&file).context("cannot load the Slack settings")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match args.command {
        SlackCommand::Check => rt.block_on(check(&cfg, args.json)),
        SlackCommand::Test { timeout } => {
            rt.block_on(test(cfg, Duration::from_secs(timeout), args.json))
        }
    }
}

async fn check(cfg: &SlackConfig, json: bool) -> Result<Exit> {
    let result = agp_slack::check_tokens(cfg).await;
    if json {
        let out = json!({
            "ok": result.ok(),
            "bot": match &result.bot {
                Ok(a) => json!({"ok": true, "user": a.user, "user_id": a.user_id, "team": a.team}),
                Err(e) => json!({"ok": false, "error": e.to_string()}),
            },
            "app": match &result.app {
                Ok(()) => json!({"ok": true}),
                Err(e) => json!({"ok": false, "error": e.to_string()}),
            },
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(if result.ok() { Exit::Ok } else { Exit::Bad });
    }
    match &result.bot {
        Ok(a) => println!("✓ bot token: {} ({}) in team {}", a.user, a.user_id, a.team),
        Err(e) => println!("✗ bot token: {e}"),
    }
    match &result.app {
        Ok(()) => println!("✓ app-level token: Socket Mode URL issued"),
        Err(e) => println!(
            "✗ app-level token: {e} (Socket Mode needs an xapp- token with connections:write)"
        ),
    }
    Ok(if result.ok() { Exit::Ok } else { Exit::Bad })
}

async fn test(cfg: SlackConfig, wait: Duration, json: bool) -> Result<Exit> {
    let channel_id = cfg.channel.clone();
    // The test approval needs no durability: an in-memory store keeps state.db untouched.
    let store = Arc::new(SqliteStore::open_in_memory()?);
    let channel = SlackChannel::builder(cfg, store)
        .start()
        .await
        .context("cannot start the Slack channel")?;
    if !channel.wait_connected(1, Duration::from_secs(30)).await {
        anyhow::bail!("Slack Socket Mode did not connect within 30 s");
    }
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let session = format!("slack-test-{now_ms}");
    let user = crate::app::assemble::os_user();
    let started = SessionStarted {
        task: Some("check the Slack approval channel".into()),
        started_by: Some(user),
        ..SessionStarted::new("agp slack test", "-")
    };
    channel.project(Some(&session), &started.into()).await?;
    let input = json!({"command": "echo 'agp slack test'"});
    let request = ApprovalRequest {
        session,
        call_id: "slack-test-1".into(),
        tool: "Bash".into(),
        input_sha256: canonical::sha256_of_value(&input)?,
        redacted_input: input,
        rule_id: Some("slack.test".into()),
        reason: "agp slack test: press Allow or Deny to check that approvals reach agp".into(),
        approvers: Vec::new(),
        quorum: 1,
        expires_at_ms: now_ms + wait.as_millis() as u64,
        remember_secs: None,
    };
    let posted = format!(
        "posted a test approval to {channel_id}; waiting up to {} s for a click",
        wait.as_secs()
    );
    if json {
        eprintln!("{posted}");
    } else {
        println!("{posted}");
    }
    let outcome = channel.request_approval(&request).await?;
    if json {
        let approver = |a: &agp_contracts::Approver| json!({"id": a.id, "name": a.name});
        let (ok, out) = match &outcome {
            ApprovalOutcome::Granted { by } | ApprovalOutcome::GrantedForSession { by } => (
                true,
                json!({"outcome": "allowed", "by": by.iter().map(approver).collect::<Vec<_>>()}),
            ),
            ApprovalOutcome::Denied { by, reason } => (
                false,
                json!({"outcome": "denied", "by": [approver(by)], "reason": reason}),
            ),
            ApprovalOutcome::Timeout => (false, json!({"outcome": "timeout"})),
            ApprovalOutcome::Unavailable { reason } => {
                (false, json!({"outcome": "unavailable", "reason": reason}))
            }
        };
        let mut out = out;
        out["ok"] = json!(ok);
        out["channel"] = json!(channel_id);
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(if ok { Exit::Ok } else { Exit::Bad });
    }
    let who = |a: &agp_contracts::Approver| format!("{} ({})", a.name, a.id);
    Ok(match outcome {
        ApprovalOutcome::Granted { by } | ApprovalOutcome::GrantedForSession { by } => {
            let names: Vec<_> = by.iter().map(who).collect();
            println!("✓ allowed by {}", names.join(", "));
            Exit::Ok
        }
        ApprovalOutcome::Denied { by, .. } => {
            println!(
                "✗ denied by {} (the channel works; the test call was denied)",
                who(&by)
            );
            Exit::Bad
        }
        ApprovalOutcome::Timeout => {
            println!("✗ nobody decided within {} s", wait.as_secs());
            Exit::Bad
        }
        ApprovalOutcome::Unavailable { reason } => {
            println!("✗ not decided: {reason}");
            Exit::Bad
        }
    })
}
