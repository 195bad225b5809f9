//! `agp egress-bridge` (hidden): runs INSIDE the sandbox as the agent's parent. It listens on
//! `127.0.0.1:PORT` in the sandbox's own network namespace, forwards every connection to agp's
//! egress proxy socket (bound read-only into the sandbox), and runs the agent command, exiting
//! with its status. The proxy on the host side judges every connection; this only carries bytes.

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::exit::Exit;

#[derive(Debug, Args)]
pub struct EgressBridgeArgs {
    /// Loopback address to listen on inside the sandbox.
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The egress proxy's Unix socket.
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
    /// The agent command to run while the bridge serves.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

pub fn run(args: &EgressBridgeArgs) -> Result<Exit> {
    if !args.listen.ip().is_loopback() {
        bail!(
            "the egress bridge listens on loopback only, not {}",
            args.listen
        );
    }
    agp_egress::bridge::spawn(args.listen, &args.socket)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let status = Command::new(&args.command[0])
        .args(&args.command[1..])
        .status()
        .with_context(|| format!("cannot start {}", args.command[0]))?;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    // The agent's own exit status is the bridge's: the launcher reports it.
    std::process::exit(code);
}
