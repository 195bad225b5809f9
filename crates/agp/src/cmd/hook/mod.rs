//! `agp hook`: the command an agent harness (Claude Code, Codex) runs around every tool call.
//!
//! It reads the harness's hook event on stdin, asks the agp daemon over the gateway, and prints
//! the harness's decision JSON. The harnesses treat any exit code other than 0 and 2 as a
//! NON-blocking hook error — the tool would run ungoverned — so this command never exits
//! otherwise: every failure (daemon unreachable, timeout, bad frame, unknown event, malformed
//! stdin, even a panic) prints a deny and exits 2. It is spawned once per tool call, so it stays
//! lean: blocking std I/O, no async runtime.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use agp_contracts::canonical::sha256_hex;
use agp_gateway::{Client, ToolCallRequest, ToolCallResult, VerdictMessage};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

use crate::exit::Exit;

mod session_root;
mod transcript;

pub use session_root::session_root;
use transcript::codex_call_failed;

/// The gateway socket of the session, as seen by the hook (inside the sandbox).
pub const ENV_SOCKET: &str = "AGP_GATEWAY_SOCKET";
/// The per-session token the hello frame carries.
pub const ENV_TOKEN: &str = "AGP_SESSION_TOKEN";
/// Longest wait for a verdict, in seconds: the approval timeout plus a margin. Must be shorter
/// than the harness's own hook timeout, or the harness would kill the hook first.
pub const ENV_TIMEOUT: &str = "AGP_HOOK_TIMEOUT_SECS";

/// Used when the launcher did not say: long enough for a human to answer.
const DEFAULT_TIMEOUT_SECS: u64 = 900;
/// Largest hook event read from stdin (a Write of a large file is the big case); the gateway
/// frame cap (1 MiB) refuses anything bigger anyway.
const MAX_STDIN_BYTES: u64 = 4 << 20;
/// Bytes of tool output sent with a PostToolUse report; the full output's hash goes with it.
const MAX_REPORTED_OUTPUT: usize = 64 * 1024;

/// `agp hook --help` exit codes: never 1, which the harnesses read as a non-blocking error.
pub const HOOK_EXIT_HELP: &str = "\
Exit codes:
  0  decision printed on stdout (allow or deny), or the tool result recorded
  2  agp could not check the call (daemon unreachable, timeout, bad input): a deny is printed
     and the reason goes to stderr; the harness blocks the call
  The hook never exits otherwise: a harness treats other codes as non-blocking (fail open).

Environment (set by `agp run`):
  AGP_GATEWAY_SOCKET     the session's gateway socket
  AGP_SESSION_TOKEN      the session's token
  AGP_HOOK_TIMEOUT_SECS  longest wait for a verdict (approval timeout plus a margin)";

#[derive(Debug, Args)]
pub struct HookArgs {
    /// Without AGP_GATEWAY_SOCKET / AGP_SESSION_TOKEN, attach to the `agp daemon` of the agp
    /// home (--home / AGP_HOME / ~/.agp): one gate-mode session per harness session, opened
    /// with the daemon's admin token. Written by `agp install-hooks`; no sandbox in that mode.
    #[arg(long)]
    pub attach: bool,
    /// Which harness runs the hook: their decision formats differ (Codex 0.169 rejects an
    /// explicit "allow" as an unsupported output and then runs the tool anyway, so agp answers
    /// it with no objection instead).
    #[arg(long, value_enum, default_value = "claude-code")]
    pub harness: Harness,
    /// With --attach: the project root the session is judged against (recorded by
    /// `agp install-hooks --project`). Without it, the git repository around the first event's
    /// directory; never the event's directory itself (see `session_root`).
    #[arg(long, value_name = "DIR", requires = "attach")]
    pub project: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Harness {
    ClaudeCode,
    Codex,
}

impl Harness {
    pub fn name(self) -> &'static str {
        match self {
            Harness::ClaudeCode => "claude-code",
            Harness::Codex => "codex",
        }
    }
}

