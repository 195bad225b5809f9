//! The `network-egress` guard: commands that send data off the machine need approval unless a
//! rule allows them.

use super::{operands, GuardHit, GuardId};
use crate::matcher::url_host;
use crate::shell::SimpleCommand;

const G: GuardId = GuardId::NetworkEgress;

/// A network command and the hosts it talks to (when they can be told).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Egress {
    pub hit: GuardHit,
    /// Hosts named on the command line; empty when unknown.
    pub hosts: Vec<String>,
    /// Every destination was recognised (so domain rules can vouch for all of them).
    pub hosts_complete: bool,
}

pub fn check_command(cmd: &SimpleCommand) -> Option<Egress> {
    let name = cmd.name();
    let ops = operands(cmd.args());
    let (hosts, complete): (Vec<String>, bool) = match name {
        "curl" | "wget" | "http" | "https" | "aria2c" | "lwp-request" => {
            let urls: Vec<_> = ops
                .iter()
                .filter(|w| !w.dynamic)
                .filter_map(|w| url_host(&w.text))
                .collect();
            let complete = !urls.is_empty() && ops.iter().all(|w| !w.dynamic);
            (urls, complete)
        }
        "nc" | "ncat" | "netcat" | "socat" | "telnet" | "ftp" | "sftp" | "ssh" | "mosh" => {
            (Vec::new(), false)
        }
        "scp" | "rsync" => {
            let remote: Vec<String> = ops
                .iter()
                .filter(|w| is_remote_spec(&w.text))
                .filter_map(|w| remote_host(&w.text))
                .collect();
            if remote.is_empty() && !ops.iter().any(|w| w.dynamic) {
                return None;
            }
            (remote, false)
        }
        _ => return None,
    };
    let target = if hosts.is_empty() {
        String::new()
    } else {
        format!(" ({})", hosts.join(", "))
    };
    Some(Egress {
        hit: GuardHit::require(
            G,
            format!("{name} sends or fetches data over the network{target}; no rule allows it"),
        ),
        hosts,
        hosts_complete: complete,
    })
}

/// `host:path`, `user@host:path`, `rsync://…`, but not `./a:b` or `/x:y`.
fn is_remote_spec(s: &str) -> bool {
    if s.starts_with("rsync://") || s.starts_with("ssh://") {
        return true;
    }
    match s.split_once(':') {
        Some((host, _)) => !host.is_empty() && !host.contains('/'),
        None => false,
    }
}

fn remote_host(s: &str) -> Option<String> {
    if s.contains("://") {
        return url_host(s);
    }
    let host = s.split(':').next()?;
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}
