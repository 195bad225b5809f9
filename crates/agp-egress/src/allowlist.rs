//! Which hosts the sandboxed agent may reach.
//!
//! An entry is `host`, `host:port`, `*.domain` or `*.domain:port`. Without a port an entry
//! allows the web ports 80 and 443 only. `*.domain` matches strict subdomains, never `domain`
//! itself (list both when both are meant). Names are compared case-insensitively, without a
//! trailing dot. IP addresses are allowed only when listed literally.

use std::fmt;

use crate::EgressError;

/// Ports an entry without an explicit port allows.
const DEFAULT_PORTS: [u16; 2] = [80, 443];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    /// Matches `x.<suffix>` for any non-empty `x`; stored without the leading `*.`.
    Subdomains(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    pattern: Pattern,
    port: Option<u16>,
}

/// A parsed allowlist. Empty means nothing is reachable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    entries: Vec<Entry>,
}

impl Allowlist {
    /// Parses entries; any malformed entry refuses the whole list (a typo must not silently
    /// widen or narrow what the agent can reach).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, EgressError> {
        let mut parsed = Vec::with_capacity(entries.len());
        for raw in entries {
            parsed.push(parse_entry(raw.as_ref())?);
        }
        Ok(Self { entries: parsed })
    }

    /// Adds the host (and port) of a base URL such as `ANTHROPIC_BASE_URL` or a Codex
    /// provider's `base_url`: exactly that host and port.
    pub fn allow_base_url(&mut self, url: &str) -> Result<(), EgressError> {
        let (host, port) = authority_of_url(url)?;
        self.entries.push(Entry {
            pattern: Pattern::Exact(host),
            port: Some(port),
        });
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether an exact (not wildcard) entry names `host` and admits `port`: what opens a
    /// non-public IP literal.
    pub fn lists_exactly(&self, host: &str, port: u16) -> bool {
        self.entries.iter().any(|e| {
            matches!(&e.pattern, Pattern::Exact(h) if h == host)
                && e.port.map_or(DEFAULT_PORTS.contains(&port), |p| p == port)
        })
    }

    /// Whether `host:port` may be reached. `host` must already be normalized by
    /// [`normalize_host`].
    pub fn allows(&self, host: &str, port: u16) -> bool {
        self.entries.iter().any(|e| {
            let port_ok = match e.port {
                Some(p) => p == port,
                None => DEFAULT_PORTS.contains(&port),
            };
            port_ok
                && match &e.pattern {
                    Pattern::Exact(h) => h == host,
                    Pattern::Subdomains(suffix) => host
                        .strip_suffix(suffix.as_str())
                        .and_then(|head| head.strip_suffix('.'))
                        .is_some_and(|label| !label.is_empty()),
                }
        })
    }
}

impl fmt::Display for Allowlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .entries
            .iter()
            .map(|e| {
                let host = match &e.pattern {
                    Pattern::Exact(h) => h.clone(),
                    Pattern::Subdomains(s) => format!("*.{s}"),
                };
                match e.port {
                    Some(p) => format!("{}:{p}", bracket_v6(&host)),
                    None => bracket_v6(&host),
                }
            })
            .collect();
        f.write_str(&parts.join(", "))
    }
}

