//! The scripted intendant: sends a script's tool calls through the gateway, one at a time, as a
//! real agent would, in proxy-exec mode (the daemon runs allowed calls in the sandbox).

use std::path::{Path, PathBuf};

use agp_channels::sanitize::escape;
use agp_contracts::intendant::{
    Delivery, IntendantAdapter, IntendantError, LaunchContext, LaunchPlan,
};
use agp_gateway::client::Client;
use agp_gateway::protocol::{ExecResult, ToolCallRequest};

use crate::script::{Expect, Script, ScriptCall};

/// What happened to one call.
#[derive(Debug, Clone, PartialEq)]
pub enum CallOutcome {
    Allowed {
        /// Who approved a `require` verdict; `None` when policy allowed it outright.
        approved_by: Option<String>,
        rule_id: Option<String>,
        reason: String,
        /// What the sandboxed execution produced.
        result: Option<ExecResult>,
    },
    Denied {
        rule_id: Option<String>,
        reason: String,
    },
    /// The gateway failed (daemon gone, refused frame, timeout): the call did not run, and the
    /// run stops there (fail closed).
    Failed { error: String },
}

/// One call and its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct CallReport {
    pub index: usize,
    pub name: Option<String>,
    pub tool: &'static str,
    pub summary: String,
    /// The request id sent on the gateway (`call-<index>`).
    pub request_id: String,
    pub outcome: CallOutcome,
    pub expect: Option<Expect>,
}

impl CallReport {
    /// The decision as an [`Expect`] value, for the self-check.
    pub fn observed(&self) -> Expect {
        match &self.outcome {
            CallOutcome::Allowed {
                approved_by: Some(_),
                ..
            } => Expect::Approved,
            CallOutcome::Allowed { .. } => Expect::Allow,
            CallOutcome::Denied { .. } | CallOutcome::Failed { .. } => Expect::Deny,
        }
    }

    /// `None` when the script states no expectation.
    pub fn expectation_met(&self) -> Option<bool> {
        self.expect.map(|e| e == self.observed())
    }

    /// One readable, terminal-safe line: number, tool, what, decision, who approved, exit code.
    pub fn line(&self) -> String {
        const WIDTH: usize = 48;
        let mut what = self.name.clone().unwrap_or_else(|| self.summary.clone());
        if what.chars().count() > WIDTH {
            what = what.chars().take(WIDTH - 1).collect::<String>() + "…";
        }
        let rule = |r: &Option<String>| r.as_deref().map(|r| format!(" [{r}]")).unwrap_or_default();
        let verdict = match &self.outcome {
            CallOutcome::Allowed {
                approved_by,
                rule_id,
                result,
                ..
            } => {
                let who = approved_by
                    .as_deref()
                    .map(|w| format!(", approved by {w}"))
                    .unwrap_or_default();
                let ran = match result {
                    None => String::new(),
                    Some(r) if r.timed_out => ", timed out".into(),
                    Some(r) => match r.exit_code {
                        Some(code) => format!(", exit {code}"),
                        None => ", killed".into(),
                    },
                };
                format!("allow{who}{}{ran}", rule(rule_id))
            }
            CallOutcome::Denied { rule_id, reason } => {
                format!("DENY{}: {reason}", rule(rule_id))
            }
            CallOutcome::Failed { error } => format!("DENY (gateway failed: {error})"),
        };
        let check = match (self.expect, self.expectation_met()) {
            (Some(_), Some(true)) => "  ✓".to_owned(),
            (Some(e), _) => format!("  ✗ expected {e}"),
            (None, _) => String::new(),
        };
        escape(&format!(
            "#{:<2} {:<5} {:<width$}  → {verdict}{check}",
            self.index,
            self.tool,
            what,
            width = WIDTH
        ))
        .into_owned()
    }
}

/// Everything a run produced.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunReport {
    pub calls: Vec<CallReport>,
    /// Calls never sent because the run stopped at a gateway failure.
    pub not_run: usize,
}

impl RunReport {
    pub fn allowed(&self) -> usize {
        self.calls
            .iter()
            .filter(|c| matches!(c.outcome, CallOutcome::Allowed { .. }))
            .count()
    }

