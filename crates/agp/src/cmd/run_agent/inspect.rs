//! `[[egress.rule]]` into the egress proxy's inspected hosts: each host a rule names gets its
//! TLS terminated by agp and its requests judged by its rules, in config order.

use std::path::PathBuf;
use std::sync::Arc;

use agp_daemon::secrets::Secrets;
use agp_egress::{
    authority_of_url, CertificateDer, CredentialProvider, Effect, Injection, InspectHost, Rule,
};
use anyhow::{bail, Context, Result};

use crate::app::config::{EgressCredential, EgressEffect, EgressRule};

/// A host entry of a rule or credential: `host` or `host:port`, normalized.
fn host_of(what: &str, n: usize, host: &str) -> Result<(String, u16)> {
    if host.contains(['*', '/', '@', '?', '#']) {
        bail!("[[egress.{what}]] #{n}: host {host:?} must be a host or host:port (no wildcard, no URL)");
    }
    authority_of_url(&format!("https://{host}/"))
        .map_err(|e| anyhow::anyhow!("[[egress.{what}]] #{n}: {e}"))
}

/// A header value rendered from the secrets store at request time.
struct SecretHeader {
    template: String,
    secrets: Arc<Secrets>,
}

impl CredentialProvider for SecretHeader {
    fn value(&self) -> Result<String, String> {
        self.secrets
            .render(&self.template)
            .map_err(|e| e.to_string())
    }
}

/// `[[egress.credential]]` into injections on the inspected hosts. A credential's host is
/// inspected; one no rule names keeps what it had: allowed whole when `[egress] allow` lists
/// it, judged (`require`) otherwise. Every secret a value names must be set now, and a value
/// must name one: a literal credential in config.toml is refused.
pub(super) fn add_credentials(
    creds: &[EgressCredential],
    secrets: &Arc<Secrets>,
    allowed: &[String],
    hosts: &mut Vec<InspectHost>,
) -> Result<()> {
    for (i, c) in creds.iter().enumerate() {
        let n = i + 1;
        let (host, port) = host_of("credential", n, &c.host)?;
        let header_ok = !c.header.is_empty()
            && c.header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !header_ok || c.header.eq_ignore_ascii_case("host") {
            bail!(
                "[[egress.credential]] #{n}: header {:?} is not a header name agp may set",
                c.header
            );
        }
        let names = Secrets::names_in(&c.value)
            .map_err(|e| anyhow::anyhow!("[[egress.credential]] #{n}: {e}"))?;
        if names.is_empty() {
            bail!(
                "[[egress.credential]] #{n}: value must name a secret ({{{{secret:NAME}}}});                  put the value in secrets.toml or AGP_SECRET_NAME, not in config.toml"
            );
        }
        for name in &names {
            secrets.get(name).map_err(|e| {
                anyhow::anyhow!(
                    "[[egress.credential]] #{n}: {e}: set AGP_SECRET_{name} or add it to secrets.toml"
                )
            })?;
        }
        let injection = Injection {
            header: c.header.clone(),
            credential: names.join(","),
            provider: Arc::new(SecretHeader {
                template: c.value.clone(),
                secrets: secrets.clone(),
            }),
        };
        if let Some(h) = hosts.iter_mut().find(|h| h.host == host && h.port == port) {
            h.inject.push(injection);
            continue;
        }
        let mut h = InspectHost::new(host, port);
        let listed = allowed.iter().any(|a| {
            agp_egress::normalize_host(a).is_ok_and(|a| a == h.host)
                || a.eq_ignore_ascii_case(&format!("{}:{}", h.host, h.port))
        });
        if listed {
            h.rules.push(Rule {
                methods: Vec::new(),
                paths: Vec::new(),
                effect: Effect::Allow,
            });
        }
        h.inject.push(injection);
        hosts.push(h);
    }
    Ok(())
}

pub(super) fn inspect_hosts(rules: &[EgressRule]) -> Result<Vec<InspectHost>> {
    let mut hosts: Vec<InspectHost> = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let n = i + 1;
        let (host, port) = host_of("rule", n, &r.host)?;
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

    fn cred(host: &str, header: &str, value: &str) -> EgressCredential {
        EgressCredential {
            host: host.into(),
            header: header.into(),
            value: value.into(),
        }
    }

    fn secrets() -> Arc<Secrets> {
        let mut s = Secrets::new();
        s.insert("GITHUB_TOKEN", "ghp_realvalue".into()).unwrap();
        Arc::new(s)
    }

    #[test]
    fn credentials_inject_rendered_secrets() {
        let mut hosts =
            inspect_hosts(&[rule("api.github.com", &["GET"], &[], EgressEffect::Allow)]).unwrap();
        add_credentials(
            &[
                cred(
                    "api.github.com",
                    "Authorization",
                    "Bearer {{secret:GITHUB_TOKEN}}",
                ),
                cred("listed.example", "X-Token", "{{secret:GITHUB_TOKEN}}"),
                cred("unlisted.example", "X-Token", "{{secret:GITHUB_TOKEN}}"),
            ],
            &secrets(),
            &["listed.example".into()],
            &mut hosts,
        )
        .unwrap();
        assert_eq!(hosts.len(), 3);
        let gh = &hosts[0];
        assert_eq!(gh.rules.len(), 1, "the user's rules stay the host's rules");
        assert_eq!(gh.inject[0].credential, "GITHUB_TOKEN");
        assert_eq!(
            gh.inject[0].provider.value().unwrap(),
            "Bearer ghp_realvalue"
        );
        assert!(!format!("{hosts:?}").contains("ghp_realvalue"));
        assert_eq!(hosts[1].decide("POST", "/x").0, Effect::Allow);
        assert_eq!(hosts[2].decide("GET", "/").0, Effect::Require);
    }

    #[test]
    fn credentials_without_a_set_secret_or_with_a_literal_are_refused() {
        for (bad, says) in [
            (
                cred("a.example", "X-Token", "literal-token"),
                "must name a secret",
            ),
            (
                cred("a.example", "X-Token", "{{secret:MISSING}}"),
                "AGP_SECRET_MISSING",
            ),
            (
                cred("a.example", "X-Token", "{{secret:GITHUB_TOKEN"),
                "not closed",
            ),
            (
                cred("a.example", "Host", "{{secret:GITHUB_TOKEN}}"),
                "header",
            ),
            (
                cred("a.example", "X Token", "{{secret:GITHUB_TOKEN}}"),
                "header",
            ),
            (
                cred("*.example", "X-Token", "{{secret:GITHUB_TOKEN}}"),
                "wildcard",
            ),
        ] {
            let err = add_credentials(std::slice::from_ref(&bad), &secrets(), &[], &mut Vec::new())
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
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