fn bracket_v6(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

fn parse_entry(raw: &str) -> Result<Entry, EgressError> {
    let bad = |why: &str| EgressError::BadAllowlistEntry(format!("{raw:?}: {why}"));
    let (host, port) = split_host_port(raw.trim()).map_err(|e| bad(&e))?;
    if let Some(suffix) = host.strip_prefix("*.") {
        let suffix = normalize_host(suffix).map_err(|e| bad(&e))?;
        if suffix.parse::<std::net::IpAddr>().is_ok() || !suffix.contains('.') {
            // `*.com` would open a whole top-level domain.
            return Err(bad("a wildcard needs a domain with at least two labels"));
        }
        return Ok(Entry {
            pattern: Pattern::Subdomains(suffix),
            port,
        });
    }
    Ok(Entry {
        pattern: Pattern::Exact(normalize_host(host).map_err(|e| bad(&e))?),
        port,
    })
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`.
pub(crate) fn split_host_port(s: &str) -> Result<(&str, Option<u16>), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| "unclosed '['".to_owned())?;
        let port = match after {
            "" => None,
            p => Some(parse_port(
                p.strip_prefix(':')
                    .ok_or_else(|| "junk after ']'".to_owned())?,
            )?),
        };
        return Ok((v6, port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Ok((h, Some(parse_port(p)?))),
        Some(_) => Err("IPv6 addresses must be written in brackets".into()),
        None => Ok((s, None)),
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad port {p:?}"));
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("bad port {p:?}")),
        Ok(n) => Ok(n),
    }
}

/// Lowercases a host name and checks it is a DNS name or an IP literal, so that two spellings of
/// one host cannot be judged differently.
pub fn normalize_host(host: &str) -> Result<String, String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(ip.to_string());
    }
    let h = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if h.is_empty() || h.len() > 253 {
        return Err(format!("bad host name {host:?}"));
    }
    for label in h.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("bad host name {host:?}"));
        }
    }
    // All-numeric or hex dotted names that are not canonical IP literals (`127.1`,
    // `0x7f.0.0.1`) are read as addresses by some resolvers: refuse them rather than guess.
    let numeric = h.split('.').all(|l| {
        l.bytes().all(|b| b.is_ascii_digit())
            || l.strip_prefix("0x")
                .is_some_and(|x| x.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    if numeric {
        return Err(format!("ambiguous numeric host {host:?}"));
    }
    Ok(h)
}

/// Host and port of an `http://` or `https://` URL (default ports 80 / 443).
pub fn authority_of_url(url: &str) -> Result<(String, u16), EgressError> {
    let bad = |why: &str| EgressError::BadUrl(format!("{url:?}: {why}"));
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err(bad("scheme must be http or https")),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(bad("credentials in the URL are not supported"));
    }
    let (host, port) = split_host_port(authority).map_err(|e| bad(&e))?;
    let host = normalize_host(host).map_err(|e| bad(&e))?;
    Ok((host, port.unwrap_or(default_port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Allowlist {
        Allowlist::parse(entries).unwrap()
    }

    #[test]
    fn exact_hosts_and_default_ports() {
        let a = list(&["api.anthropic.com", "127.0.0.1:8080"]);
        assert!(a.allows("api.anthropic.com", 443));
        assert!(a.allows("api.anthropic.com", 80));
        assert!(!a.allows("api.anthropic.com", 22));
        assert!(!a.allows("evil.api.anthropic.com", 443));
        assert!(a.allows("127.0.0.1", 8080));
        assert!(!a.allows("127.0.0.1", 8081));
        assert!(!a.allows("127.0.0.1", 443));
    }

    #[test]
    fn wildcard_matches_subdomains_only() {
        let a = list(&["*.github.com"]);
        assert!(a.allows("api.github.com", 443));
        assert!(!a.allows("github.com", 443));
        assert!(!a.allows("evilgithub.com", 443));
        assert!(!a.allows("github.com.evil.io", 443));
        assert!(Allowlist::parse(&["*.com"]).is_err());
        assert!(Allowlist::parse(&["*.1.2.3"]).is_err());
    }

    #[test]
    fn malformed_entries_refuse_the_list() {
        for bad in [
            "",
            "a b",
            "host:0",
            "host:99999",
            "host:",
            "::1",
            "[::1",
            "-a.com",
            "127.1",
        ] {
            assert!(Allowlist::parse(&[bad]).is_err(), "{bad:?} accepted");
        }
        assert!(list(&["[::1]:9"]).allows("::1", 9));
    }

    #[test]
    fn names_are_normalized() {
        assert_eq!(
            normalize_host("API.Example.COM.").unwrap(),
            "api.example.com"
        );
        assert!(normalize_host("0x7f.0.0.1").is_err());
        assert!(normalize_host("2130706433").is_err());
        assert_eq!(normalize_host("::0001").unwrap(), "::1");
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            authority_of_url("http://127.0.0.1:4000/v1").unwrap(),
            ("127.0.0.1".into(), 4000)
        );
        assert_eq!(
            authority_of_url("https://api.openai.com/v1").unwrap(),
            ("api.openai.com".into(), 443)
        );
        assert!(authority_of_url("ftp://x").is_err());
        assert!(authority_of_url("https://user:pw@x.com").is_err());
        let mut a = Allowlist::default();
        a.allow_base_url("https://api.anthropic.com").unwrap();
        assert!(a.allows("api.anthropic.com", 443));
        assert!(!a.allows("api.anthropic.com", 80));
    }
}
