//! The assembly of a daemon from an agp home and its config: journal (with the home's key),
//! policy, approval channel and sandbox, for `agp daemon` and `agp run`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agp_contracts::{ApprovalChannel, PolicyEngine};
use agp_daemon::exec::{Provider, SandboxFactory};
use agp_daemon::{DaemonConfig, Parts, Redactor};
use agp_journal::writer::{Durability, JournalOptions, JournalWriter};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::app::config::{ChannelChoice, Config, SandboxChoice, DEFAULT_DURABILITY};
use crate::app::policy_watch::PolicyWatch;
use crate::cmd::daemon::GovernArgs;
use crate::home::Home;

/// The ONE redaction function, from agp-policy.
struct PolicyRedactor;

impl Redactor for PolicyRedactor {
    fn redact_value(&self, value: &Value) -> Value {
        agp_policy::redact::redact_value(value)
    }
    fn redact_text(&self, text: &str) -> String {
        agp_policy::redact::redact_str(text)
    }
}

/// A daemon ready to start, and what it was built from (for messages).
pub struct Assembly {
    pub config: DaemonConfig,
    pub parts: Parts,
    pub policy_path: PathBuf,
    pub sandbox: SandboxChoice,
    pub channel: &'static str,
    /// How the policy applies (`--mode`, else `[policy] mode`, else enforce).
    pub mode: agp_contracts::PolicyMode,
    pub journal: Arc<JournalWriter>,
    /// Reloads the policy while the daemon runs; drop it before the journal (it journals).
    pub policy_watch: PolicyWatch,
    /// Sends each checkpoint to the `[[journal.witness]]` witnesses, if any.
    pub witness: Option<agp_witness::submit::Submitter>,
    /// Team mode with Slack: this daemon's part in relaying the team's approvals.
    pub relay: Option<agp_slack::team::SlackRelay>,
    /// Publishes each checkpoint to the shared database (team mode, `[state] url`); dropped
    /// after the journal closes, it publishes the final one.
    pub publisher: Option<crate::app::publish::Publisher>,
}

pub fn policy_path(home: &Home, explicit: Option<&Path>) -> PathBuf {
    explicit.map_or_else(|| home.policy(), Path::to_path_buf)
}

pub fn load_policy(path: &Path) -> Result<Arc<dyn PolicyEngine>> {
    Ok(load_reloadable(path)?)
}

/// The policy at `path`, which a running daemon reloads when it changes.
pub fn load_reloadable(path: &Path) -> Result<Arc<agp_policy::ReloadablePolicy>> {
    if !path.is_file() {
        bail!(
            "no policy at {} (run `agp init` to create the default one, or pass --policy FILE)",
            path.display()
        );
    }
    // Absolute: reloads re-read it by this path, and the journal names it, whatever the
    // working directory.
    let path = &std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let policy = agp_policy::ReloadablePolicy::load(path)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("policy {} is invalid", path.display()))?;
    Ok(Arc::new(policy))
}

pub fn open_journal(home: &Home, durability: Durability) -> Result<Arc<JournalWriter>> {
    let key_path = home.signer_key();
    if !key_path.exists() {
        bail!(
            "no journal signing key at {} (run `agp keygen`)",
            key_path.display()
        );
    }
    let key = agp_journal::keys::load_signer_key(&key_path)
        .with_context(|| format!("cannot load the journal key {}", key_path.display()))?;
    let writer = JournalWriter::open(
        &home.journal_dir(),
        key,
        JournalOptions::with_durability(durability),
    )
    .with_context(|| {
        format!(
            "cannot open the journal in {} (is another agp daemon or run using this home?)",
            home.journal_dir().display()
        )
    })?;
    Ok(Arc::new(writer))
}

pub fn sandbox_factory(
    home: &Home,
    file: &Config,
    choice: SandboxChoice,
) -> Result<Arc<dyn SandboxFactory>> {
    Ok(match choice {
        SandboxChoice::Bwrap => Arc::new(Provider(Arc::new(
            agp_sandbox::BubblewrapProvider::new().protect(home.root()),
        ))),
        SandboxChoice::Docker => Arc::new(Provider(Arc::new(docker_provider(home, file)?))),
        SandboxChoice::None => Arc::new(Provider(Arc::new(agp_sandbox::NoSandbox::new()))),
    })
}

