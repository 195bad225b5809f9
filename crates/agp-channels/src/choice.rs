//! Picking the approver from the command line (`agp run`, `agp daemon`).

use std::path::PathBuf;
use std::sync::Arc;

use agp_contracts::ApprovalChannel;

use crate::{AutoApproveChannel, ScriptedApprover, TerminalChannel};

/// The approver a session uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApproverChoice {
    /// The person at the controlling terminal (the default). Without a terminal every
    /// `require` is denied ("no approver available: no terminal").
    Terminal,
    /// `--auto-approve`: loud, journaled as `--auto-approve`.
    AutoApprove,
    /// `--approver-script FILE`: answers from a file or FIFO (tests and demos).
    Script(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum ChoiceError {
    #[error("--auto-approve and --approver-script cannot be used together")]
    Conflict,
    #[error("cannot start the {channel} approver: {source}")]
    Start {
        channel: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl ApproverChoice {
    /// From the two command-line flags; both at once is a usage error.
    pub fn from_flags(
        auto_approve: bool,
        approver_script: Option<PathBuf>,
    ) -> Result<ApproverChoice, ChoiceError> {
        match (auto_approve, approver_script) {
            (true, Some(_)) => Err(ChoiceError::Conflict),
            (true, None) => Ok(ApproverChoice::AutoApprove),
            (false, Some(path)) => Ok(ApproverChoice::Script(path)),
            (false, None) => Ok(ApproverChoice::Terminal),
        }
    }

    /// Builds the channel. The auto-approve banner is printed here, to standard error.
    pub fn build(&self) -> Result<Arc<dyn ApprovalChannel>, ChoiceError> {
        Ok(match self {
            ApproverChoice::Terminal => Arc::new(TerminalChannel::controlling()),
            ApproverChoice::AutoApprove => Arc::new(AutoApproveChannel::new()),
            ApproverChoice::Script(path) => Arc::new(ScriptedApprover::new(path).map_err(
                |source| ChoiceError::Start {
                    channel: "terminal-script",
                    source,
                },
            )?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_map_to_channels_and_conflicts_are_refused() {
        assert_eq!(
            ApproverChoice::from_flags(false, None).unwrap(),
            ApproverChoice::Terminal
        );
        assert_eq!(
            ApproverChoice::from_flags(true, None).unwrap(),
            ApproverChoice::AutoApprove
        );
        assert!(matches!(
            ApproverChoice::from_flags(true, Some("a".into())),
            Err(ChoiceError::Conflict)
        ));
        let dir = tempfile::tempdir().unwrap();
        let answers = dir.path().join("answers");
        let missing = ApproverChoice::from_flags(false, Some(answers.clone())).unwrap();
        assert!(matches!(missing.build(), Err(ChoiceError::Start { .. })));
        std::fs::write(&answers, "allow\n").unwrap();
        let script = ApproverChoice::from_flags(false, Some(answers)).unwrap();
        assert_eq!(script.build().unwrap().name(), "terminal-script");
        assert_eq!(ApproverChoice::AutoApprove.build().unwrap().name(), "auto");
        assert_eq!(ApproverChoice::Terminal.build().unwrap().name(), "terminal");
    }
}
