//! `config.toml`, read once into one typed value that every later stage reads.
//!
//! Unknown sections and keys are ignored (they may belong to a newer agp), except in
//! `[sandbox.limits]`, where a misspelt bound would silently leave a default in place.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;

use crate::app::limits::LimitsSection;
use crate::home::Home;

/// Approval timeout when neither the flag nor `[approvals] timeout_secs` sets one.
pub const DEFAULT_APPROVAL_TIMEOUT_SECS: u64 = 300;
/// Journal durability when neither the flag nor `[journal] durability` sets one.
pub const DEFAULT_DURABILITY: &str = "entry";

/// Where allowed calls run (`--sandbox`, `[sandbox] provider`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SandboxChoice {
    Bwrap,
    /// A hardened container per session in a Docker Engine API engine (`[sandbox.docker]`).
    Docker,
    None,
}

/// The human approval channel of a daemon (`--auto-approve` and `--approver-script` replace it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelChoice {
    Terminal,
    Slack,
    /// Signed JSON posts to a team's own receiver, signed callbacks (`[approvals.webhook]`).
    Webhook,
}

/// How the policy's verdicts apply (`--mode`, `[policy] mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeChoice {
    /// Deny refuses the call, require asks a human.
    Enforce,
    /// Judge every call and journal the verdict it would have had, but run it (in the sandbox)
    /// and ask no one.
    Shadow,
    /// Journal and run every call; the policy does not judge them.
    Observe,
}

impl ModeChoice {
    pub fn mode(self) -> agp_contracts::PolicyMode {
        match self {
            ModeChoice::Enforce => agp_contracts::PolicyMode::Enforce,
            ModeChoice::Shadow => agp_contracts::PolicyMode::Shadow,
            ModeChoice::Observe => agp_contracts::PolicyMode::Observe,
        }
    }
}

impl std::fmt::Display for SandboxChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SandboxChoice::Bwrap => "bwrap",
            SandboxChoice::Docker => "docker",
            SandboxChoice::None => "none (NO isolation)",
        })
    }
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct Config {
    #[serde(default)]
    pub journal: JournalSection,
    #[serde(default)]
    pub approvals: ApprovalsSection,
    #[serde(default)]
    pub sandbox: SandboxSection,
    #[serde(default)]
    pub egress: EgressSection,
    #[serde(default)]
    pub policy: PolicySection,
    #[serde(default)]
    pub state: StateSection,
    /// `[intendants.<name>]`: settings of each live agent.
    #[serde(default)]
    pub intendants: BTreeMap<String, IntendantSection>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct JournalSection {
    pub durability: Option<String>,
    /// The origin line of signed checkpoints. Kept loose: `agp keygen` has always ignored an
    /// origin that is not a string rather than refusing the file.
    pub origin: Option<toml::Value>,
    /// `[[journal.witness]]`: C2SP witnesses each checkpoint is submitted to.
    #[serde(default)]
    pub witness: Vec<WitnessEntry>,
}

/// One witness: its submission URL prefix (`<url>/add-checkpoint` is posted to) and its
/// cosignature verifier key (`agp witness keygen` prints it).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct WitnessEntry {
    pub url: String,
    pub key: String,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct ApprovalsSection {
    pub timeout_secs: Option<u64>,
    pub channel: Option<ChannelChoice>,
    /// `[approvals.webhook]`: the webhook channel's receiver, secret, listener and approvers.
    pub webhook: Option<agp_webhook::Settings>,
    /// Whether the web console may decide approvals [default: true]; `false` makes every
    /// console view-only (the daemon refuses and journals its decisions).
    pub web: Option<bool>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct SandboxSection {
    pub provider: Option<String>,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub docker: DockerSection,
}

/// `[sandbox.docker]`: the container provider. Unknown keys are refused: a misspelt `image`
/// or `runtime` must not leave a weaker default in place.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerSection {
    /// `NAME@sha256:<image id>` (`agp sandbox image build` prints it); a bare tag is refused.
    pub image: Option<String>,
    /// The engine's API socket (a path or `unix://PATH`) [default: DOCKER_HOST, else
    /// /var/run/docker.sock].
    pub socket: Option<String>,
    /// `runc` (shared kernel, the default) or `runsc` (gVisor's user-space kernel).
    pub runtime: Option<String>,
}

/// `[state]`: where the daemon keeps its state. Unknown keys are refused: a misspelt `url`
/// must not silently leave a daemon of a team on its own SQLite file.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSection {
    /// `postgres://…`: shared state in PostgreSQL (team mode) [default: SQLite, state.db].
    pub url: Option<String>,
    /// This daemon's id in shared state [default: `<hostname>:<agp home>`].
    pub member: Option<String>,
}