/// The container provider for this home: its containers are labelled with the home, and the
/// ones an earlier agp of this home left behind (a crash) are removed now. Called with the
/// journal open, whose lock keeps any other agp of this home from running, so every container
/// of this home is an orphan. An engine that cannot be reached is only a warning here: every
/// session then fails closed at its start.
fn docker_provider(home: &Home, file: &Config) -> Result<agp_sandbox::docker::DockerProvider> {
    let owner = container_owner(home);
    let provider = file
        .docker_provider(home)?
        .protect(home.root())
        .owner(owner.clone());
    match agp_sandbox::docker::remove_orphans(provider.engine(), &owner, |_| false) {
        Ok(removed) if !removed.is_empty() => eprintln!(
            "agp: removed {} container(s) an earlier agp of this home left behind",
            removed.len()
        ),
        Ok(_) => {}
        Err(e) => eprintln!("agp: cannot look for containers left behind: {e}"),
    }
    Ok(provider)
}

/// The `agp.owner` label of this home's containers.
pub fn container_owner(home: &Home) -> String {
    std::fs::canonicalize(home.root())
        .unwrap_or_else(|_| home.root().to_path_buf())
        .display()
        .to_string()
}

/// The user's home (`~/` in policy rules, where agent logins are found): $HOME, else `/`.
pub fn user_home() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

/// The name of the user this process runs as: the passwd entry of the effective uid (which the
/// environment cannot fake), else $USER, else the bare uid.
pub fn os_user() -> String {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let mut pwd = std::mem::MaybeUninit::<libc::passwd>::uninit();
    let mut buf = vec![0u8; 4096];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call: `pwd` is writable storage for one passwd,
    // `buf` outlives the use of the strings it backs, and `found` receives null or `pwd`.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            pwd.as_mut_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            &raw mut found,
        )
    };
    if rc == 0 && !found.is_null() {
        // SAFETY: getpwuid_r succeeded and filled `pwd`; pw_name points into `buf` and is
        // NUL-terminated.
        let name = unsafe { std::ffi::CStr::from_ptr((*found).pw_name) };
        if let Ok(name) = name.to_str() {
            if !name.is_empty() {
                return name.to_owned();
            }
        }
    }
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// Builds the daemon for `home` as `file` (its config.toml) and `args` say: journal (with the home's key), policy, approval channel and
/// sandbox. The daemon itself is not started, but a Slack channel connects (Socket Mode) on
/// `rt`, the runtime the daemon will run on, and journals refused clicks.
pub fn assemble(
    home: &Home,
    file: &Config,
    args: &GovernArgs,
    rt: &tokio::runtime::Runtime,
) -> Result<Assembly> {
    home.require_initialized()?;
    let durability: Durability = args
        .durability
        .as_deref()
        .or(file.journal.durability.as_deref())
        .unwrap_or(DEFAULT_DURABILITY)
        .parse()
        .map_err(|e: String| anyhow!(e))?;
    let sandbox = match args.sandbox {
        Some(choice) => choice,
        None => file.sandbox(home)?,
    };
    let approval_timeout = args
        .approval_timeout
        .unwrap_or_else(|| file.approval_timeout_secs());
    if approval_timeout == 0 {
        bail!("the approval timeout must be at least 1 second");
    }

    let policy_path = policy_path(home, args.policy.as_deref());
    let policy = load_reloadable(&policy_path)?;
    let human = args.approval_channel.unwrap_or_else(|| file.channel());
    if args.approval_channel == Some(ChannelChoice::Slack)
        && (args.auto_approve || args.approver_script.is_some())
    {
        bail!(
            "--approval-channel slack (or AGP_APPROVAL_CHANNEL=slack) cannot be combined with \
             --auto-approve or --approver-script: choose one way to approve"
        );
    }
    if args.approval_channel == Some(ChannelChoice::Webhook)
        && (args.auto_approve || args.approver_script.is_some())
    {
        bail!(
            "--approval-channel webhook (or AGP_APPROVAL_CHANNEL=webhook) cannot be combined \
             with --auto-approve or --approver-script: choose one way to approve"
        );
    }
    // A webhook channel's settings are checked before the journal opens: a bad secret file
    // refuses to start without leaving anything behind.
    let webhook = if human == ChannelChoice::Webhook
        && !args.auto_approve
        && args.approver_script.is_none()
    {
        Some(file.webhook(home)?)
    } else {
        None
    };
    let witnesses = file.witnesses(home)?;
    // The journal comes first: the Slack channel journals the clicks it refuses.
    let journal = open_journal(home, durability)?;
    let witness = (!witnesses.is_empty()).then(|| {
        agp_witness::submit::Submitter::start(
            journal.dir(),
            journal.verifier_key(),
            witnesses,
            agp_witness::submit::Options::default(),
        )
    });
    let mut relay = None;
    let publisher = file.state.url.as_deref().map(|url| {
        let member = file
            .state
            .member
            .clone()
            .unwrap_or_else(|| agp_daemon::default_member(home.root()));
        crate::app::publish::Publisher::start(url, &member, journal.dir(), journal.verifier_key())
    });
    let (channel, channel_name): (Arc<dyn ApprovalChannel>, &'static str) = if args.auto_approve {
        (
            Arc::new(agp_channels::AutoApproveChannel::new()),
            "auto-approve",
        )
    } else if let Some(script) = &args.approver_script {
        let approver = agp_channels::ScriptedApprover::new(script)
            .with_context(|| format!("cannot use approver script {}", script.display()))?;
        (Arc::new(approver), "approver-script")
    } else if human == ChannelChoice::Slack {
        match &file.state.url {
            Some(url) => {
                let (channel, started) = team_slack(home, file, url, &journal, rt)?;
                relay = Some(started);
                (channel, "slack")
            }
            None => (Arc::new(slack_channel(home, &journal, rt)?), "slack"),
        }
    } else if let Some(cfg) = webhook {
        (Arc::new(webhook_channel(cfg, &journal, rt)?), "webhook")
    } else {
        let terminal = agp_channels::TerminalChannel::controlling();
        if !terminal.is_available() {
            eprintln!(
                "agp: no terminal and no other approval channel: calls that need approval will be denied"
            );
        }
        (Arc::new(terminal), "terminal")
    };

    let mut config = DaemonConfig::new(home.root().to_path_buf(), user_home());
    config.run_dir = home.run_dir();
    config.state_db = home.state_db();
    config.state_url = file.state.url.clone();
    if let Some(member) = &file.state.member {
        config.member = member.clone();
    }
    config.integrity_dir = home.integrity_dir();
    config.quarantine_dir = home.quarantine_dir();
    config.approval_timeout = Duration::from_secs(approval_timeout);
    config.operator = os_user();
    // `[approvals] web = false`: the web console may look, never decide.
    config.web_approvals = file.approvals.web.unwrap_or(true);
    let mode = args
        .mode
        .map_or_else(|| file.policy_mode(), crate::app::config::ModeChoice::mode);
    config.policy_mode = mode;
    config.secrets = Arc::new(crate::app::secrets::load(home)?);
    file.sandbox
        .limits
        .apply(&mut config.sandbox_limits)
        .with_context(|| format!("{} is not valid", home.config().display()))?;
    let policy_watch = PolicyWatch::start(
        Arc::clone(&policy),
        journal.clone(),
        config.state_url.is_none().then(|| config.state_db.clone()),
        file.policy.watch.unwrap_or(true),
    )?;
    let parts = Parts {
        journal: journal.clone(),
        policy,
        channel,
        sandbox: Some(sandbox_factory(home, file, sandbox)?),
        redactor: Arc::new(PolicyRedactor),
    };
    Ok(Assembly {
        config,
        parts,
        policy_path,
        sandbox,
        channel: channel_name,
        mode,
        journal,
        policy_watch,
        witness,
        relay,
        publisher,
    })
}

