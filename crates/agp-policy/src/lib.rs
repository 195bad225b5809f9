//! agp's policy gate.
//!
//! A [`Policy`] is loaded from a TOML rule file, then judges every tool call: rules in Claude
//! Code's permission syntax, shell commands parsed into their parts, and built-in guards
//! (destructive commands, protected paths, secrets, supply chain, network egress). Evaluation
//! never fails: what cannot be judged is required or denied, never allowed.

pub mod engine;
pub mod file;
pub mod guards;
pub mod import;
pub mod lint;
pub mod matcher;
pub mod paths;
pub mod redact;
pub mod reload;
pub mod schema;
pub mod selftest;
pub mod shell;

pub use engine::Scene;
pub use file::{Diagnostic, Location, Policy, PolicyError, PolicyTest, Rule};
pub use guards::GuardId;
pub use redact::{redact_str, redact_value};
pub use reload::ReloadablePolicy;