/// `[policy]`: how a running daemon follows its policy file.
#[derive(Debug, Default, serde::Deserialize)]
pub struct PolicySection {
    /// Reload the policy when its file changes [default: true]; `false` reloads on SIGHUP of
    /// `agp daemon` only (e.g. a file system without change notification, or reloads only when
    /// asked for).
    pub watch: Option<bool>,
    /// `enforce` (default), `shadow` or `observe`; `--mode` wins.
    pub mode: Option<ModeChoice>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct EgressSection {
    /// Hosts (or `*.domain`) a live agent may reach besides its model API.
    #[serde(default)]
    pub allow: Vec<String>,
    /// `[[egress.rule]]`: per-request rules. A host named by a rule is inspected: agp
    /// terminates its TLS and judges each request (first matching rule; none: require).
    #[serde(default)]
    pub rule: Vec<EgressRule>,
    /// Ask the session's approval channel about a host nobody listed (and about `require`
    /// rules) [default: true]; `false` refuses them without asking.
    pub ask: Option<bool>,
    /// Who may approve an egress request (empty: whoever the channel itself accepts).
    #[serde(default)]
    pub approvers: Vec<String>,
    /// Names of internal services that may resolve to private, loopback or link-local
    /// addresses (no other name may). Listing one here does not allow it: it still needs the
    /// allowlist, a rule or an approval.
    #[serde(default)]
    pub private: Vec<String>,
    /// PEM files of extra roots the proxy trusts for the upstreams of inspected hosts (a
    /// company CA, a model gateway's own CA), besides the web PKI roots.
    #[serde(default)]
    pub upstream_ca: Vec<PathBuf>,
    /// `[[egress.credential]]`: headers the proxy sets on requests to a host, from secrets.
    #[serde(default)]
    pub credential: Vec<EgressCredential>,
}

/// One `[[egress.credential]]`: `value` (`"Bearer {{secret:GITHUB_TOKEN}}"`) rendered from the
/// secrets store when a request to `host` is allowed, set as `header`, replacing the client's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressCredential {
    /// `host` or `host:port` (port 443 by default); no wildcards.
    pub host: String,
    pub header: String,
    pub value: String,
}

