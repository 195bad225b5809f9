//! `config.toml`, read once into one typed value that every later stage reads.
//!
//! Unknown sections and keys are ignored (they may belong to a newer agp), except in
//! `[sandbox.limits]`, where a misspelt bound would silently leave a default in place.

use std::collections::BTreeMap;
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
    None,
}

/// The human approval channel of a daemon (`--auto-approve` and `--approver-script` replace it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelChoice {
    Terminal,
    Slack,
}

impl std::fmt::Display for SandboxChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SandboxChoice::Bwrap => "bwrap",
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
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct ApprovalsSection {
    pub timeout_secs: Option<u64>,
    pub channel: Option<ChannelChoice>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct SandboxSection {
    pub provider: Option<String>,
    #[serde(default)]
    pub limits: LimitsSection,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct EgressSection {
    /// Hosts (or `*.domain`) a live agent may reach besides its model API.
    #[serde(default)]
    pub allow: Vec<String>,
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
            Some("none") => Ok(SandboxChoice::None),
            Some(other) => bail!(
                "{}: [sandbox] provider {other:?} is unknown (expected \"bwrap\" or \"none\")",
                home.config().display()
            ),
        }
    }

    /// The human approval channel configured (else terminal).
    pub fn channel(&self) -> ChannelChoice {
        self.approvals.channel.unwrap_or(ChannelChoice::Terminal)
    }

    /// The approval timeout configured, in seconds (else 300).
    pub fn approval_timeout_secs(&self) -> u64 {
        self.approvals
            .timeout_secs
            .unwrap_or(DEFAULT_APPROVAL_TIMEOUT_SECS)
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
    }

    #[test]
    fn every_section_is_read_and_unknown_ones_are_left_to_others() {
        let cfg = parse(
            "future = 1\n[journal]\norigin = \"o\"\n[approvals]\ntimeout_secs = 9\nchannel = \"slack\"\n\
             [sandbox]\nprovider = \"none\"\n[sandbox.limits]\nprocesses = 3\n\
             [egress]\nallow = [\"a.example\"]\n[intendants.codex]\nsha256 = [\"ab\"]\n",
        )
        .unwrap();
        assert_eq!(cfg.origin().as_deref(), Some("o"));
        assert_eq!(cfg.approval_timeout(), Duration::from_secs(9));
        assert_eq!(cfg.channel(), ChannelChoice::Slack);
        assert_eq!(cfg.sandbox.provider.as_deref(), Some("none"));
        assert_eq!(cfg.egress.allow, ["a.example"]);
        assert_eq!(cfg.pins("codex"), ["ab"]);
        assert!(cfg.pins("claude-code").is_empty());
        // A non-string origin is ignored, as keygen always did.
        assert_eq!(parse("[journal]\norigin = 3").unwrap().origin(), None);
    }

    #[test]
    fn a_misspelt_limit_or_a_mistyped_value_is_refused() {
        assert!(parse("[sandbox.limits]\nmemroy_bytes = 1").is_err());
        assert!(parse("[approvals]\nchannel = \"email\"").is_err());
        assert!(parse("[egress]\nallow = \"a.example\"").is_err());
    }
}
