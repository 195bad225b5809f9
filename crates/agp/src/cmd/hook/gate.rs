//! One hook event, from the harness's JSON to the daemon's answer: the tool call asked about
//! (PreToolUse, PermissionRequest) or the result reported (PostToolUse, PostToolUseFailure).

use std::io::Read;
use std::path::Path;

use agp_contracts::canonical::sha256_hex;
use agp_gateway::{Client, ToolCallRequest, ToolCallResult};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use super::answer::{failure, verdict_answer};
use super::daemon::{attach, connect};
use super::tool_output::{failure_output, tool_output, truncate_utf8};
use super::transcript::codex_call_failed;
use super::{Answer, Event, Harness, HookEnv, ENV_SOCKET, ENV_TOKEN, MAX_REPORTED_OUTPUT};
use crate::exit::Exit;

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
        Err(e) => failure(Some(event), &crate::exit::one_line(&e)),
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
    use std::io::Write;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;
    use std::time::Duration;

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

    /// `event` handled by the hook against a daemon stand-in that replies `reply`: the answer,
    /// and the daemon's thread, which returns the frame the hook sent.
    fn ask(
        reply: &'static str,
        event: &[u8],
        harness: Harness,
    ) -> (Answer, std::thread::JoinHandle<Value>) {
        let (_dir, socket, sent) = daemon(reply);
        (handle(event, &env(Some(socket)), harness), sent)
    }

    /// A tool result reported to a daemon stand-in that records it: what the hook sent.
    fn report(event: &Value) -> Value {
        let (a, sent) = ask(
            "{\"type\":\"result_recorded\",\"id\":\"tu:toolu_1\"}\n",
            event.to_string().as_bytes(),
            Harness::ClaudeCode,
        );
        assert_eq!(a.exit, Exit::Ok);
        sent.join().unwrap()
    }

    #[test]
    fn allow_and_deny_verdicts_map_to_the_harness_shape() {
        let (a, h) = ask(
            "{\"type\":\"verdict\",\"id\":\"tu:toolu_1\",\"decision\":\"allow\",\"reason\":\"read-only\",\"rule_id\":\"r1\",\"input_sha256\":\"ab\"}\n",
            &pre("ls"),
            Harness::ClaudeCode,
        );
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

        let (a, _h) = ask(
            "{\"type\":\"verdict\",\"id\":\"tu:toolu_1\",\"decision\":\"deny\",\"reason\":\"rm is forbidden\",\"rule_id\":\"no-rm\",\"input_sha256\":\"ab\"}\n",
            &pre("rm -rf /"),
            Harness::Codex,
        );
        assert_eq!(a.exit, Exit::Ok);
        let out = &a.stdout["hookSpecificOutput"];
        assert_eq!(out["permissionDecision"], "deny");
        let reason = out["permissionDecisionReason"].as_str().unwrap();
        assert!(reason.contains("rm is forbidden") && reason.contains("no-rm"));
    }

    #[test]
    fn codex_allow_is_no_objection() {
        let (a, _h) = ask(
            "{\"type\":\"verdict\",\"id\":\"tu:toolu_1\",\"decision\":\"allow\",\"reason\":\"ok\",\"input_sha256\":\"ab\"}\n",
            &pre("ls"),
            Harness::Codex,
        );
        assert_eq!((a.exit, a.stdout), (Exit::Ok, json!({})));
    }

    #[test]
    fn unknown_decisions_deny() {
        let (a, _h) = ask(
            "{\"type\":\"verdict\",\"id\":\"tu:toolu_1\",\"decision\":\"maybe\",\"reason\":\"?\",\"input_sha256\":\"ab\"}\n",
            &pre("ls"),
            Harness::ClaudeCode,
        );
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
            let (a, _h) = ask(reply, &pre("ls"), Harness::ClaudeCode);
            assert_eq!(a.exit, Exit::CannotRun, "{reply}");
            assert_eq!(a.stdout["hookSpecificOutput"]["permissionDecision"], "deny");
        }
    }

    #[test]
    fn post_tool_use_reports_the_result_linked_to_the_request() {
        let stdin = json!({"hook_event_name": "PostToolUse", "tool_name": "Bash", "cwd": "/r",
            "tool_input": {"command": "echo hi"}, "tool_use_id": "toolu_1",
            "tool_response": {"stdout": "hi\n", "stderr": "", "interrupted": false}});
        let sent = report(&stdin);
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
        let sent = report(&stdin);
        assert_eq!(sent["id"], "tu:toolu_1");
        assert_eq!(sent["ok"], false);
        assert_eq!(sent["output"], "Exit code 1");
        // A refusal from the daemon is an error, as for PostToolUse.
        let (a, _h) = ask(
            "{\"type\":\"error\",\"code\":\"bad_token\",\"message\":\"no\"}\n",
            stdin.to_string().as_bytes(),
            Harness::ClaudeCode,
        );
        assert_eq!(a.exit, Exit::CannotRun);
    }

    #[test]
    fn permission_requests_use_their_own_shape_and_id() {
        let stdin = json!({"hook_event_name": "PermissionRequest", "tool_name": "Bash",
            "tool_input": {"command": "ls"}, "tool_use_id": "toolu_1"});
        let (a, h) = ask(
            "{\"type\":\"verdict\",\"id\":\"perm:toolu_1\",\"decision\":\"deny\",\"reason\":\"no\",\"input_sha256\":\"ab\"}\n",
            stdin.to_string().as_bytes(),
            Harness::ClaudeCode,
        );
        assert_eq!(
            a.stdout["hookSpecificOutput"]["decision"]["behavior"],
            "deny"
        );
        assert_eq!(h.join().unwrap()["id"], "perm:toolu_1");
    }
}