    pub fn denied(&self) -> usize {
        self.calls.len() - self.allowed()
    }

    /// Calls whose outcome differs from the script's `expect`.
    pub fn mismatches(&self) -> Vec<&CallReport> {
        self.calls
            .iter()
            .filter(|c| c.expectation_met() == Some(false))
            .collect()
    }

    /// The first gateway failure, if the run stopped early.
    pub fn failure(&self) -> Option<&str> {
        self.calls.iter().find_map(|c| match &c.outcome {
            CallOutcome::Failed { error } => Some(error.as_str()),
            _ => None,
        })
    }
}

/// The scripted intendant for one script.
#[derive(Debug, Clone)]
pub struct ScriptedIntendant {
    script: Script,
    /// `~/` in script paths.
    home: PathBuf,
}

impl ScriptedIntendant {
    /// `home` resolves `~/` in the script's paths (normally the user's home directory).
    pub fn new(script: Script, home: PathBuf) -> ScriptedIntendant {
        ScriptedIntendant { script, home }
    }

    pub fn script(&self) -> &Script {
        &self.script
    }

    /// The gateway request for one call, as a real agent would send it from `repo`.
    pub fn request(&self, call: &ScriptCall, repo: &Path) -> ToolCallRequest {
        ToolCallRequest {
            id: format!("call-{}", call.index),
            tool_use_id: Some(format!("toolu_scripted_{:04}", call.index)),
            tool: call.tool.wire(),
            input: call.tool.resolved_input(repo, &self.home),
            cwd: repo.display().to_string(),
        }
    }

    /// Sends every call through `client` (connected and past `hello`, in proxy-exec mode),
    /// calling `on_call` after each one. Stops at the first gateway failure: the daemon
    /// closes a connection after an error, and nothing may run ungoverned.
    pub fn run(
        &self,
        client: &mut Client,
        repo: &Path,
        mut on_call: impl FnMut(&CallReport),
    ) -> RunReport {
        let mut report = RunReport::default();
        for (done, call) in self.script.calls.iter().enumerate() {
            let request = self.request(call, repo);
            let outcome = match client.request_exec(&request) {
                Ok(reply) if reply.verdict.is_allow() => CallOutcome::Allowed {
                    approved_by: reply.verdict.approved_by,
                    rule_id: reply.verdict.rule_id,
                    reason: reply.verdict.reason,
                    result: reply.result,
                },
                Ok(reply) => CallOutcome::Denied {
                    rule_id: reply.verdict.rule_id,
                    reason: reply.verdict.reason,
                },
                Err(e) => CallOutcome::Failed {
                    error: e.to_string(),
                },
            };
            let failed = matches!(outcome, CallOutcome::Failed { .. });
            let entry = CallReport {
                index: call.index,
                name: call.name.clone(),
                tool: call.tool.name(),
                summary: call.tool.summary(),
                request_id: request.id,
                outcome,
                expect: call.expect,
            };
            on_call(&entry);
            report.calls.push(entry);
            if failed {
                report.not_run = self.script.calls.len() - done - 1;
                break;
            }
        }
        report
    }
}

impl IntendantAdapter for ScriptedIntendant {
    fn name(&self) -> &str {
        "scripted"
    }

    fn delivery(&self) -> Delivery {
        Delivery::ProxyExec
    }

    fn plan(&self, _ctx: &LaunchContext) -> Result<LaunchPlan, IntendantError> {
        Ok(LaunchPlan::InProcess)
    }

    /// agp itself sends every call of the script over the gateway, so the wiring holds by
    /// construction; any other plan would mean calls bypass [`ScriptedIntendant::run`].
    fn verify_wiring(&self, _ctx: &LaunchContext, plan: &LaunchPlan) -> Result<(), IntendantError> {
        match plan {
            LaunchPlan::InProcess => Ok(()),
            LaunchPlan::Process(_) => Err(IntendantError::WiringUnverified {
                intendant: "scripted".into(),
                message: "the scripted intendant runs only in process".into(),
            }),
        }
    }
}
