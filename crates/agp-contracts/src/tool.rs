//! Tool names, parsed once where a call enters agp.
//!
//! Harnesses name tools with plain strings (`Bash`, `Read`, `mcp__github__create_issue`). Matching
//! those strings in every crate let a typo silently fall through to "unknown tool"; the enum
//! makes each consumer's `match` exhaustive instead. On the wire and in the journal a tool stays
//! the exact string the harness sent: `Display`/`FromStr` and serde round-trip it byte for byte.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Prefix of MCP tool names: `mcp__<server>__<tool>`.
const MCP_PREFIX: &str = "mcp__";
const MCP_SEP: &str = "__";

/// A tool an agent asked to use.
///
/// Built with [`str::parse`] (never fails): a name that is not a known tool or a well-formed MCP
/// name becomes [`Tool::Other`] with the raw name, so nothing is lost and policy can still rule
/// on it (unknown tools are never treated as known ones).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Tool {
    Bash,
    BashOutput,
    KillShell,
    Read,
    Write,
    Edit,
    MultiEdit,
    NotebookEdit,
    NotebookRead,
    Glob,
    Grep,
    LS,
    WebFetch,
    WebSearch,
    Task,
    TodoWrite,
    SlashCommand,
    ExitPlanMode,
    /// `mcp__<server>__<tool>`; `server` never contains `__` (the name is split at the first
    /// separator after the prefix), so the name round-trips.
    Mcp {
        server: String,
        tool: String,
    },
    /// Any other name, kept exactly as received.
    Other(String),
}

/// The known (non-MCP) tools and their wire names, in one table so parse and print agree.
const KNOWN: &[(Tool, &str)] = &[
    (Tool::Bash, "Bash"),
    (Tool::BashOutput, "BashOutput"),
    (Tool::KillShell, "KillShell"),
    (Tool::Read, "Read"),
    (Tool::Write, "Write"),
    (Tool::Edit, "Edit"),
    (Tool::MultiEdit, "MultiEdit"),
    (Tool::NotebookEdit, "NotebookEdit"),
    (Tool::NotebookRead, "NotebookRead"),
    (Tool::Glob, "Glob"),
    (Tool::Grep, "Grep"),
    (Tool::LS, "LS"),
    (Tool::WebFetch, "WebFetch"),
    (Tool::WebSearch, "WebSearch"),
    (Tool::Task, "Task"),
    (Tool::TodoWrite, "TodoWrite"),
    (Tool::SlashCommand, "SlashCommand"),
    (Tool::ExitPlanMode, "ExitPlanMode"),
];

impl Tool {
    /// Wire names of the known, non-MCP tools (for linting rule typos).
    pub fn known_names() -> impl Iterator<Item = &'static str> {
        KNOWN.iter().map(|(_, n)| *n)
    }

    /// Parses a wire name; never fails (see [`Tool::Other`]).
    pub fn parse_name(name: &str) -> Tool {
        if let Some((tool, _)) = KNOWN.iter().find(|(_, n)| *n == name) {
            return tool.clone();
        }
        if let Some((server, tool)) = name
            .strip_prefix(MCP_PREFIX)
            .and_then(|rest| rest.split_once(MCP_SEP))
        {
            if !server.is_empty() && !tool.is_empty() {
                return Tool::Mcp {
                    server: server.to_owned(),
                    tool: tool.to_owned(),
                };
            }
        }
        Tool::Other(name.to_owned())
    }

    /// The wire name, borrowed when it is a fixed one.
    pub fn name(&self) -> Cow<'_, str> {
        match self {
            Tool::Mcp { server, tool } => {
                Cow::Owned(format!("{MCP_PREFIX}{server}{MCP_SEP}{tool}"))
            }
            Tool::Other(raw) => Cow::Borrowed(raw),
            known => Cow::Borrowed(
                KNOWN
                    .iter()
                    .find(|(t, _)| t == known)
                    .map_or("", |(_, n)| *n),
            ),
        }
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for Tool {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Tool::parse_name(s))
    }
}

impl From<&str> for Tool {
    fn from(s: &str) -> Self {
        Tool::parse_name(s)
    }
}

impl From<String> for Tool {
    fn from(s: String) -> Self {
        Tool::parse_name(&s)
    }
}

/// A tool equals a name when its wire name is exactly that name.
impl PartialEq<str> for Tool {
    fn eq(&self, other: &str) -> bool {
        self.name() == other
    }
}

impl PartialEq<&str> for Tool {
    fn eq(&self, other: &&str) -> bool {
        self.name() == *other
    }
}

impl Serialize for Tool {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for Tool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Cow::<'de, str>::deserialize(d)?;
        Ok(Tool::parse_name(&raw))
    }
}

/// On the wire and in the journal a tool is its plain name, so its schema is a string's.
impl schemars::JsonSchema for Tool {
    fn schema_name() -> Cow<'static, str> {
        String::schema_name()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        String::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_name_round_trips_to_its_variant() {
        for (tool, name) in KNOWN {
            let parsed: Tool = name.parse().unwrap();
            assert_eq!(&parsed, tool);
            assert_eq!(parsed.to_string(), *name);
        }
        assert_eq!(Tool::known_names().count(), KNOWN.len());
    }

    #[test]
    fn mcp_names_split_at_the_first_separator_and_round_trip() {
        let t = Tool::parse_name("mcp__github__create_issue");
        assert_eq!(
            t,
            Tool::Mcp {
                server: "github".into(),
                tool: "create_issue".into()
            }
        );
        let t = Tool::parse_name("mcp__a__b__c");
        assert_eq!(
            t,
            Tool::Mcp {
                server: "a".into(),
                tool: "b__c".into()
            }
        );
        assert_eq!(t.to_string(), "mcp__a__b__c");
    }

    #[test]
    fn anything_else_is_kept_raw_and_round_trips() {
        // Case, whitespace, malformed MCP names and lookalikes are not the known tool.
        for raw in [
            "",
            "bash",
            "Bash ",
            " Bash",
            "BASH",
            "Bash\u{0}",
            "Reаd", // Cyrillic а
            "mcp__",
            "mcp__github",
            "mcp____x",
            "mcp__github__",
            "MCP__a__b",
            "shell",
            "apply_patch",
        ] {
            let t = Tool::parse_name(raw);
            assert_eq!(t, Tool::Other(raw.to_owned()), "{raw:?}");
            assert_eq!(t.to_string(), raw);
        }
    }

    #[test]
    fn serde_is_the_plain_string() {
        for raw in ["Bash", "mcp__s__t", "Weird\"name", "LS"] {
            let t = Tool::parse_name(raw);
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, serde_json::to_string(raw).unwrap());
            let back: Tool = serde_json::from_str(&json).unwrap();
            assert_eq!(back, t);
        }
        // An escaped string (not borrowable) still parses.
        let t: Tool = serde_json::from_str(r#""B\u0061sh""#).unwrap();
        assert_eq!(t, Tool::Bash);
        assert!(serde_json::from_str::<Tool>("3").is_err());
    }
}
