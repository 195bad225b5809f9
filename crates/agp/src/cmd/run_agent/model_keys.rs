//! Model keys stay outside the sandbox: the agent gets a placeholder in its environment, and
//! the egress proxy, which terminates TLS to the model host, sets the real key on each request
//! to that host only (as the header the agent's client would have sent it in).
//!
//! Only an `https` model endpoint can be served this way: a plain `http` one (a gateway on
//! localhost) is not inspected, so its key still passes in (`agp run` warns).

use std::sync::Arc;

use agp_egress::{authority_of_url, CredentialProvider, Effect, Injection, InspectHost, Rule};

use super::LiveAgent;

/// Placeholders start with this: recognisable in a transcript, worthless anywhere.
pub(super) const PLACEHOLDER_PREFIX: &str = "agp-placeholder-";

/// A key variable and the header its client sends it in (`Bearer` or bare).
struct KeyVar {
    var: &'static str,
    header: &'static str,
    bearer: bool,
}

const CLAUDE_KEYS: &[KeyVar] = &[
    KeyVar {
        var: "ANTHROPIC_API_KEY",
        header: "x-api-key",
        bearer: false,
    },
    // Claude Code prefers ANTHROPIC_AUTH_TOKEN over an OAuth token for the Authorization header.
    KeyVar {
        var: "ANTHROPIC_AUTH_TOKEN",
        header: "Authorization",
        bearer: true,
    },
    KeyVar {
        var: "CLAUDE_CODE_OAUTH_TOKEN",
        header: "Authorization",
        bearer: true,
    },
];

/// A fixed value, held by the proxy only.
struct Fixed(String);

impl CredentialProvider for Fixed {
    fn value(&self) -> Result<String, String> {
        Ok(self.0.clone())
    }
}

/// What keeping the keys outside decided.
#[derive(Debug, Default)]
pub(super) struct Outside {
    /// The model host, inspected, with the keys injected (`None`: no key, or not https).
    pub host: Option<InspectHost>,
    /// Variables that still carry a real key into the sandbox, and why.
    pub passed_in: Option<String>,
}

