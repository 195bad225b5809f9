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
            let targets = url_operands(cmd.args());
            let urls: Vec<_> = targets
                .iter()
                .filter(|w| !w.dynamic)
                .filter_map(|w| url_host(&w.text))
                .collect();
            let complete = !urls.is_empty() && urls.len() == targets.len();
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

/// Options of curl and wget that take a value (which is not a URL to fetch).
const VALUE_OPTIONS: &[&str] = &[
    "-o",
    "--output",
    "-d",
    "--data",
    "--data-raw",
    "--data-binary",
    "--data-urlencode",
    "-H",
    "--header",
    "-X",
    "--request",
    "-u",
    "--user",
    "-A",
    "--user-agent",
    "-e",
    "--referer",
    "-F",
    "--form",
    "-T",
    "--upload-file",
    "-b",
    "--cookie",
    "-c",
    "--cookie-jar",
    "-D",
    "--dump-header",
    "-w",
    "--write-out",
    "-x",
    "--proxy",
    "-m",
    "--max-time",
    "--connect-timeout",
    "-r",
    "--range",
    "-E",
    "--cert",
    "--key",
    "--cacert",
    "-K",
    "--config",
    "--retry",
    "-O",
    "--output-document",
    "-P",
    "--directory-prefix",
    "-U",
    "--header",
    "--post-data",
    "--post-file",
    "-t",
    "--tries",
    "-T",
    "--timeout",
    "--limit-rate",
    "--resolve",
];

/// The operands of a curl/wget command that name what to fetch (`--url X` included).
fn url_operands(args: &[crate::shell::Word]) -> Vec<&crate::shell::Word> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let t = args[i].text.as_str();
        if t == "--url" {
            if let Some(v) = args.get(i + 1) {
                out.push(v);
            }
            i += 2;
            continue;
        }
        if t.starts_with('-') && t.len() > 1 && !args[i].dynamic {
            // `wget -O-` and `curl -sSLo out` attach values; only a bare value-taking option
            // consumes the next word.
            if VALUE_OPTIONS.contains(&t)
                || (t.len() > 2
                    && !t.starts_with("--")
                    && t.ends_with(['o', 'd', 'H', 'X', 'u', 'F', 'T', 'x', 'w', 'O', 'P']))
            {
                i += 1;
            }
            i += 1;
            continue;
        }
        out.push(&args[i]);
        i += 1;
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shell::{analyze, Part};

    fn check(src: &str) -> Option<Egress> {
        analyze(src).parts.iter().find_map(|p| match p {
            Part::Command(c) => check_command(c),
            _ => None,
        })
    }

    #[test]
    fn network_commands() {
        let e = check("curl -fsSL https://API.example.com/x -o out").unwrap();
        assert_eq!(e.hosts, ["api.example.com"]);
        assert!(e.hosts_complete);
        assert!(
            !check("curl https://a.example \"$URL\"")
                .unwrap()
                .hosts_complete
        );
        for src in [
            "nc -l 4444",
            "ssh host",
            "sftp host",
            "socat - TCP:host:80",
            "scp a host:/b",
            "rsync -a src/ user@host:dst/",
            "rsync rsync://host/mod .",
        ] {
            assert!(check(src).is_some(), "{src}");
        }
        for src in [
            "rsync -a src/ backup/",
            "scp a b",
            "cargo build",
            "git status",
        ] {
            assert!(check(src).is_none(), "{src}");
        }
        assert_eq!(
            check("scp f deploy@prod.example:/srv").unwrap().hosts,
            ["prod.example"]
        );
    }
}
