//! `agp daemon`, and the settings every command that starts a daemon shares (the assembly
//! itself is in `app`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::app::assemble::{assemble, init_logging, runtime, warn_if_unsandboxed};
pub use crate::app::config::{ChannelChoice, Config, ModeChoice, SandboxChoice};
use crate::app::policy_watch::ReloadRequester;
use crate::exit::Exit;
use crate::home::Home;

/// Settings shared by every command that starts a daemon.
#[derive(Debug, Clone, Args)]
pub struct GovernArgs {
    /// Policy file [default: <home>/policy.toml]
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Where allowed calls run: `bwrap` (bubblewrap, the default), `docker` (a container per
    /// session, see config.toml [sandbox.docker]) or `none` (no isolation at all; journaled as
    /// such) [default: config.toml [sandbox] provider, else bwrap]
    #[arg(long, value_enum)]
    pub sandbox: Option<SandboxChoice>,
    /// Approve every call the policy sends for approval, without asking anyone. Demos and CI
    /// only: loud, and journaled as the approver.
    #[arg(long, conflicts_with = "approver_script")]
    pub auto_approve: bool,
    /// Read approval answers (`allow`, `deny [reason]`, `timeout`, one a line) from FILE instead
    /// of the terminal. A test and demo facility, journaled as such.
    #[arg(long, value_name = "FILE")]
    pub approver_script: Option<PathBuf>,
    /// Seconds to wait for an approver before denying [default: config.toml
    /// [approvals] timeout_secs, else 300]
    #[arg(long, value_name = "SECS", env = "AGP_APPROVAL_TIMEOUT_SECS")]
    pub approval_timeout: Option<u64>,
    /// Where approvals go: `terminal` (the controlling TTY) or `slack` (settings in
    /// <home>/slack.toml and AGP_SLACK_*; see `agp slack check`). A Slack that cannot start
    /// stops agp, it never falls back to the terminal. --auto-approve and --approver-script
    /// replace the configured channel, but cannot be combined with this option set to slack
    /// or webhook. `webhook`: signed JSON posts to a team's receiver, signed decisions back
    /// (config.toml [approvals.webhook]; README "Webhook approvals")
    /// [default: config.toml [approvals] channel, else terminal]
    #[arg(long, value_enum, value_name = "CHANNEL", env = "AGP_APPROVAL_CHANNEL")]
    pub approval_channel: Option<ChannelChoice>,
    /// Journal durability: `entry` or `group` [default: config.toml [journal] durability]
    #[arg(long, value_name = "MODE")]
    pub durability: Option<String>,
    /// How the policy applies: `enforce`; `shadow` (judge and journal what it would do, but
    /// run every call, in the sandbox, and ask no one); `observe` (journal and run every call,
    /// unjudged). The sandbox and egress rules apply in every mode [default: config.toml
    /// [policy] mode, else enforce]
    #[arg(long, value_enum, value_name = "MODE")]
    pub mode: Option<ModeChoice>,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    #[command(flatten)]
    pub govern: GovernArgs,
    /// Also serve the web console (as `agp console` does) for this home, its journal and the
    /// daemon's policy; prints its address with the access token
    #[arg(long)]
    pub console: bool,
    /// The console's address; anything but loopback needs --console-tls-cert/-key
    /// [default: 127.0.0.1:0, a free port]
    #[arg(long, value_name = "ADDR", requires = "console")]
    pub console_listen: Option<std::net::SocketAddr>,
    /// The console shows everything and decides nothing
    #[arg(long, requires = "console")]
    pub console_view_only: bool,
    /// TLS certificate chain (PEM) for the console
    #[arg(long, value_name = "FILE", requires_all = ["console", "console_tls_key"])]
    pub console_tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for the console
    #[arg(long, value_name = "FILE", requires_all = ["console", "console_tls_cert"])]
    pub console_tls_key: Option<PathBuf>,
}

impl DaemonArgs {
    fn console_args(&self) -> Option<crate::cmd::console::ConsoleArgs> {
        self.console.then(|| crate::cmd::console::ConsoleArgs {
            listen: self
                .console_listen
                .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
            view_only: self.console_view_only,
            tls_cert: self.console_tls_cert.clone(),
            tls_key: self.console_tls_key.clone(),
            allow_host: vec![],
            policy: None,
        })
    }
}

pub fn run(home: &Home, args: &DaemonArgs) -> Result<Exit> {
    init_logging("agp_daemon=info,agp_witness=info");
    let rt = runtime()?;
    home.require_initialized()?;
    let config = Config::load(home)?;
    let assembly = assemble(home, &config, &args.govern, &rt)?;
    warn_if_unsandboxed(assembly.sandbox);
    let mode = assembly.mode;
    let (policy, channel, sandbox) = (assembly.policy_path, assembly.channel, assembly.sandbox);
    let reloads = if config.policy.watch.unwrap_or(true) {
        "when it changes or on SIGHUP"
    } else {
        "on SIGHUP"
    };
    // Caught before the socket accepts anything: SIGHUP reloads the policy (it used to stop
    // the daemon, as the signal does by default).
    let hangups = {
        let _in_runtime = rt.enter();
        reload_on_sighup(assembly.policy_watch.requester())?
    };
    // The console is bound before the daemon starts (a console that cannot listen stops
    // everything, with its reason) and serves until the daemon stops; it reaches the daemon
    // through its socket like any console.
    let console = match args.console_args() {
        None => None,
        Some(c) => {
            let bound = rt.block_on(crate::cmd::console::bind(home, &c, Some(policy.clone())))?;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            Some((bound, stop, stopped))
        }
    };
    let console = console.map(|(bound, stop, stopped)| {
        crate::cmd::console::announce(&bound);
        let task = rt.spawn(bound.serve(async {
            let _ = stopped.await;
        }));
        (task, stop)
    });
    let served = rt.block_on(crate::app::local::serve_until(
        assembly.config,
        assembly.parts,
        shutdown_signal(),
        |socket| {
            println!(
                "agp daemon: listening on {} (policy {}, mode {}, reloaded {}; approvals via \
                 {}, sandbox {}); Ctrl-C to stop",
                socket.display(),
                policy.display(),
                mode,
                reloads,
                channel,
                sandbox,
            );
            if let Some(warning) = crate::cmd::mode_report::banner(mode) {
                eprintln!("{warning}");
            }
        },
    ));
    if let Some((task, stop)) = console {
        let _ = stop.send(());
        let _ = rt.block_on(task);
    }
    served?;
    hangups.abort();
    if let Some(relay) = assembly.relay {
        // Hands the team's Slack lease over now, not when it runs out.
        rt.block_on(relay.stop(std::time::Duration::from_secs(2)));
    }
    drop(assembly.policy_watch);
    crate::app::assemble::close_and_witness(&assembly.journal, assembly.witness);
    // After the close: the final checkpoint is published too.
    if let Some(p) = assembly.publisher {
        if !p.finish(crate::app::publish::FINISH_WITHIN) {
            eprintln!(
                "agp: not every checkpoint reached the shared database before stopping; the \
                 next start publishes the rest (they are kept in the journal)"
            );
        }
    }
    println!("agp daemon: stopped");
    Ok(Exit::Ok)
}

/// Forwards every SIGHUP to the policy reload thread; must run inside the runtime.
fn reload_on_sighup(requester: ReloadRequester) -> Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("cannot catch SIGHUP")?;
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            requester.sighup();
        }
    }))
}

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the daemon can still be stopped by SIGKILL; recovery on the
        // next start settles what it left.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
