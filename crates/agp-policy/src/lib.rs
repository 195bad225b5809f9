//! agp's policy gate.
//!
//! A [`Policy`] is loaded from a TOML rule file, then judges every tool call: rules in Claude
//! Code's permission syntax, shell commands parsed into their parts, and built-in guards
//! (destructive commands, protected paths, secrets, supply chain, network egress). Evaluation
//! never fails: what cannot be judged is required or denied, never allowed.
//!
//! ```
//! use agp_contracts::{Decision, EvalContext, PolicyEngine, ToolCall};
//! use agp_policy::Policy;
//!
//! let policy = Policy::from_str(
//!     r#"
//!     [[rule]]
//!     id = "git"
//!     effect = "allow"
//!     match = ["Bash(git status *)", "Bash(git diff *)"]
//!     "#,
//!     "policy.toml",
//! )
//! .expect("a malformed policy is an error naming file:line:col");
//! let ctx = EvalContext {
//!     project_root: "/repo".into(),
//!     home: "/home/dev".into(),
//!     agp_home: "/home/dev/.agp".into(),
//! };
//! let call = |command: &str| ToolCall {
//!     id: "1".into(),
//!     session: "s".into(),
//!     tool_use_id: None,
//!     tool: "Bash".into(),
//!     input: serde_json::json!({ "command": command }),
//!     cwd: "/repo".into(),
//! };
//! assert_eq!(policy.evaluate(&call("git status"), &ctx).decision, Decision::Allow);
//! // Every part must be allowed; the strictest part decides.
//! let v = policy.evaluate(&call("git status && rm -rf ~"), &ctx);
//! assert_eq!(v.decision, Decision::Deny);
//! assert_eq!(v.rule_id.as_deref(), Some("destructive"));
//! // One redaction function for everything that leaves the daemon.
//! let key = format!("AKIA{}", "IOSFODNN7EXAMPLE");
//! assert_eq!(agp_policy::redact_str(&key), "[REDACTED:aws-access-key]");
//! ```

#[doc(hidden)]
pub mod bench_support;
pub mod engine;
pub mod expand;
pub mod explain;
pub mod file;
pub mod guards;
pub mod import;
pub mod lint;
pub mod matcher;
pub mod paths;
pub mod programs;
pub mod redact;
pub mod reload;
pub mod schema;
pub mod selftest;
pub mod shell;

pub use engine::Scene;
pub use file::{Diagnostic, Location, Policy, PolicyError, PolicyTest, Rule};
pub use guards::{GuardId, AGP_SELF};
pub use redact::{redact_str, redact_value};
pub use reload::{Reload, ReloadRefused, ReloadablePolicy};