/// Replaces the values of the agent's key variables in `env` with placeholders when its model
/// endpoint `base_url` is https, and returns the model host with the real keys to inject.
/// `key_vars` adds variables named by the configuration (Codex's provider `env_key`), sent as
/// `Authorization: Bearer` like OpenAI's own.
pub(super) fn keep_outside(
    agent: LiveAgent,
    env: &mut [(String, String)],
    base_url: &str,
    key_vars: &[String],
) -> Outside {
    let mut vars: Vec<(String, &'static str, bool)> = match agent {
        LiveAgent::ClaudeCode => CLAUDE_KEYS
            .iter()
            .map(|k| (k.var.to_owned(), k.header, k.bearer))
            .collect(),
        LiveAgent::Codex => ["OPENAI_API_KEY", "CODEX_API_KEY"]
            .iter()
            .map(|v| ((*v).to_owned(), "Authorization", true))
            .collect(),
    };
    for k in key_vars {
        if !vars.iter().any(|(v, _, _)| v == k) {
            vars.push((k.clone(), "Authorization", true));
        }
    }
    let present: Vec<&(String, &'static str, bool)> = vars
        .iter()
        .filter(|(v, _, _)| env.iter().any(|(n, val)| n == v && !val.is_empty()))
        .collect();
    if present.is_empty() {
        return Outside::default();
    }
    let https = base_url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
    let authority = authority_of_url(base_url).ok();
    let (Some((host, port)), true) = (authority, https) else {
        let names: Vec<&str> = present.iter().map(|(v, _, _)| v.as_str()).collect();
        return Outside {
            host: None,
            passed_in: Some(format!(
                "{} passed into the sandbox: the model endpoint {base_url} is not https, so agp \
                 cannot add the key to its requests from outside",
                names.join(", ")
            )),
        };
    };
    let mut inspected = InspectHost::new(host, port);
    // The model host is the agent's own: every request to it is allowed, as when tunnelled.
    inspected.rules.push(Rule {
        methods: Vec::new(),
        paths: Vec::new(),
        effect: Effect::Allow,
    });
    // A model gateway the user configured may be local, as for a tunnelled endpoint.
    inspected.allow_private = true;
    for (var, header, bearer) in present {
        let Some((_, real)) = env.iter_mut().find(|(n, _)| n == var) else {
            continue;
        };
        let value = if *bearer {
            format!("Bearer {real}")
        } else {
            real.clone()
        };
        *real = format!("{PLACEHOLDER_PREFIX}{var}");
        // One Authorization header: the first variable the client itself would use.
        if inspected
            .inject
            .iter()
            .any(|i| i.header.eq_ignore_ascii_case(header))
        {
            continue;
        }
        inspected.inject.push(Injection {
            header: (*header).to_owned(),
            credential: var.clone(),
            provider: Arc::new(Fixed(value)),
        });
    }
    Outside {
        host: Some(inspected),
        passed_in: None,
    }
}

/// Adds the model host to the inspected hosts: a host a rule already inspects keeps its rules
/// (the user's word on what may be sent) and gains the injections; one only a credential
/// named (no rule) is the agent's model host, allowed whole.
pub(super) fn merge(hosts: &mut Vec<InspectHost>, model: InspectHost) {
    match hosts
        .iter_mut()
        .find(|h| h.host == model.host && h.port == model.port)
    {
        Some(h) => {
            if h.rules.is_empty() {
                h.rules = model.rules;
            }
            h.inject.extend(model.inject);
            h.allow_private |= model.allow_private;
        }
        None => hosts.push(model),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn injected(h: &InspectHost) -> Vec<(String, String, String)> {
        h.inject
            .iter()
            .map(|i| {
                (
                    i.header.clone(),
                    i.credential.clone(),
                    i.provider.value().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn claude_keys_become_placeholders_and_headers() {
        let mut e = env(&[
            ("ANTHROPIC_BASE_URL", "https://models.example:8443"),
            ("ANTHROPIC_API_KEY", "sk-real"),
            ("ANTHROPIC_AUTH_TOKEN", "tok-real"),
            ("CLAUDE_CODE_OAUTH_TOKEN", "oat-real"),
        ]);
        let out = keep_outside(
            LiveAgent::ClaudeCode,
            &mut e,
            "https://models.example:8443",
            &[],
        );
        let h = out.host.unwrap();
        assert_eq!((h.host.as_str(), h.port), ("models.example", 8443));
        assert_eq!(
            injected(&h),
            [
                (
                    "x-api-key".into(),
                    "ANTHROPIC_API_KEY".into(),
                    "sk-real".into()
                ),
                (
                    "Authorization".into(),
                    "ANTHROPIC_AUTH_TOKEN".into(),
                    "Bearer tok-real".into()
                ),
            ]
        );
        let text = format!("{e:?}");
        for real in ["sk-real", "tok-real", "oat-real"] {
            assert!(!text.contains(real), "{text}");
        }
        assert!(e.contains(&(
            "CLAUDE_CODE_OAUTH_TOKEN".into(),
            "agp-placeholder-CLAUDE_CODE_OAUTH_TOKEN".into()
        )));
        assert_eq!(h.decide("POST", "/v1/messages").0, Effect::Allow);
    }

    #[test]
    fn codex_provider_key_is_a_bearer_token() {
        let mut e = env(&[("CORP_KEY", "corp-real"), ("HOME", "/home/agent")]);
        let out = keep_outside(
            LiveAgent::Codex,
            &mut e,
            "https://llm.corp.example/v1",
            &["CORP_KEY".into()],
        );
        let h = out.host.unwrap();
        assert_eq!((h.host.as_str(), h.port), ("llm.corp.example", 443));
        assert_eq!(
            injected(&h),
            [(
                "Authorization".into(),
                "CORP_KEY".into(),
                "Bearer corp-real".into()
            )]
        );
        assert_eq!(e[0].1, "agp-placeholder-CORP_KEY");
        assert_eq!(e[1].1, "/home/agent");
    }

    #[test]
    fn plain_http_endpoint_keeps_the_key_and_says_so() {
        let mut e = env(&[("ANTHROPIC_API_KEY", "sk-real")]);
        let out = keep_outside(LiveAgent::ClaudeCode, &mut e, "http://127.0.0.1:4000", &[]);
        assert!(out.host.is_none());
        assert!(out.passed_in.unwrap().contains("ANTHROPIC_API_KEY"));
        assert_eq!(e[0].1, "sk-real");
        // Nor does an https look-alike scheme or no key at all inspect anything.
        let mut none = env(&[("ANTHROPIC_MODEL", "m")]);
        let out = keep_outside(LiveAgent::ClaudeCode, &mut none, "https://a.example", &[]);
        assert!(out.host.is_none() && out.passed_in.is_none());
    }

    #[test]
    fn merging_keeps_the_users_rules() {
        let mut user = InspectHost::new("api.anthropic.com", 443);
        user.rules.push(Rule {
            methods: vec!["POST".into()],
            paths: vec!["/v1/messages".into()],
            effect: Effect::Allow,
        });
        let mut hosts = vec![user];
        let mut e = env(&[("ANTHROPIC_API_KEY", "sk-real")]);
        let model = keep_outside(
            LiveAgent::ClaudeCode,
            &mut e,
            "https://api.anthropic.com",
            &[],
        )
        .host
        .unwrap();
        merge(&mut hosts, model);
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].rules.len(), 1);
        assert_eq!(hosts[0].inject.len(), 1);
        assert_eq!(hosts[0].decide("GET", "/v1/files").0, Effect::Require);

        // A host only a credential named (no rule) is allowed whole as the model host.
        let mut hosts = vec![InspectHost::new("api.anthropic.com", 443)];
        let mut e = env(&[("ANTHROPIC_API_KEY", "sk-real")]);
        let model = keep_outside(
            LiveAgent::ClaudeCode,
            &mut e,
            "https://api.anthropic.com",
            &[],
        );
        merge(&mut hosts, model.host.unwrap());
        assert_eq!(hosts[0].decide("GET", "/v1/files").0, Effect::Allow);
    }
}