/// How long a stopping daemon keeps trying to get its final checkpoint cosigned.
pub const WITNESS_FINISH: Duration = Duration::from_secs(15);

/// Closes the journal (its final checkpoint) and has the witnesses cosign that checkpoint,
/// within [`WITNESS_FINISH`]; says so when one did not.
pub fn close_and_witness(journal: &JournalWriter, witness: Option<agp_witness::submit::Submitter>) {
    if let Err(e) = journal.close() {
        eprintln!("agp: error: cannot close the journal: {e}");
    }
    if let Some(w) = witness {
        if !w.finish(WITNESS_FINISH) {
            eprintln!(
                "agp: the final checkpoint was not cosigned by every [[journal.witness]] (see the \
                 warnings above): `agp verify --witness` will report the entries after the last \
                 witnessed checkpoint as not witnessed"
            );
        }
    }
}

/// The Slack channel of this home, connected on `rt`. Slack was asked for, so a missing or
/// invalid setting refuses to start rather than quietly using another channel.
fn slack_channel(
    home: &Home,
    journal: &Arc<JournalWriter>,
    rt: &tokio::runtime::Runtime,
) -> Result<agp_slack::SlackChannel> {
    match agp_slack::setup(home.root()) {
        agp_slack::SlackSetup::NotConfigured => bail!(
            "approvals go to Slack, but Slack is not configured: create {} (mode 0600) or set \
             AGP_SLACK_BOT_TOKEN, AGP_SLACK_APP_TOKEN, AGP_SLACK_CHANNEL and AGP_SLACK_APPROVERS \
             (see `agp slack check`)",
            home.slack_settings().display()
        ),
        agp_slack::SlackSetup::Invalid(e) => {
            bail!("approvals go to Slack, but the Slack settings are invalid: {e}")
        }
        agp_slack::SlackSetup::Configured(_) => {}
    }
    let journal: Arc<dyn agp_contracts::Journal> = journal.clone();
    rt.block_on(agp_slack::open_channel(
        home.root(),
        &home.state_db(),
        journal,
    ))
    .map_err(|e| {
        anyhow!("cannot start the Slack approval channel: {e} (check it with `agp slack check`)")
    })
}