/// The harness event being handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    PreToolUse,
    PostToolUse,
    /// A tool call that failed. Claude Code 2.1.197 fires only this for a failed call; newer
    /// versions fire it and then PostToolUse, and the daemon keeps the first result of a call.
    PostToolUseFailure,
    PermissionRequest,
}

impl Event {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "PreToolUse" => Some(Self::PreToolUse),
            "PostToolUse" => Some(Self::PostToolUse),
            "PostToolUseFailure" => Some(Self::PostToolUseFailure),
            "PermissionRequest" => Some(Self::PermissionRequest),
            _ => None,
        }
    }
}

/// What the hook prints and how it exits.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub stdout: Value,
    /// Shown to the agent by the harness when exiting 2.
    pub stderr: Option<String>,
    pub exit: Exit,
}

/// `agp [--home DIR] hook [--harness H] [--attach]`, recognised without building the whole
/// command line (clap's tree of every subcommand costs a good part of a millisecond, paid on
/// every tool call). Anything else, `--help` included, returns `None` and goes through clap.
pub fn fast_path() -> Option<Exit> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let mut rest = args.iter().map(|a| a.to_str());
    let mut home: Option<PathBuf> = None;
    let mut first = rest.next()??;
    if first == "--home" {
        home = Some(PathBuf::from(rest.next()??));
        first = rest.next()??;
    } else if let Some(h) = first.strip_prefix("--home=") {
        home = Some(PathBuf::from(h));
        first = rest.next()??;
    }
    if first != "hook" {
        return None;
    }
    let mut parsed = HookArgs {
        attach: false,
        harness: Harness::ClaudeCode,
        project: None,
    };
    while let Some(arg) = rest.next() {
        match arg? {
            "--attach" => parsed.attach = true,
            "--project" => parsed.project = Some(PathBuf::from(rest.next()??)),
            "--harness" => {
                parsed.harness = match rest.next()?? {
                    "claude-code" => Harness::ClaudeCode,
                    "codex" => Harness::Codex,
                    _ => return None,
                }
            }
            _ => return None,
        }
    }
    if parsed.project.is_some() && !parsed.attach {
        return None;
    }
    // clap would have filled --home from AGP_HOME too.
    let home = home.or_else(|| std::env::var_os("AGP_HOME").map(PathBuf::from));
    Some(run(&parsed, home.as_deref()))
}

pub fn run(args: &HookArgs, home: Option<&Path>) -> Exit {
    install_panic_deny();
    let answer = std::panic::catch_unwind(|| {
        let mut env = HookEnv::from_process();
        if args.attach {
            env.attach = Some(
                crate::home::Home::resolve(home)
                    .map(|h| h.run_dir())
                    .map_err(|e| format!("{e:#}")),
            );
            env.project = args.project.clone();
        }
        let mut stdin = Vec::new();
        let read = std::io::stdin()
            .lock()
            .take(MAX_STDIN_BYTES + 1)
            .read_to_end(&mut stdin);
        match read {
            Err(e) => failure(None, &format!("cannot read the hook event on stdin: {e}")),
            Ok(_) if stdin.len() as u64 > MAX_STDIN_BYTES => failure(
                None,
                &format!("hook event over {MAX_STDIN_BYTES} bytes on stdin"),
            ),
            Ok(_) => handle(&stdin, &env, args.harness),
        }
    })
    .unwrap_or_else(|_| failure(None, "agp hook crashed"));
    emit(&answer);
    answer.exit
}

/// Where the hook finds its daemon.
#[derive(Debug, Clone)]
pub struct HookEnv {
    pub socket: Option<PathBuf>,
    pub token: Option<String>,
    pub timeout: Result<Duration, String>,
    /// `--attach`: the agp home's run directory (or why it could not be found).
    pub attach: Option<Result<PathBuf, String>>,
    /// `--attach --project DIR`: the recorded project root.
    pub project: Option<PathBuf>,
}

