//! Reaching the daemon: the session `agp run` opened, or (`--attach`) one the hook opens on the
//! home's daemon for each harness session and remembers in the run directory.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use agp_contracts::canonical::sha256_hex;
use agp_gateway::Client;
use anyhow::{Context, Result};
use serde_json::Value;

use super::{session_root, Harness};

pub(super) fn connect(socket: &Path, token: &str, timeout: Duration) -> Result<Client> {
    let mut client = Client::connect(socket, timeout)?;
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
    use agp_gateway::{ClientError, ErrorCode, SessionMode};
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

    let socket = run_dir.join(agp_daemon::GATEWAY_SOCKET_FILE);
    let harness_session = input["session_id"].as_str().unwrap_or("-");
    let scope = project.map(|p| p.display().to_string()).unwrap_or_default();
    let key = sha256_hex(format!("{}:{harness_session}:{scope}", harness.name()).as_bytes());
    let dir = run_dir.join("hook-sessions");
    let cache = dir.join(&key[..32]);
    if let Ok(token) = std::fs::read_to_string(&cache) {
        let mut c = Client::connect(&socket, timeout)?;
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
    let opened = Client::connect(&socket, timeout)?
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
    connect(&socket, &opened.token, timeout)
}
