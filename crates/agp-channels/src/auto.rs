//! `--auto-approve`: grants every `require` without asking anyone. For demos and CI only.
//!
//! It is loud on purpose: a banner when it is created, a line for every call it approves, and
//! the journal names `--auto-approve` (not a person) as the approver. Policy `deny` verdicts are
//! never reached by a channel, so they stay denied.

use std::io::Write;
use std::sync::Mutex;

use agp_contracts::approval::via;
use agp_contracts::events::Projection;
use agp_contracts::{
    ApprovalChannel, ApprovalOutcome, ApprovalRequest, Approver, BoxFuture, ChannelError,
};

use crate::sanitize::escape;

/// The warning shown once when auto-approval is switched on.
pub const BANNER: &str = "\
agp: !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
agp: !!  --auto-approve is ON: every call the policy sends for human       !!
agp: !!  approval is APPROVED WITHOUT ASKING ANYONE. For demos and CI only. !!
agp: !!  The journal records the approver as \"--auto-approve\".             !!
agp: !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
";

/// Grants every request, as [`Approver::auto_approve`].
pub struct AutoApproveChannel {
    out: Mutex<Box<dyn Write + Send>>,
}

impl AutoApproveChannel {
    /// Prints the banner to standard error.
    pub fn new() -> AutoApproveChannel {
        Self::with_output(Box::new(std::io::stderr()))
    }

    /// Prints the banner and every approval to `out`.
    pub fn with_output(mut out: Box<dyn Write + Send>) -> AutoApproveChannel {
        let _ = out.write_all(BANNER.as_bytes());
        let _ = out.flush();
        AutoApproveChannel {
            out: Mutex::new(out),
        }
    }

    fn say(&self, text: &str) {
        // Poisoning only means another thread panicked mid-write; the warning still matters.
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

impl Default for AutoApproveChannel {
    fn default() -> Self {
        Self::new()
    }
}

impl ApprovalChannel for AutoApproveChannel {
    fn name(&self) -> &str {
        via::AUTO
    }

    fn request_approval<'a>(
        &'a self,
        request: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<ApprovalOutcome, ChannelError>> {
        Box::pin(async move {
            self.say(&format!(
                "agp: AUTO-APPROVED (--auto-approve, nobody asked): {} rule {} input sha256 {}\n",
                escape(&request.tool.name()),
                escape(request.rule_id.as_deref().unwrap_or("(policy default)")),
                escape(request.short_hash()),
            ));
            Ok(ApprovalOutcome::Granted {
                by: vec![Approver::auto_approve()],
            })
        })
    }

    fn project<'a>(
        &'a self,
        _: Option<&'a str>,
        _: &'a Projection,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        // Nobody is watching an auto-approving channel; the journal has every event.
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::Shared;

    #[tokio::test]
    async fn grants_as_auto_approve_and_says_so_loudly() {
        let out = Shared::default();
        let channel = AutoApproveChannel::with_output(Box::new(out.clone()));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("--auto-approve is ON"));

        let request = ApprovalRequest {
            session: "s".into(),
            call_id: "c".into(),
            tool: "Bash\u{1b}[2J".into(),
            redacted_input: serde_json::json!({"command": "git push"}),
            input_sha256: "f".repeat(64),
            rule_id: Some("git.push".into()),
            reason: "pushes".into(),
            approvers: vec![],
            quorum: 1,
            expires_at_ms: 0,
            remember_secs: None,
        };
        let outcome = channel.request_approval(&request).await.unwrap();
        assert_eq!(
            outcome,
            ApprovalOutcome::Granted {
                by: vec![Approver {
                    id: "auto-approve".into(),
                    name: "--auto-approve".into(),
                    via: "auto".into()
                }]
            }
        );
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("AUTO-APPROVED") && text.contains("Bash\\e[2J"));
        assert!(!text.contains('\u{1b}'));
    }
}
