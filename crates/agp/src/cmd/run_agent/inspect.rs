//! `[[egress.rule]]` into the egress proxy's inspected hosts: each host a rule names gets its
//! TLS terminated by agp and its requests judged by its rules, in config order.

use std::path::PathBuf;

use agp_egress::{authority_of_url, CertificateDer, Effect, InspectHost, Rule};
use anyhow::{bail, Context, Result};

use crate::app::config::{EgressEffect, EgressRule};

pub(super) fn inspect_hosts(rules: &[EgressRule]) -> Result<Vec<InspectHost>> {
    let mut hosts: Vec<InspectHost> = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let n = i + 1;
        if r.host.contains(['*', '/', '@', '?', '#']) {
            bail!(
                "[[egress.rule]] #{n}: host {:?} must be a host or host:port (no wildcard, no URL)",
                r.host
            );
        }
        let (host, port) = authority_of_url(&format!("https://{}/", r.host))
            .map_err(|e| anyhow::anyhow!("[[egress.rule]] #{n}: {e}"))?;
        if let Some(p) = r.paths.iter().find(|p| !p.starts_with('/')) {
            bail!("[[egress.rule]] #{n}: path {p:?} must start with '/'");
        }
        if let Some(m) = r
            .methods
            .iter()
            .find(|m| m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()))
        {
            bail!("[[egress.rule]] #{n}: method {m:?} is not an HTTP method");
        }
        let rule = Rule {
            methods: r.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            paths: r.paths.clone(),
            effect: match r.effect {
                EgressEffect::Allow => Effect::Allow,
                EgressEffect::Require => Effect::Require,
                EgressEffect::Deny => Effect::Deny,
            },
        };
        if let Some(h) = hosts.iter_mut().find(|h| h.host == host && h.port == port) {
            h.rules.push(rule);
        } else {
            let mut h = InspectHost::new(host, port);
            h.rules.push(rule);
            hosts.push(h);
        }
    }
    Ok(hosts)
}

/// `[egress] upstream_ca`: the extra roots inspected hosts' upstreams are verified against.
pub(super) fn upstream_roots(files: &[PathBuf]) -> Result<Vec<CertificateDer<'static>>> {
    let mut roots = Vec::new();
    for f in files {
        let pem = std::fs::read(f)
            .with_context(|| format!("[egress] upstream_ca: cannot read {}", f.display()))?;
        let certs = agp_egress::roots_from_pem(&pem)
            .map_err(|e| anyhow::anyhow!("[egress] upstream_ca: {}: {e}", f.display()))?;
        roots.extend(certs);
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(host: &str, methods: &[&str], paths: &[&str], effect: EgressEffect) -> EgressRule {
        EgressRule {
            host: host.into(),
            methods: methods.iter().map(ToString::to_string).collect(),
            paths: paths.iter().map(ToString::to_string).collect(),
            effect,
        }
    }

    #[test]
    fn rules_group_by_host_in_order() {
        let hosts = inspect_hosts(&[
            rule(
                "API.github.com",
                &["get"],
                &["/repos/"],
                EgressEffect::Allow,
            ),
            rule("models.example:8443", &[], &[], EgressEffect::Require),
            rule("api.github.com", &[], &[], EgressEffect::Deny),
        ])
        .unwrap();
        assert_eq!(hosts.len(), 2);
        assert_eq!(
            (hosts[0].host.as_str(), hosts[0].port),
            ("api.github.com", 443)
        );
        assert_eq!(hosts[0].rules.len(), 2);
        assert_eq!(hosts[0].rules[0].methods, ["GET"]);
        assert_eq!(hosts[0].decide("GET", "/repos/a").0, Effect::Allow);
        assert_eq!(hosts[0].decide("POST", "/repos/a").0, Effect::Deny);
        assert_eq!(hosts[1].port, 8443);
        assert!(!hosts[0].allow_private);
    }

    #[test]
    fn malformed_rules_are_refused() {
        for bad in [
            rule("*.github.com", &[], &[], EgressEffect::Allow),
            rule("https://api.github.com", &[], &[], EgressEffect::Allow),
            rule("api.github.com", &[], &["repos"], EgressEffect::Allow),
            rule("api.github.com", &["GET /"], &[], EgressEffect::Allow),
            rule("", &[], &[], EgressEffect::Allow),
        ] {
            assert!(
                inspect_hosts(std::slice::from_ref(&bad)).is_err(),
                "{bad:?}"
            );
        }
    }
}