impl HookEnv {
    fn from_process() -> Self {
        let timeout = match std::env::var(ENV_TIMEOUT) {
            Err(_) => Ok(Duration::from_secs(DEFAULT_TIMEOUT_SECS)),
            Ok(v) => v
                .parse::<u64>()
                .ok()
                .filter(|s| *s > 0)
                .map(Duration::from_secs)
                .ok_or_else(|| format!("{ENV_TIMEOUT}={v:?} is not a positive number of seconds")),
        };
        Self {
            socket: std::env::var_os(ENV_SOCKET)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            token: std::env::var(ENV_TOKEN).ok().filter(|s| !s.is_empty()),
            timeout,
            attach: None,
            project: None,
        }
    }
}

/// Handles one hook event. Never panics on bad input; every error becomes a deny.
pub fn handle(stdin: &[u8], env: &HookEnv, harness: Harness) -> Answer {
    let input: Value = match serde_json::from_slice(stdin) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return failure(None, "the hook event on stdin is not a JSON object"),
        Err(e) => return failure(None, &format!("the hook event on stdin is not JSON: {e}")),
    };
    let name = input["hook_event_name"].as_str().unwrap_or_default();
    let Some(event) = Event::parse(name) else {
        return failure(
            None,
            &format!("agp hook does not handle the event {name:?}"),
        );
    };
    match gate(event, &input, env, harness) {
        Ok(answer) => answer,
        Err(e) => failure(Some(event), &format!("{e:#}")),
    }
}

