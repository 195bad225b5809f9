//! Running allowed calls in a session's sandbox (proxy-exec mode).
//!
//! Every tool, file tools included, becomes a command run INSIDE the sandbox, so the sandbox's
//! filesystem view confines Read/Write/Edit/Glob/Grep exactly as it confines Bash: the daemon
//! never touches the repository with its own privileges.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agp_contracts::sandbox::PreflightReport;
use agp_contracts::Tool;
use agp_contracts::{
    ExecOutput, ExecRequest, Isolation, SandboxError, SandboxProvider, SandboxSpec,
};
use serde_json::Value;

/// One session's sandbox, type-erased so the daemon can hold any provider.
pub trait SessionSandbox: Send + Sync {
    fn exec(&self, request: &ExecRequest) -> Result<ExecOutput, SandboxError>;
    /// Proves the isolation from inside; `Err` when any check failed.
    fn preflight(&self) -> Result<PreflightReport, SandboxError>;
    fn teardown(&self) -> Result<(), SandboxError>;
    /// Kills what the session runs now and refuses later commands (the kill switch); `true`
    /// when something was running. Does not wait for a running command to finish.
    fn interrupt(&self) -> Result<bool, SandboxError>;
}

/// A sandbox technology as the daemon uses it.
pub trait SandboxFactory: Send + Sync {
    fn open(&self, spec: &SandboxSpec) -> Result<Arc<dyn SessionSandbox>, SandboxError>;
    fn isolation(&self) -> Isolation;
}

/// Adapts any [`SandboxProvider`] to [`SandboxFactory`].
pub struct Provider<P>(pub Arc<P>);

struct ProviderSession<P: SandboxProvider> {
    provider: Arc<P>,
    /// Read by exec, preflight and interrupt (at once: an interrupt must reach a command that
    /// is running), written by the teardown.
    session: std::sync::RwLock<Option<P::Session>>,
    /// Serializes the calls of ONE session, which also keeps their file effects ordered.
    running: std::sync::Mutex<()>,
}

impl<P: SandboxProvider + 'static> SessionSandbox for ProviderSession<P> {
    fn exec(&self, request: &ExecRequest) -> Result<ExecOutput, SandboxError> {
        let _one_at_a_time = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let guard = self
            .session
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match guard.as_ref() {
            Some(s) => self.provider.exec(s, request),
            None => Err(SandboxError::Refused(
                "the session's sandbox was torn down".into(),
            )),
        }
    }

    fn preflight(&self) -> Result<PreflightReport, SandboxError> {
        let guard = self
            .session
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match guard.as_ref() {
            Some(s) => self.provider.preflight(s),
            None => Err(SandboxError::Refused(
                "the session's sandbox was torn down".into(),
            )),
        }
    }

    fn teardown(&self) -> Result<(), SandboxError> {
        let taken = self
            .session
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match taken {
            Some(s) => self.provider.teardown(s),
            None => Ok(()),
        }
    }

    fn interrupt(&self) -> Result<bool, SandboxError> {
        let guard = self
            .session
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match guard.as_ref() {
            Some(s) => self.provider.interrupt(s),
            None => Ok(false),
        }
    }
}

impl<P: SandboxProvider + 'static> SandboxFactory for Provider<P> {
    fn open(&self, spec: &SandboxSpec) -> Result<Arc<dyn SessionSandbox>, SandboxError> {
        let session = self.0.spawn(spec)?;
        Ok(Arc::new(ProviderSession {
            provider: self.0.clone(),
            session: std::sync::RwLock::new(Some(session)),
            running: std::sync::Mutex::new(()),
        }))
    }

    fn isolation(&self) -> Isolation {
        self.0.isolation()
    }
}

/// What running one tool produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolOutput {
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// stdout followed by stderr, as produced (before redaction).
    pub output: Vec<u8>,
    /// The sandbox cut the output at its capture cap.
    pub truncated: bool,
    /// A session bound the command hit.
    pub limit_exceeded: Option<agp_contracts::sandbox::LimitExceeded>,
    /// Git metadata the sandbox removed after the command.
    pub git_metadata_removed: Vec<String>,
}

impl ToolOutput {
    pub fn ok(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

fn str_field<'a>(input: &'a Value, name: &str) -> Result<&'a str, ToolError> {
    input
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| ToolError::Invalid(format!("input field `{name}` (a string) is required")))
}

fn opt_u64(input: &Value, name: &str) -> Result<Option<u64>, ToolError> {
    match input.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ToolError::Invalid(format!(
                "input field `{name}` must be a non-negative integer"
            ))
        }),
    }
}

