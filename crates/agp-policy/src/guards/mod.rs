//! Built-in guards: checks that hold whatever the rules say. Each has an id and can be switched
//! off in the policy (`[guards] network-egress = false`), except `agp-self`, which keeps agp's
//! own home, keys and the policy in force out of the agent's hands: it cannot be switched off,
//! its denials win over every other judgment of a part, and they hold in shadow and observe
//! modes too (the governance plane protecting itself is not a policy being tried out).

pub mod destructive;
pub mod egress;
pub mod protected;
pub mod supply;

use agp_contracts::Decision;

/// The id (and journaled rule id) of the guard that protects agp itself.
pub const AGP_SELF: &str = agp_contracts::AGP_SELF_RULE;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GuardId {
    AgpSelf,
    Destructive,
    ProtectedPaths,
    Secrets,
    SupplyChain,
    NetworkEgress,
    Privilege,
}

impl GuardId {
    pub const ALL: [GuardId; 7] = [
        GuardId::AgpSelf,
        GuardId::Destructive,
        GuardId::ProtectedPaths,
        GuardId::Secrets,
        GuardId::SupplyChain,
        GuardId::NetworkEgress,
        GuardId::Privilege,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GuardId::AgpSelf => AGP_SELF,
            GuardId::Destructive => "destructive",
            GuardId::ProtectedPaths => "protected-paths",
            GuardId::Secrets => "secrets",
            GuardId::SupplyChain => "supply-chain",
            GuardId::NetworkEgress => "network-egress",
            GuardId::Privilege => "privilege",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == s)
    }

    /// Whether a policy may switch it off.
    pub fn can_be_disabled(self) -> bool {
        self != GuardId::AgpSelf
    }

    pub fn describe(self) -> &'static str {
        match self {
            GuardId::AgpSelf => {
                "writes into agp's home or to the policy in force, reads of agp's signing keys \
                 (deny); reads of agp's home (require). Cannot be switched off; its denials \
                 hold in shadow and observe modes"
            }
            GuardId::Destructive => {
                "recursive deletes of /, ~ or the project, mkfs, dd to devices, fork bombs, \
                 download-and-execute (deny); force pushes, hard resets, history rewrites (require)"
            }
            GuardId::ProtectedPaths => {
                "writes to shell rc files, git metadata (.git/hooks, config, commondir, info, \
                 worktrees, alternates), ~/.ssh and hook settings (deny); reads of credentials \
                 and process environments (require)"
            }
            GuardId::Secrets => "tool inputs carrying secret values (deny)",
            GuardId::SupplyChain => {
                "package installs show their package names for approval, typosquats flagged, \
                 URL/git installs (require)"
            }
            GuardId::NetworkEgress => {
                "curl, wget, nc, ssh, scp, rsync to a remote (require unless a rule allows)"
            }
            GuardId::Privilege => "sudo, doas, su (require)",
        }
    }
}

/// What a guard says about one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardHit {
    pub guard: GuardId,
    pub decision: Decision,
    pub reason: String,
}

impl GuardHit {
    pub fn deny(guard: GuardId, reason: impl Into<String>) -> Self {
        Self {
            guard,
            decision: Decision::Deny,
            reason: reason.into(),
        }
    }
    pub fn require(guard: GuardId, reason: impl Into<String>) -> Self {
        Self {
            guard,
            decision: Decision::Require,
            reason: reason.into(),
        }
    }
}

/// Short and long options of a command: `-rf` → `r`,`f`; `--force` → `force`.
pub(crate) fn has_flag(args: &[crate::shell::Word], short: &[char], long: &[&str]) -> bool {
    for w in args {
        let t = w.text.as_str();
        if t == "--" {
            return false;
        }
        if let Some(l) = t.strip_prefix("--") {
            let name = l.split('=').next().unwrap_or("");
            if long.contains(&name) {
                return true;
            }
        } else if t.len() > 1 && t.starts_with('-') && t[1..].chars().any(|c| short.contains(&c)) {
            return true;
        }
    }
    false
}

/// Arguments that are not options (everything after `--` counts).
pub(crate) fn operands(args: &[crate::shell::Word]) -> Vec<&crate::shell::Word> {
    let mut out = Vec::new();
    let mut done = false;
    for w in args {
        if !done && w.text == "--" {
            done = true;
            continue;
        }
        if !done && w.text.len() > 1 && w.text.starts_with('-') && !w.dynamic {
            continue;
        }
        out.push(w);
    }
    out
}
