//! `--sandbox none`: the explicit opt-out. Commands run directly on the host as the agp user;
//! only the environment is cleared and the time and output are bounded.

use std::path::PathBuf;
use std::process::Command;

use agp_contracts::sandbox::{
    ExecOutput, ExecRequest, Isolation, PreflightCheck, PreflightReport, SandboxError,
    SandboxProvider, SandboxSpec,
};

use crate::{env, layout, limits, run, DEFAULT_OUTPUT_CAP};

#[derive(Debug, Clone)]
pub struct NoSandbox {
    output_cap: usize,
}

#[derive(Debug, Clone)]
pub struct NoSandboxSession {
    repo: PathBuf,
    env: Vec<(String, String)>,
    limits: agp_contracts::sandbox::ResourceLimits,
}

impl Default for NoSandbox {
    fn default() -> Self {
        Self {
            output_cap: DEFAULT_OUTPUT_CAP,
        }
    }
}

impl NoSandbox {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn output_cap(mut self, bytes: usize) -> Self {
        self.output_cap = bytes;
        self
    }
}

impl SandboxProvider for NoSandbox {
    type Session = NoSandboxSession;

    fn spawn(&self, spec: &SandboxSpec) -> Result<NoSandboxSession, SandboxError> {
        let repo = std::fs::canonicalize(&spec.repo).map_err(|e| {
            SandboxError::Refused(format!(
                "repository {} is not accessible: {e}",
                spec.repo.display()
            ))
        })?;
        Ok(NoSandboxSession {
            repo,
            env: env::build(&spec.env)?,
            limits: spec.limits.clone(),
        })
    }

    fn exec(
        &self,
        session: &NoSandboxSession,
        request: &ExecRequest,
    ) -> Result<ExecOutput, SandboxError> {
        if request.argv.is_empty() || request.argv[0].is_empty() {
            return Err(SandboxError::Refused("empty command".into()));
        }
        if request.timeout.is_zero() {
            return Err(SandboxError::Refused("zero timeout".into()));
        }
        layout::check_cwd(&request.cwd, &session.repo)?;
        let mut cmd = Command::new(&request.argv[0]);
        cmd.args(&request.argv[1..])
            .current_dir(&request.cwd)
            .env_clear()
            .envs(session.env.iter().map(|(k, v)| (k, v)));
        limits::install(
            &mut cmd,
            &session.limits,
            limits::Inherit::default(),
            Vec::new(),
        );
        let captured = match run::run(
            cmd,
            request.stdin.as_deref(),
            request.timeout,
            self.output_cap,
            true,
            None,
        ) {
            Ok(c) => c,
            Err(SandboxError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ExecOutput {
                    exit_code: Some(127),
                    stdout: Vec::new(),
                    stderr: format!("{}: command not found\n", request.argv[0]).into_bytes(),
                    timed_out: false,
                    duration_ms: 0,
                    truncated: false,
                    ..Default::default()
                })
            }
            Err(e) => return Err(e),
        };
        let exit_code = captured.status.and_then(|s| s.code());
        Ok(captured.into_output(exit_code))
    }

    fn teardown(&self, _session: NoSandboxSession) -> Result<(), SandboxError> {
        Ok(())
    }

    fn isolation(&self) -> Isolation {
        Isolation {
            provider: "none".into(),
            network_isolated: false,
            filesystem_isolated: false,
            pid_isolated: false,
            caveats: vec![
                "no sandbox (--sandbox none): commands run directly on the host as the agp user, with its network, files and credentials".into(),
                "only the environment is cleared, and time and output are bounded".into(),
            ],
        }
    }

    fn preflight(&self, _session: &NoSandboxSession) -> Result<PreflightReport, SandboxError> {
        Ok(PreflightReport {
            provider: "none".into(),
            passed: true,
            checks: vec![PreflightCheck {
                name: "explicit_opt_out".into(),
                passed: true,
                detail: "--sandbox none: nothing is isolated and nothing was checked".into(),
            }],
            duration_ms: 0,
            target: None,
        })
    }
}
