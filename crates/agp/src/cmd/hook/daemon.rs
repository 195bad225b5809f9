//! Reaching the daemon: the session `agp run` opened, or (`--attach`) one the hook opens on the
//! home's daemon for each harness session and remembers in the run directory.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use agp_contracts::canonical::sha256_hex;
use agp_gateway::{Client, ClientError};
use anyhow::{anyhow, Context, Result};
use serde_json::Value;

use super::{session_root, Harness};

/// What to do when no daemon listens on the session's socket (`agp run` set it).
const START_RUN: &str =
    "the `agp run` that started this agent is not running: start the agent again with `agp run`";
/// What to do when no daemon listens on the home's socket (`--attach`).
const START_DAEMON: &str = "start it with `agp daemon`";

/// Connects to the daemon's gateway; when nothing listens there, the error says what to start.
fn reach(socket: &Path, timeout: Duration, fix: &str) -> Result<Client> {
    Client::connect(socket, timeout).map_err(|e| match e {
        ClientError::Connect { .. } => anyhow!("{e}; {fix}"),
        other => other.into(),
    })
}

/// The session `agp run` opened, named by the hook's environment.
pub(super) fn connect(socket: &Path, token: &str, timeout: Duration) -> Result<Client> {
    hello(reach(socket, timeout, START_RUN)?, token)
}

fn hello(mut client: Client, token: &str) -> Result<Client> {
    client.hello(token).context("opening the session")?;
    Ok(client)
}

/// `--attach`: the session of this harness session on the home's daemon, opened on first use.
pub(super) fn attach(
    run_dir: &Path,
    harness: Harness,
    project: Option<&Path>,
    input: &Value,
    timeout: Duration,
) -> Result<Client> {
    use agp_gateway::{ErrorCode, SessionMode};
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

    let socket = run_dir.join(agp_daemon::GATEWAY_SOCKET_FILE);
    let harness_session = input["session_id"].as_str().unwrap_or("-");
    let scope = project.map(|p| p.display().to_string()).unwrap_or_default();
    let key = sha256_hex(format!("{}:{harness_session}:{scope}", harness.name()).as_bytes());
    let dir = run_dir.join("hook-sessions");
    let cache = dir.join(&key[..32]);
    if let Ok(token) = std::fs::read_to_string(&cache) {
        let mut c = reach(&socket, timeout, START_DAEMON)?;
        match c.hello(token.trim()) {
            Ok(_) => return Ok(c),
            // The daemon restarted or ended the session: open a new one.
            Err(ClientError::Refused {
                code: ErrorCode::BadToken | ErrorCode::SessionClosed,
                ..
            }) => {
                let _ = std::fs::remove_file(&cache);
            }
            Err(e) => return Err(e.into()),
        }
    }
    let admin_path = run_dir.join(agp_daemon::ADMIN_TOKEN_FILE);
    let admin = std::fs::read_to_string(&admin_path).with_context(|| {
        format!(
            "cannot read {} (is `agp daemon` running for this home?)",
            admin_path.display()
        )
    })?;
    let root = session_root(project, input["cwd"].as_str(), run_dir)?;
    let opened = reach(&socket, timeout, START_DAEMON)?
        .open_session(
            admin.trim(),
            harness.name(),
            &root.to_string_lossy(),
            "",
            SessionMode::Gate,
        )
        .context("opening a session on the agp daemon")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&cache)
        .with_context(|| format!("cannot write {}", cache.display()))?;
    file.write_all(opened.token.as_bytes())?;
    hello(reach(&socket, timeout, START_DAEMON)?, &opened.token)
}