/// One `[[egress.rule]]`. Unknown keys are refused: a misspelt `paths` must not widen a rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressRule {
    /// `host` or `host:port` (port 443 by default); no wildcards.
    pub host: String,
    /// Methods the rule matches; empty: any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Path prefixes the rule matches (without the query); empty: any.
    #[serde(default)]
    pub paths: Vec<String>,
    pub effect: EgressEffect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EgressEffect {
    Allow,
    Require,
    Deny,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct IntendantSection {
    /// Hashes the agent's binary must match (any one of them); empty: not pinned.
    #[serde(default)]
    pub sha256: Vec<String>,
}

impl Config {
    /// Reads and parses `<home>/config.toml`.
    pub fn load(home: &Home) -> Result<Self> {
        let path = home.config();
        Self::parse(&Self::read(home)?).with_context(|| format!("{} is not valid", path.display()))
    }

    /// The text of `<home>/config.toml`.
    pub fn read(home: &Home) -> Result<String> {
        let path = home.config();
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The sandbox configured (`[sandbox] provider`, else bwrap).
    pub fn sandbox(&self, home: &Home) -> Result<SandboxChoice> {
        match self.sandbox.provider.as_deref() {
            None | Some("bwrap") => Ok(SandboxChoice::Bwrap),
            Some("docker") => Ok(SandboxChoice::Docker),
            Some("none") => Ok(SandboxChoice::None),
            Some(other) => bail!(
                "{}: [sandbox] provider {other:?} is unknown (expected \"bwrap\", \"docker\" \
                 or \"none\")",
                home.config().display()
            ),
        }
    }

    /// The container engine `[sandbox.docker] socket` names, else DOCKER_HOST's, else
    /// Docker's default socket.
    pub fn docker_engine(&self) -> Result<agp_sandbox::docker::Engine> {
        let engine = match &self.sandbox.docker.socket {
            Some(socket) => agp_sandbox::docker::Engine::at(socket),
            None => agp_sandbox::docker::Engine::from_env(),
        };
        engine.map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// The container provider `[sandbox.docker]` describes. The image must be pinned by
    /// digest; the runtime must be one agp knows.
    pub fn docker_provider(&self, home: &Home) -> Result<agp_sandbox::docker::DockerProvider> {
        let file = home.config();
        let section = &self.sandbox.docker;
        let Some(image) = &section.image else {
            bail!(
                "{}: [sandbox] provider = \"docker\" needs [sandbox.docker] image = \
                 \"NAME@sha256:<id>\"; `agp sandbox image build` builds one and prints the line",
                file.display()
            );
        };
        let image: agp_sandbox::docker::ImageRef = image
            .parse()
            .map_err(|e| anyhow::anyhow!("{}: [sandbox.docker] {e}", file.display()))?;
        let runtime: agp_sandbox::docker::Runtime = section
            .runtime
            .as_deref()
            .unwrap_or("runc")
            .parse()
            .map_err(|e| anyhow::anyhow!("{}: [sandbox.docker] {e}", file.display()))?;
        Ok(agp_sandbox::docker::DockerProvider::new(
            self.docker_engine()?,
            image,
            runtime,
        ))
    }

    /// The human approval channel configured (else terminal).
    pub fn channel(&self) -> ChannelChoice {
        self.approvals.channel.unwrap_or(ChannelChoice::Terminal)
    }

    /// The webhook channel `[approvals.webhook]` describes, its secret read (from its file or
    /// the environment variable it names).
    pub fn webhook(&self, home: &Home) -> Result<agp_webhook::WebhookConfig> {
        let Some(settings) = &self.approvals.webhook else {
            bail!(
                "{}: approvals go to a webhook, but there is no [approvals.webhook] section \
                 (url, secret_file or secret_env, listen, approvers; see README \"Webhook approvals\")",
                home.config().display()
            );
        };
        agp_webhook::WebhookConfig::from_settings(settings, home.root(), |k| std::env::var(k).ok())
            .map_err(|e| anyhow::anyhow!("{}: {e}", home.config().display()))
    }

    /// The approval timeout configured, in seconds (else 300).
    pub fn approval_timeout_secs(&self) -> u64 {
        self.approvals
            .timeout_secs
            .unwrap_or(DEFAULT_APPROVAL_TIMEOUT_SECS)
    }

    /// The witnesses `[[journal.witness]]` lists, checked.
    pub fn witnesses(&self, home: &Home) -> Result<Vec<agp_witness::submit::Target>> {
        self.journal
            .witness
            .iter()
            .map(|w| {
                if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                    bail!(
                        "{}: [[journal.witness]] url {:?} is not an http:// or https:// URL",
                        home.config().display(),
                        w.url
                    );
                }
                let key = agp_journal::cosig::WitnessKey::parse(&w.key).map_err(|e| {
                    anyhow::anyhow!(
                        "{}: [[journal.witness]] {}: key is not a witness verifier key ({e}; `agp witness keygen` prints one)",
                        home.config().display(),
                        w.url
                    )
                })?;
                Ok(agp_witness::submit::Target {
                    url: w.url.clone(),
                    key,
                })
            })
            .collect()
    }

    /// The approval timeout configured (else 300 s).
    pub fn approval_timeout(&self) -> Duration {
        Duration::from_secs(self.approval_timeout_secs())
    }

    /// The checkpoint origin configured, if it is a string.
    pub fn origin(&self) -> Option<String> {
        self.journal
            .origin
            .as_ref()
            .and_then(|o| o.as_str())
            .map(str::to_string)
    }

    /// The policy mode configured (`[policy] mode`, else enforce).
    pub fn policy_mode(&self) -> agp_contracts::PolicyMode {
        self.policy
            .mode
            .map_or(agp_contracts::PolicyMode::Enforce, ModeChoice::mode)
    }

    /// The hashes `[intendants.<name>] sha256` pins the agent's binary to.
    pub fn pins(&self, name: &str) -> &[String] {
        self.intendants
            .get(name)
            .map_or(&[], |p| p.sha256.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agp_contracts::SandboxProvider;

    fn parse(text: &str) -> Result<Config, toml::de::Error> {
        Config::parse(text)
    }

    #[test]
    fn the_shipped_config_parses_to_the_defaults() {
        let cfg = parse(include_str!("../../assets/config.toml")).unwrap();
        assert_eq!(cfg.journal.durability.as_deref(), Some("entry"));
        assert_eq!(cfg.origin(), None);
        assert_eq!(cfg.approval_timeout_secs(), 300);
        assert_eq!(cfg.channel(), ChannelChoice::Terminal);
        assert!(cfg.egress.allow.is_empty());
        assert!(cfg.pins("claude-code").is_empty());
        assert_eq!(cfg.policy_mode(), agp_contracts::PolicyMode::Enforce);
        assert!(cfg.journal.witness.is_empty());
    }

    #[test]
    fn witnesses_need_an_http_url_and_a_cosignature_key() {
        let home = Home::resolve(Some(std::path::Path::new("/nonexistent-agp-home"))).unwrap();
        let w = agp_journal::cosig::WitnessSigner::generate("w.example/1").unwrap();
        let vkey = w.verifier().to_string();
        let cfg = parse(&format!(
            "[[journal.witness]]\nurl = \"http://127.0.0.1:7380\"\nkey = \"{vkey}\"\n\
             [[journal.witness]]\nurl = \"https://w2.example\"\nkey = \"{vkey}\"\n"
        ))
        .unwrap();
        let targets = cfg.witnesses(&home).unwrap();
        assert_eq!(targets.len(), 2);
        assert_eq!(&targets[0].key, w.verifier());
        let bad_url = parse(&format!(
            "[[journal.witness]]\nurl = \"ftp://x\"\nkey = \"{vkey}\"\n"
        ))
        .unwrap();
        assert!(bad_url
            .witnesses(&home)
            .unwrap_err()
            .to_string()
            .contains("not an http"));
        // A journal (note) key is not a witness key.
        let log = agp_journal::SignerKey::generate("log").unwrap();
        let bad_key = parse(&format!(
            "[[journal.witness]]\nurl = \"http://x\"\nkey = \"{}\"\n",
            log.verifier()
        ))
        .unwrap();
        assert!(bad_key
            .witnesses(&home)
            .unwrap_err()
            .to_string()
            .contains("not a witness verifier key"));
    }

    #[test]
    fn the_policy_mode_is_one_of_three_words() {
        let mode = |text: &str| parse(text).map(|c| c.policy_mode());
        assert_eq!(
            mode("[policy]\nmode = \"shadow\"").unwrap(),
            agp_contracts::PolicyMode::Shadow
        );
        assert_eq!(
            mode("[policy]\nmode = \"observe\"\nwatch = false").unwrap(),
            agp_contracts::PolicyMode::Observe
        );
        assert!(mode("[policy]\nmode = \"audit\"").is_err());
        assert!(mode("[policy]\nmode = \"Shadow\"").is_err());
    }

    #[test]
    fn egress_rules_are_read_in_order() {
        let cfg = parse(
            "[[egress.rule]]\nhost = \"api.github.com\"\nmethods = [\"GET\"]\npaths = [\"/repos/\"]\n\
             effect = \"allow\"\n[[egress.rule]]\nhost = \"api.github.com\"\neffect = \"deny\"\n",
        )
        .unwrap();
        assert_eq!(cfg.egress.rule.len(), 2);
        assert_eq!(cfg.egress.rule[0].methods, ["GET"]);
        assert_eq!(cfg.egress.rule[0].effect, EgressEffect::Allow);
        assert!(cfg.egress.rule[1].paths.is_empty());
        assert_eq!(cfg.egress.rule[1].effect, EgressEffect::Deny);
    }

    #[test]
    fn every_section_is_read_and_unknown_ones_are_left_to_others() {
        let cfg = parse(
            "future = 1\n[journal]\norigin = \"o\"\n[approvals]\ntimeout_secs = 9\nchannel = \"slack\"\nweb = false\n\
             [sandbox]\nprovider = \"none\"\n[sandbox.limits]\nprocesses = 3\n\
             [egress]\nallow = [\"a.example\"]\n[intendants.codex]\nsha256 = [\"ab\"]\n",
        )
        .unwrap();
        assert_eq!(cfg.origin().as_deref(), Some("o"));
        assert_eq!(cfg.approval_timeout(), Duration::from_secs(9));
        assert_eq!(cfg.channel(), ChannelChoice::Slack);
        assert_eq!(cfg.approvals.web, Some(false));
        assert_eq!(cfg.sandbox.provider.as_deref(), Some("none"));
        assert_eq!(cfg.egress.allow, ["a.example"]);
        assert_eq!(cfg.pins("codex"), ["ab"]);
        assert!(cfg.pins("claude-code").is_empty());
        // A non-string origin is ignored, as keygen always did.
        assert_eq!(parse("[journal]\norigin = 3").unwrap().origin(), None);
    }

    #[test]
    fn the_docker_section_needs_a_pinned_image_and_a_known_runtime() {
        let home = Home::resolve(Some(std::path::Path::new("/nonexistent-agp-home"))).unwrap();
        let digest = "ab".repeat(32);
        let cfg = |extra: &str| {
            parse(&format!(
                "[sandbox]\nprovider = \"docker\"\n[sandbox.docker]\nsocket = \"/run/d.sock\"\n{extra}"
            ))
            .unwrap()
        };
        assert_eq!(cfg("").sandbox(&home).unwrap(), SandboxChoice::Docker);
        let err = format!("{:#}", cfg("").docker_provider(&home).unwrap_err());
        assert!(err.contains("agp sandbox image build"), "{err}");
        let err = format!(
            "{:#}",
            cfg("image = \"localhost/agp:1\"")
                .docker_provider(&home)
                .unwrap_err()
        );
        assert!(err.contains("not pinned by digest"), "{err}");
        let err = format!(
            "{:#}",
            cfg(&format!(
                "image = \"a@sha256:{digest}\"\nruntime = \"kata\""
            ))
            .docker_provider(&home)
            .unwrap_err()
        );
        assert!(err.contains("unknown container runtime"), "{err}");
        let provider = cfg(&format!(
            "image = \"a@sha256:{digest}\"\nruntime = \"runsc\""
        ))
        .docker_provider(&home)
        .unwrap();
        assert_eq!(provider.image().digest, digest);
        assert_eq!(
            provider.engine().socket(),
            std::path::Path::new("/run/d.sock")
        );
        assert!(provider.isolation().caveats[0].contains("gVisor"));
    }

    #[test]
    fn the_webhook_example_parses_and_validates() {
        use std::os::unix::fs::PermissionsExt;
        let cfg = parse(include_str!("../../../../examples/webhook/config.toml")).unwrap();
        assert_eq!(cfg.channel(), ChannelChoice::Webhook);
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("keys/webhook.secret");
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        std::fs::write(&secret, "ab".repeat(32)).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let home = Home::resolve(Some(dir.path())).unwrap();
        let webhook = cfg.webhook(&home).unwrap();
        assert_eq!(webhook.url, "https://approvals.example.com/agp");
        assert_eq!(webhook.approvers.len(), 2);
        assert_eq!(webhook.listen.to_string(), "127.0.0.1:8645");
        // The channel without its section is refused with where to look.
        let bare = parse("[approvals]\nchannel = \"webhook\"\n").unwrap();
        let err = format!("{:#}", bare.webhook(&home).unwrap_err());
        assert!(err.contains("[approvals.webhook]"), "{err}");
    }

    #[test]
    fn a_misspelt_limit_or_a_mistyped_value_is_refused() {
        assert!(parse("[sandbox.limits]\nmemroy_bytes = 1").is_err());
        assert!(parse("[sandbox.docker]\nimgae = \"x\"").is_err());
        assert!(parse("[approvals]\nchannel = \"email\"").is_err());
        assert!(parse("[egress]\nallow = \"a.example\"").is_err());
        assert!(
            parse("[[egress.rule]]\nhost = \"a.example\"\npath = [\"/\"]\neffect = \"allow\"")
                .is_err()
        );
        assert!(parse("[[egress.rule]]\nhost = \"a.example\"\neffect = \"maybe\"").is_err());
    }
}