/// Team mode with Slack: this daemon waits for its approvals' outcomes in the shared store
/// (`TeamChannel`), and takes its turn relaying the team's approvals to Slack when it holds
/// the team's Slack lease (`SlackRelay`). Slack's settings are checked as for one machine.
fn team_slack(
    home: &Home,
    file: &Config,
    url: &str,
    journal: &Arc<JournalWriter>,
    rt: &tokio::runtime::Runtime,
) -> Result<(Arc<dyn ApprovalChannel>, agp_slack::team::SlackRelay)> {
    let cfg = match agp_slack::setup(home.root()) {
        agp_slack::SlackSetup::Configured(cfg) => cfg,
        agp_slack::SlackSetup::NotConfigured => bail!(
            "approvals go to Slack, but Slack is not configured: create {} (mode 0600) or set \
             AGP_SLACK_BOT_TOKEN, AGP_SLACK_APP_TOKEN, AGP_SLACK_CHANNEL and AGP_SLACK_APPROVERS \
             (see `agp slack check`)",
            home.slack_settings().display()
        ),
        agp_slack::SlackSetup::Invalid(e) => {
            bail!("approvals go to Slack, but the Slack settings are invalid: {e}")
        }
    };
    // Refused tokens stop agp here, as on one machine, rather than in every relay turn.
    rt.block_on(agp_slack::SlackApi::new(&cfg).auth_test())
        .map_err(|e| {
            anyhow!(
                "cannot start the Slack approval channel: {e} (check it with `agp slack check`)"
            )
        })?;
    let member = file
        .state
        .member
        .clone()
        .unwrap_or_else(|| agp_daemon::default_member(home.root()));
    let store = rt
        .block_on(agp_daemon::store::PgStore::connect(url, &member))
        .map(Arc::new)
        .map_err(|e| anyhow!("cannot reach the team's shared state for Slack approvals: {e}"))?;
    let journal: Arc<dyn agp_contracts::Journal> = journal.clone();
    // Unique per process: a restarted daemon is a new holder (its predecessor's lease, if
    // live, is taken over only once it expires or is released).
    let holder = format!("{member}#{}", std::process::id());
    let relay = {
        let _in_runtime = rt.enter();
        agp_slack::team::SlackRelay::start(
            store.clone(),
            cfg,
            Some(journal),
            holder,
            agp_slack::team::RelayOptions::default(),
        )
    };
    let channel = agp_daemon::team::TeamChannel::new(store, agp_slack::team::CHANNEL);
    Ok((Arc::new(channel), relay))
}

/// The webhook channel, its decision listener bound on `rt`. Refused decisions are journaled.
fn webhook_channel(
    cfg: agp_webhook::WebhookConfig,
    journal: &Arc<JournalWriter>,
    rt: &tokio::runtime::Runtime,
) -> Result<agp_webhook::WebhookChannel> {
    let journal: Arc<dyn agp_contracts::Journal> = journal.clone();
    let url = cfg.url_origin();
    let channel = rt
        .block_on(
            agp_webhook::WebhookChannel::builder(cfg)
                .journal(journal)
                .start(),
        )
        .map_err(|e| anyhow!("cannot start the webhook approval channel: {e}"))?;
    eprintln!(
        "agp: approvals go to {url}; decisions are accepted at {}",
        channel.callback_url()
    );
    Ok(channel)
}

/// A runtime sized for a 2-core box: the daemon's work is mostly waiting on I/O and on
/// blocking journal/sandbox threads.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub fn warn_if_unsandboxed(choice: SandboxChoice) {
    if choice == SandboxChoice::None {
        eprintln!(
            "agp: WARNING: --sandbox none: allowed calls run directly on this machine with your \
             privileges (no isolation; journaled)"
        );
    }
}

/// The daemon's own warnings and errors (journal failures, outbox dead letters) go to stderr;
/// RUST_LOG refines them (e.g. `RUST_LOG=agp_daemon=debug`).
pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