fn gate(event: Event, input: &Value, env: &HookEnv, harness: Harness) -> Result<Answer> {
    let name = input["hook_event_name"].as_str().unwrap_or_default();
    let timeout = env.timeout.clone().map_err(|e| anyhow!(e))?;
    let client = || -> Result<Client> {
        match (&env.socket, &env.token, &env.attach) {
            (Some(socket), Some(token), _) => connect(socket, token, timeout),
            (_, _, Some(Ok(run_dir))) => {
                attach(run_dir, harness, env.project.as_deref(), input, timeout)
            }
            (_, _, Some(Err(e))) => Err(anyhow!("cannot find the agp home to attach to: {e}")),
            _ => Err(anyhow!(
                "{ENV_SOCKET} and {ENV_TOKEN} are not set: this agent was not started by `agp run` \
                 (for `agp daemon`, install the hooks with `agp install-hooks`)"
            )),
        }
    };
    let tool = input["tool_name"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| anyhow!("the hook event has no tool_name"))?;
    let tool_use_id = input["tool_use_id"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    let cwd = input["cwd"].as_str().unwrap_or_default().to_owned();

    match event {
        Event::PreToolUse | Event::PermissionRequest => {
            let tool_input = match &input["tool_input"] {
                v @ Value::Object(_) => v.clone(),
                _ => bail!("the hook event has no tool_input object"),
            };
            let id = match (&tool_use_id, event) {
                (Some(t), Event::PreToolUse) => call_id(t),
                // A permission request follows its PreToolUse under the same tool_use_id; it
                // needs an id of its own or the daemon would refuse it as a replay.
                (Some(t), _) => format!("perm:{t}"),
                (None, _) => format!("anon:{}", random_hex()?),
            };
            let request = ToolCallRequest {
                id,
                tool_use_id,
                tool: tool.into(),
                input: tool_input,
                cwd,
            };
            let verdict = client()?
                .request(&request)
                .context("asking the agp daemon")?;
            Ok(verdict_answer(event, harness, &verdict))
        }
        Event::PostToolUse | Event::PostToolUseFailure => {
            let tool_use_id = tool_use_id.ok_or_else(|| {
                anyhow!("the {name} event has no tool_use_id to link the result to")
            })?;
            let (mut ok, full) = match event {
                Event::PostToolUseFailure => (false, failure_output(input)),
                _ => tool_output(&input["tool_response"]),
            };
            if harness == Harness::Codex && ok {
                // Codex's PostToolUse gives the output as text, without the exit status; its
                // transcript (already written when the hook runs) has it.
                if let Some(path) = input["transcript_path"].as_str() {
                    ok = !codex_call_failed(Path::new(path), &tool_use_id);
                }
            }
            // The daemon links the result to the approved call only when this hash equals the
            // approved input's; without an input object it journals a mismatch.
            let input_sha256 = match &input["tool_input"] {
                v @ Value::Object(_) => agp_contracts::canonical::sha256_of_value(v).ok(),
                _ => None,
            };
            let result = ToolCallResult {
                id: call_id(&tool_use_id),
                ok,
                output: truncate_utf8(&full, MAX_REPORTED_OUTPUT).to_owned(),
                output_sha256: sha256_hex(full.as_bytes()),
                input_sha256,
            };
            // The daemon keeps the first result of a call and acknowledges a repeat.
            client()?
                .report_result(&result)
                .context("reporting the tool result to the agp daemon")?;
            Ok(Answer {
                stdout: json!({}),
                stderr: None,
                exit: Exit::Ok,
            })
        }
    }
}

/// agp's id of the call a harness names `tool_use_id`: PreToolUse and PostToolUse derive the
/// same id, which links the result to its request in the journal.
fn call_id(tool_use_id: &str) -> String {
    format!("tu:{tool_use_id}")
}

fn connect(socket: &Path, token: &str, timeout: Duration) -> Result<Client> {
    let mut client = Client::connect(socket, timeout)?;
    client.hello(token).context("opening the session")?;
    Ok(client)
}

/// `--attach`: the session of this harness session on the home's daemon, opened on first use.
fn attach(
    run_dir: &Path,
    harness: Harness,
    project: Option<&Path>,
    input: &Value,
    timeout: Duration,
) -> Result<Client> {
    use agp_gateway::{ClientError, ErrorCode, SessionMode};
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

    let socket = run_dir.join(agp_daemon::GATEWAY_SOCKET_FILE);
    let harness_session = input["session_id"].as_str().unwrap_or("-");
    let scope = project.map(|p| p.display().to_string()).unwrap_or_default();
    let key = sha256_hex(format!("{}:{harness_session}:{scope}", harness.name()).as_bytes());
    let dir = run_dir.join("hook-sessions");
    let cache = dir.join(&key[..32]);
    if let Ok(token) = std::fs::read_to_string(&cache) {
        let mut c = Client::connect(&socket, timeout)?;
        match c.hello(token.trim()) {
            Ok(_) => return Ok(c),
            // The daemon restarted or ended the session: open a new one.
            Err(ClientError::Refused {
                code: ErrorCode::BadToken | ErrorCode::SessionClosed,
                ..
            }) => {
                let _ = std::fs::remove_file(&cache);
            }
            Err(e) => return Err(e.into()),
        }
    }
    let admin_path = run_dir.join(agp_daemon::ADMIN_TOKEN_FILE);
    let admin = std::fs::read_to_string(&admin_path).with_context(|| {
        format!(
            "cannot read {} (is `agp daemon` running for this home?)",
            admin_path.display()
        )
    })?;
    let root = session_root(project, input["cwd"].as_str(), run_dir)?;
    let opened = Client::connect(&socket, timeout)?
        .open_session(
            admin.trim(),
            harness.name(),
            &root.to_string_lossy(),
            "",
            SessionMode::Gate,
        )
        .context("opening a session on the agp daemon")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&cache)
        .with_context(|| format!("cannot write {}", cache.display()))?;
    file.write_all(opened.token.as_bytes())?;
    connect(&socket, &opened.token, timeout)
}

fn verdict_answer(event: Event, harness: Harness, v: &VerdictMessage) -> Answer {
    let rule = v
        .rule_id
        .as_deref()
        .map(|r| format!(" (rule {r})"))
        .unwrap_or_default();
    if v.is_allow() {
        let by = v
            .approved_by
            .as_deref()
            .map(|a| format!(", approved by {a}"))
            .unwrap_or_default();
        let reason = format!("agp allowed this call: {}{rule}{by}", v.reason);
        let stdout = match event {
            Event::PreToolUse if harness == Harness::Codex && v.updated_input.is_none() => {
                json!({})
            }
            Event::PermissionRequest => json!({"hookSpecificOutput": {
                "hookEventName": "PermissionRequest",
                "decision": {"behavior": "allow"}}}),
            _ => {
                let mut out = json!({"hookSpecificOutput": {
                    "hookEventName": "PreToolUse",
                    "permissionDecision": "allow",
                    "permissionDecisionReason": reason}});
                if let Some(updated) = &v.updated_input {
                    out["hookSpecificOutput"]["updatedInput"] = updated.clone();
                }
                out
            }
        };
        return Answer {
            stdout,
            stderr: None,
            exit: Exit::Ok,
        };
    }
    // Anything but an explicit allow is a deny, including a decision this build does not know.
    let reason = format!(
        "agp denied this call: {}{rule}. Do not retry it unchanged; take another approach or \
         ask the user.",
        v.reason
    );
    Answer {
        stdout: deny_json(Some(event), &reason),
        stderr: None,
        exit: Exit::Ok,
    }
}