/// Resolves a tool path against the call's cwd (relative paths are relative to it).
fn resolve(cwd: &Path, path: &str) -> String {
    let p = Path::new(path);
    if p.is_absolute() {
        path.to_owned()
    } else {
        cwd.join(p).to_string_lossy().into_owned()
    }
}

fn run(
    sandbox: &dyn SessionSandbox,
    argv: Vec<String>,
    cwd: &Path,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<ToolOutput, ToolError> {
    let out = sandbox.exec(&ExecRequest {
        argv,
        cwd: cwd.to_path_buf(),
        stdin,
        timeout,
    })?;
    let mut output = out.stdout;
    output.extend_from_slice(&out.stderr);
    Ok(ToolOutput {
        exit_code: out.exit_code,
        timed_out: out.timed_out,
        output,
        truncated: out.truncated,
        limit_exceeded: out.limit_exceeded,
        git_metadata_removed: out.git_metadata_removed,
    })
}

fn s(x: &str) -> String {
    x.to_owned()
}

/// Hands secret values to a command inside the sandbox: reads one NUL-terminated value per
/// name from stdin, exports it as `AGP_SECRET_<NAME>`, then evaluates the command (`$1`) with
/// stdin closed. The values are in no argv, on the host or inside, and in no journaled input.
const SECRETS_WRAPPER: &str = "c=$1; shift\n\
    for n in \"$@\"; do IFS= read -r -d '' v || exit 125; export \"AGP_SECRET_$n=$v\"; done\n\
    unset n v; set --; exec </dev/null; eval \"$c\"";

/// [`run_tool`], with a Bash command's `{{secret:NAME}}` placeholders resolved at execution:
/// each becomes `${AGP_SECRET_NAME}` (so it expands where a shell variable would: unquoted or
/// in double quotes), its value set in the command's environment only. Other tools' inputs
/// are run as they are: a placeholder there stays text. The caller redacts the output.
pub fn run_tool_with_secrets(
    sandbox: &dyn SessionSandbox,
    tool: &Tool,
    input: &Value,
    cwd: &Path,
    timeout: Duration,
    secrets: &crate::secrets::Secrets,
) -> Result<ToolOutput, ToolError> {
    use crate::secrets::Secrets;
    let command = match tool {
        Tool::Bash => str_field(input, "command")?,
        _ => return run_tool(sandbox, tool, input, cwd, timeout),
    };
    let invalid = |e: crate::secrets::SecretsError| {
        ToolError::Invalid(format!(
            "{e}; secrets come from AGP_SECRET_<NAME> in agp's environment or agp's secrets.toml"
        ))
    };
    let names = Secrets::names_in(command).map_err(invalid)?;
    if names.is_empty() {
        return run_tool(sandbox, tool, input, cwd, timeout);
    }
    let mut stdin = Vec::new();
    for n in &names {
        stdin.extend_from_slice(secrets.get(n).map_err(invalid)?.as_bytes());
        stdin.push(0);
    }
    let script =
        Secrets::substitute(command, |n| Ok(format!("${{AGP_SECRET_{n}}}"))).map_err(invalid)?;
    let mut argv = vec![
        s("bash"),
        s("-c"),
        s(SECRETS_WRAPPER),
        s("agp-secrets"),
        script,
    ];
    argv.extend(names);
    run(sandbox, argv, cwd, Some(stdin), timeout)
}

/// Runs one tool call (Claude Code vocabulary) in the sandbox.
pub fn run_tool(
    sandbox: &dyn SessionSandbox,
    tool: &Tool,
    input: &Value,
    cwd: &Path,
    timeout: Duration,
) -> Result<ToolOutput, ToolError> {
    match tool {
        Tool::Bash => {
            let command = str_field(input, "command")?;
            run(sandbox, vec![s("bash"), s("-c"), s(command)], cwd, None, timeout)
        }
        Tool::Read => {
            let path = resolve(cwd, str_field(input, "file_path")?);
            let offset = opt_u64(input, "offset")?.unwrap_or(1).max(1);
            let limit = opt_u64(input, "limit")?;
            // Positional parameters, never string interpolation: a path cannot become shell code.
            let script = match limit {
                Some(_) => "tail -n +\"$1\" -- \"$2\" | head -n \"$3\"",
                None => "tail -n +\"$1\" -- \"$2\"",
            };
            let mut argv = vec![s("bash"), s("-c"), s(script), s("agp-read"), offset.to_string(), path];
            if let Some(l) = limit {
                argv.push(l.to_string());
            }
            run(sandbox, argv, cwd, None, timeout)
        }
        Tool::Write => {
            let path = resolve(cwd, str_field(input, "file_path")?);
            let content = str_field(input, "content")?;
            write_file(sandbox, &path, content.as_bytes().to_vec(), cwd, timeout)
        }
        Tool::Edit => {
            let path = resolve(cwd, str_field(input, "file_path")?);
            let old = str_field(input, "old_string")?;
            let new = str_field(input, "new_string")?;
            let replace_all = input.get("replace_all").and_then(Value::as_bool).unwrap_or(false);
            if old.is_empty() {
                return Err(ToolError::Invalid("`old_string` must not be empty".into()));
            }
            // Read inside the sandbox, edit in memory, write back inside the sandbox.
            let read = run(
                sandbox,
                vec![s("cat"), s("--"), path.clone()],
                cwd,
                None,
                timeout,
            )?;
            if !read.ok() {
                return Ok(read);
            }
            if read.truncated {
                return Err(ToolError::Invalid(format!(
                    "{path} is larger than the sandbox's output cap; Edit refused"
                )));
            }
            let text = String::from_utf8(read.output)
                .map_err(|_| ToolError::Invalid(format!("{path} is not UTF-8 text")))?;
            let count = text.matches(old).count();
            let edited = match (count, replace_all) {
                (0, _) => {
                    return Ok(ToolOutput {
                        exit_code: Some(1),
                        timed_out: false,
                        truncated: false,
                        output: format!("old_string not found in {path}\n").into_bytes(),
                        ..Default::default()
                    })
                }
                (1, _) | (_, true) => text.replace(old, new),
                (n, false) => {
                    return Ok(ToolOutput {
                        exit_code: Some(1),
                        timed_out: false,
                        truncated: false,
                        output: format!(
                            "old_string occurs {n} times in {path}; pass replace_all or a unique string\n"
                        )
                        .into_bytes(),
                        ..Default::default()
                    })
                }
            };
            write_file(sandbox, &path, edited.into_bytes(), cwd, timeout)
        }
        Tool::Glob => {
            let pattern = str_field(input, "pattern")?;
            let base = input
                .get("path")
                .and_then(Value::as_str).map_or_else(|| cwd.to_string_lossy().into_owned(), |p| resolve(cwd, p));
            let script = "shopt -s globstar nullglob dotglob; cd -- \"$1\" || exit 1; \
                          for f in $2; do printf '%s\\n' \"$f\"; done";
            run(
                sandbox,
                vec![s("bash"), s("-c"), s(script), s("agp-glob"), base, s(pattern)],
                cwd,
                None,
                timeout,
            )
        }
        Tool::Grep => {
            let pattern = str_field(input, "pattern")?;
            let base = input
                .get("path")
                .and_then(Value::as_str).map_or_else(|| cwd.to_string_lossy().into_owned(), |p| resolve(cwd, p));
            let mut argv = vec![s("grep"), s("-rnE")];
            if input.get("-i").and_then(Value::as_bool).unwrap_or(false) {
                argv.push(s("-i"));
            }
            if let Some(glob) = input.get("glob").and_then(Value::as_str) {
                argv.push(format!("--include={glob}"));
            }
            argv.extend([s("-e"), s(pattern), s("--"), base]);
            run(sandbox, argv, cwd, None, timeout)
        }
        other => Err(ToolError::Invalid(format!(
            "tool `{other}` cannot be executed by the daemon (supported: Bash, Read, Write, Edit, Glob, Grep)"
        ))),
    }
}

fn write_file(
    sandbox: &dyn SessionSandbox,
    path: &str,
    content: Vec<u8>,
    cwd: &Path,
    timeout: Duration,
) -> Result<ToolOutput, ToolError> {
    let script =
        "mkdir -p -- \"$(dirname -- \"$1\")\" && cat > \"$1\" && printf 'wrote %s\\n' \"$1\"";
    run(
        sandbox,
        vec![s("bash"), s("-c"), s(script), s("agp-write"), s(path)],
        cwd,
        Some(content),
        timeout,
    )
}

/// The repository path and the working directory to use for a call, refusing a cwd outside the
/// repository (the sandbox only has the repository writable, and calls are relative to it).
pub fn call_cwd(repo: &Path, requested: &str) -> PathBuf {
    let p = Path::new(requested);
    let climbs = p
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir));
    if requested.is_empty() || !p.is_absolute() || climbs || !p.starts_with(repo) {
        repo.to_path_buf()
    } else {
        p.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Mutex;

    /// Runs commands on the host (no isolation): enough to test the tool-to-command mapping.
    struct HostShell {
        seen: Mutex<Vec<Vec<String>>>,
    }
    impl SessionSandbox for HostShell {
        fn exec(&self, r: &ExecRequest) -> Result<ExecOutput, SandboxError> {
            self.seen.lock().unwrap().push(r.argv.clone());
            let mut cmd = std::process::Command::new(&r.argv[0]);
            cmd.args(&r.argv[1..]).current_dir(&r.cwd);
            cmd.stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = cmd.spawn()?;
            {
                use std::io::Write;
                let mut stdin = child.stdin.take().unwrap();
                if let Some(data) = &r.stdin {
                    stdin.write_all(data)?;
                }
            }
            Ok(crate::tests::exec_output(child.wait_with_output()?))
        }
        fn preflight(&self) -> Result<PreflightReport, SandboxError> {
            Err(SandboxError::PreflightFailed(
                "host shell isolates nothing".into(),
            ))
        }
        fn teardown(&self) -> Result<(), SandboxError> {
            Ok(())
        }
        fn interrupt(&self) -> Result<bool, SandboxError> {
            Ok(false)
        }
    }

    impl HostShell {
        fn new() -> Self {
            Self {
                seen: Mutex::new(vec![]),
            }
        }

        /// Runs tool `name` with `input` in `cwd` through this shell.
        fn tool(&self, name: &str, input: &Value, cwd: &Path) -> Result<ToolOutput, ToolError> {
            run_tool(
                self,
                &Tool::parse_name(name),
                input,
                cwd,
                Duration::from_secs(10),
            )
        }
    }

    #[test]
    fn file_tools_round_trip_through_commands() {
        let dir = tempfile::tempdir().unwrap();
        let sb = HostShell::new();
        let cwd = dir.path();
        let w = sb
            .tool(
                "Write",
                &json!({"file_path": "sub/a.txt", "content": "one\ntwo\nthree\n"}),
                cwd,
            )
            .unwrap();
        assert!(w.ok(), "{w:?}");
        let r = sb
            .tool(
                "Read",
                &json!({"file_path": "sub/a.txt", "offset": 2, "limit": 1}),
                cwd,
            )
            .unwrap();
        assert_eq!(r.output, b"two\n");
        let edit = |old: &str, new: &str| {
            let input = json!({"file_path": "sub/a.txt", "old_string": old, "new_string": new});
            sb.tool("Edit", &input, cwd).unwrap()
        };
        assert!(edit("two", "2").ok());
        assert_eq!(
            std::fs::read_to_string(cwd.join("sub/a.txt")).unwrap(),
            "one\n2\nthree\n"
        );
        assert!(!edit("zzz", "y").ok(), "an edit of a missing string fails");
        let g = sb
            .tool("Glob", &json!({"pattern": "**/*.txt"}), cwd)
            .unwrap();
        assert_eq!(g.output, b"sub/a.txt\n");
        let grep = sb.tool("Grep", &json!({"pattern": "thr+ee"}), cwd).unwrap();
        assert!(String::from_utf8_lossy(&grep.output).contains("a.txt:3:three"));
        // Every file tool went through a command in the sandbox.
        assert!(sb.seen.lock().unwrap().len() >= 6);
    }

    #[test]
    fn hostile_paths_stay_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let sb = HostShell::new();
        let evil = "x$(touch pwned)`touch pwned2`;touch pwned3";
        let w = sb
            .tool(
                "Write",
                &json!({"file_path": evil, "content": "c"}),
                dir.path(),
            )
            .unwrap();
        assert!(w.ok());
        assert!(dir.path().join(evil).is_file());
        for f in ["pwned", "pwned2", "pwned3"] {
            assert!(!dir.path().join(f).exists());
        }
    }

    #[test]
    fn bad_inputs_and_unknown_tools_are_refused() {
        let sb = HostShell::new();
        let cwd = Path::new("/");
        assert!(matches!(
            sb.tool("Bash", &json!({}), cwd),
            Err(ToolError::Invalid(_))
        ));
        assert!(matches!(
            sb.tool("Read", &json!({"file_path": "a", "offset": -1}), cwd),
            Err(ToolError::Invalid(_))
        ));
        assert!(matches!(
            sb.tool("WebFetch", &json!({"url": "x"}), cwd),
            Err(ToolError::Invalid(_))
        ));
        assert!(sb.seen.lock().unwrap().is_empty());
    }

    #[test]
    fn cwd_outside_repo_falls_back_to_repo() {
        let repo = Path::new("/work/repo");
        assert_eq!(
            call_cwd(repo, "/work/repo/src"),
            PathBuf::from("/work/repo/src")
        );
        assert_eq!(call_cwd(repo, "/etc"), PathBuf::from("/work/repo"));
        assert_eq!(call_cwd(repo, "relative"), PathBuf::from("/work/repo"));
        assert_eq!(
            call_cwd(repo, "/work/repo/../../etc"),
            PathBuf::from("/work/repo")
        );
        assert_eq!(call_cwd(repo, ""), PathBuf::from("/work/repo"));
    }
}