fn deny_json(event: Option<Event>, reason: &str) -> Value {
    match event {
        Some(Event::PermissionRequest) => json!({"hookSpecificOutput": {
            "hookEventName": "PermissionRequest",
            "decision": {"behavior": "deny", "message": reason}}}),
        Some(Event::PostToolUse | Event::PostToolUseFailure) => {
            json!({"decision": "block", "reason": reason})
        }
        _ => json!({"hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "deny",
            "permissionDecisionReason": reason}}),
    }
}

/// A failure: deny on stdout, the reason on stderr (what the harness shows on exit 2), exit 2.
pub fn failure(event: Option<Event>, why: &str) -> Answer {
    let reason = format!("agp could not check this call, so it is denied: {why}");
    Answer {
        stdout: deny_json(event, &reason),
        stderr: Some(reason),
        exit: Exit::CannotRun,
    }
}

fn emit(answer: &Answer) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", answer.stdout);
    let _ = out.flush();
    if let Some(e) = &answer.stderr {
        eprintln!("{e}");
    }
}

/// Even a panic outside `catch_unwind` (or one that unwinding cannot catch) must not become an
/// exit code the harness reads as "non-blocking".
fn install_panic_deny() {
    std::panic::set_hook(Box::new(|info| {
        let answer = failure(None, &format!("agp hook crashed: {info}"));
        emit(&answer);
        std::process::exit(Exit::CannotRun as i32);
    }));
}

/// The tool's output as text (the harness's `tool_response`: a string or an object), and whether
/// the tool reported success.
fn tool_output(response: &Value) -> (bool, String) {
    let text = match response {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let failed = response["is_error"] == true
        || response["interrupted"] == true
        || response["success"] == false
        || response["exit_code"].as_i64().is_some_and(|c| c != 0)
        || response["exitCode"].as_i64().is_some_and(|c| c != 0);
    (!failed, text)
}

/// What a PostToolUseFailure event says went wrong (`error`, else the tool's response).
fn failure_output(input: &Value) -> String {
    match (&input["error"], &input["tool_response"]) {
        (Value::String(e), _) => e.clone(),
        (Value::Null, Value::Null) => String::new(),
        (Value::Null, r) => tool_output(r).1,
        (e, _) => e.to_string(),
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn random_hex() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;

    fn env(socket: Option<PathBuf>) -> HookEnv {
        HookEnv {
            socket,
            token: Some("tok".into()),
            timeout: Ok(Duration::from_secs(5)),
            attach: None,
            project: None,
        }
    }

    fn pre(cmd: &str) -> Vec<u8> {
        json!({"hook_event_name": "PreToolUse", "tool_name": "Bash", "cwd": "/r",
               "tool_input": {"command": cmd}, "tool_use_id": "toolu_1"})
        .to_string()
        .into_bytes()
    }

    /// A one-connection daemon stand-in: answers hello, records the request, replies `reply`.
    fn daemon(reply: &'static str) -> (tempfile::TempDir, PathBuf, std::thread::JoinHandle<Value>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let h = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            w.write_all(
                b"{\"type\":\"welcome\",\"protocol\":1,\"session\":\"s\",\"mode\":\"gate\"}\n",
            )
            .unwrap();
            line.clear();
            r.read_line(&mut line).unwrap();
            w.write_all(reply.as_bytes()).unwrap();
            serde_json::from_str(&line).unwrap()
        });
        (dir, path, h)
    }

    #[test]
    fn allow_and_deny_verdicts_map_to_the_harness_shape() {
        let (_d, p, h) = daemon("{\"type\":\"verdict\",\"id\":\"tu:toolu_1\",\"decision\":\"allow\",\"reason\":\"read-only\",\"rule_id\":\"r1\",\"input_sha256\":\"ab\"}\n");
        let a = handle(&pre("ls"), &env(Some(p)), Harness::ClaudeCode);
        assert_eq!(a.exit, Exit::Ok);
        assert_eq!(
            a.stdout["hookSpecificOutput"]["permissionDecision"],
            "allow"
        );
        let sent = h.join().unwrap();
        assert_eq!(sent["type"], "tool_call_request");
        assert_eq!(sent["id"], "tu:toolu_1");
        assert_eq!(sent["tool_use_id"], "toolu_1");
        assert_eq!(sent["input"]["command"], "ls");

        let (_d, p, _h) = daemon("{\"type\":\"verdict\",\"id\":\"tu:toolu_1\",\"decision\":\"deny\",\"reason\":\"rm is forbidden\",\"rule_id\":\"no-rm\",\"input_sha256\":\"ab\"}\n");
        let a = handle(&pre("rm -rf /"), &env(Some(p)), Harness::Codex);
        assert_eq!(a.exit, Exit::Ok);
        let out = &a.stdout["hookSpecificOutput"];
        assert_eq!(out["permissionDecision"], "deny");
        let reason = out["permissionDecisionReason"].as_str().unwrap();
        assert!(reason.contains("rm is forbidden") && reason.contains("no-rm"));
    }

    #[test]
    fn codex_allow_is_no_objection() {
        let (_d, p, _h) = daemon("{\"type\":\"verdict\",\"id\":\"tu:toolu_1\",\"decision\":\"allow\",\"reason\":\"ok\",\"input_sha256\":\"ab\"}\n");
        let a = handle(&pre("ls"), &env(Some(p)), Harness::Codex);
        assert_eq!((a.exit, a.stdout), (Exit::Ok, json!({})));
    }

    #[test]
    fn unknown_decisions_deny() {
        let (_d, p, _h) = daemon("{\"type\":\"verdict\",\"id\":\"tu:toolu_1\",\"decision\":\"maybe\",\"reason\":\"?\",\"input_sha256\":\"ab\"}\n");
        let a = handle(&pre("ls"), &env(Some(p)), Harness::ClaudeCode);
        assert_eq!(a.stdout["hookSpecificOutput"]["permissionDecision"], "deny");
    }

    #[test]
    fn every_failure_denies_with_exit_2() {
        let dir = tempfile::tempdir().unwrap();
        let cases: Vec<(Vec<u8>, HookEnv)> = vec![
            (b"not json".to_vec(), env(None)),
            (b"[1]".to_vec(), env(None)),
            (br#"{"hook_event_name":"Stop"}"#.to_vec(), env(None)),
            (
                br#"{"hook_event_name":"PreToolUse","tool_input":{}}"#.to_vec(),
                env(Some(dir.path().join("s"))),
            ),
            (pre("ls"), env(None)),
            (
                pre("ls"),
                HookEnv {
                    token: None,
                    ..env(Some(dir.path().join("s")))
                },
            ),
            (
                pre("ls"),
                HookEnv {
                    timeout: Err("bad".into()),
                    ..env(Some(dir.path().join("s")))
                },
            ),
            // Daemon not running.
            (pre("ls"), env(Some(dir.path().join("none.sock")))),
        ];
        for (stdin, e) in cases {
            let a = handle(&stdin, &e, Harness::Codex);
            assert_eq!(
                a.exit,
                Exit::CannotRun,
                "{}",
                String::from_utf8_lossy(&stdin)
            );
            assert_eq!(a.stdout["hookSpecificOutput"]["permissionDecision"], "deny");
            assert!(a.stderr.unwrap().contains("denied"));
        }
    }

    #[test]
    fn bad_frames_and_errors_from_the_daemon_deny() {
        for reply in [
            "garbage\n",
            "{\"type\":\"error\",\"code\":\"replayed_id\",\"message\":\"seen\"}\n",
            "{\"type\":\"verdict\",\"id\":\"other\",\"decision\":\"allow\",\"reason\":\"\",\"input_sha256\":\"\"}\n",
        ] {
            let (_d, p, _h) = daemon(reply);
            let a = handle(&pre("ls"), &env(Some(p)), Harness::ClaudeCode);
            assert_eq!(a.exit, Exit::CannotRun, "{reply}");
            assert_eq!(a.stdout["hookSpecificOutput"]["permissionDecision"], "deny");
        }
    }

    #[test]
    fn post_tool_use_reports_the_result_linked_to_the_request() {
        let (_d, p, h) = daemon("{\"type\":\"result_recorded\",\"id\":\"tu:toolu_1\"}\n");
        let stdin = json!({"hook_event_name": "PostToolUse", "tool_name": "Bash", "cwd": "/r",
            "tool_input": {"command": "echo hi"}, "tool_use_id": "toolu_1",
            "tool_response": {"stdout": "hi\n", "stderr": "", "interrupted": false}});
        let a = handle(
            stdin.to_string().as_bytes(),
            &env(Some(p)),
            Harness::ClaudeCode,
        );
        assert_eq!(a.exit, Exit::Ok);
        let sent = h.join().unwrap();
        assert_eq!(sent["type"], "tool_call_result");
        assert_eq!(sent["id"], "tu:toolu_1");
        assert_eq!(sent["ok"], true);
        let text = stdin["tool_response"].to_string();
        assert_eq!(sent["output"], text);
        assert_eq!(sent["output_sha256"], sha256_hex(text.as_bytes()));
        let input_hash =
            agp_contracts::canonical::sha256_of_value(&json!({"command": "echo hi"})).unwrap();
        assert_eq!(sent["input_sha256"], input_hash);
    }

    #[test]
    fn post_tool_use_failure_reports_a_failed_result_once() {
        let stdin = json!({"hook_event_name": "PostToolUseFailure", "tool_name": "Bash",
            "cwd": "/r", "tool_input": {"command": "false"}, "tool_use_id": "toolu_1",
            "error": "Exit code 1"});
        let (_d, p, h) = daemon("{\"type\":\"result_recorded\",\"id\":\"tu:toolu_1\"}\n");
        let a = handle(
            stdin.to_string().as_bytes(),
            &env(Some(p)),
            Harness::ClaudeCode,
        );
        assert_eq!(a.exit, Exit::Ok);
        let sent = h.join().unwrap();
        assert_eq!(sent["id"], "tu:toolu_1");
        assert_eq!(sent["ok"], false);
        assert_eq!(sent["output"], "Exit code 1");
        // A refusal from the daemon is an error, as for PostToolUse.
        let (_d, p, _h) =
            daemon("{\"type\":\"error\",\"code\":\"bad_token\",\"message\":\"no\"}\n");
        let a = handle(
            stdin.to_string().as_bytes(),
            &env(Some(p)),
            Harness::ClaudeCode,
        );
        assert_eq!(a.exit, Exit::CannotRun);
    }

    #[test]
    fn permission_requests_use_their_own_shape_and_id() {
        let (_d, p, h) = daemon("{\"type\":\"verdict\",\"id\":\"perm:toolu_1\",\"decision\":\"deny\",\"reason\":\"no\",\"input_sha256\":\"ab\"}\n");
        let stdin = json!({"hook_event_name": "PermissionRequest", "tool_name": "Bash",
            "tool_input": {"command": "ls"}, "tool_use_id": "toolu_1"});
        let a = handle(
            stdin.to_string().as_bytes(),
            &env(Some(p)),
            Harness::ClaudeCode,
        );
        assert_eq!(
            a.stdout["hookSpecificOutput"]["decision"]["behavior"],
            "deny"
        );
        assert_eq!(h.join().unwrap()["id"], "perm:toolu_1");
    }

    #[test]
    fn outputs_are_truncated_on_char_boundaries() {
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("abc", 10), "abc");
        assert!(!tool_output(&json!({"interrupted": true})).0);
        assert!(!tool_output(&json!({"exit_code": 1})).0);
        assert!(tool_output(&json!("plain")).0);
    }
}
