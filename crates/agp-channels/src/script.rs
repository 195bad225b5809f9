//! The terminal channel's scripted approver (`--approver-script FILE`): a TEST AND DEMO
//! FACILITY, not a way to run agents unattended (use policy for that).
//!
//! Each approval request consumes the next answer from the file, which may be a FIFO written by
//! a test while the session runs. The prompt is still rendered (to standard error by default),
//! and every decision is journaled with `via: "terminal-script"` and the script as the
//! approver, so nobody can mistake it for a person's decision.
//!
//! Format: one answer per line; blank lines and `#` comments are skipped.
//!
//! ```text
//! allow                 # grant
//! allow-session         # grant "for this session" (a plain grant where the rule has no
//!                       # `remember`)
//! deny optional reason  # deny, with the reason journaled
//! timeout               # answer nothing: the request times out (and is denied)
//! ```
//!
//! With a FIFO, the worker blocks reading until a line (or end-of-file) arrives; an answer that
//! arrives for a request the caller has meanwhile given up on is consumed by that request and
//! reported as not applied, never carried over to the next one.
//!
//! Fail closed: an unreadable script, an unknown answer or running out of answers gives
//! `Unavailable` (the loop denies), and once the script is broken every later request does too.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use agp_contracts::approval::via;
use agp_contracts::events::Projection;
use agp_contracts::{
    ApprovalChannel, ApprovalOutcome, ApprovalRequest, Approver, BoxFuture, ChannelError,
};

use crate::queue::{ineligible, now_ms, Active, Asked, Prompter, Queue};
use crate::render::{self, Style};
use crate::sanitize::escape;
use crate::terminal::note_line;

/// One parsed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptAnswer {
    Allow,
    AllowForSession,
    Deny(Option<String>),
    Timeout,
}

impl ScriptAnswer {
    /// Parses one non-comment line.
    pub fn parse(line: &str) -> Result<ScriptAnswer, String> {
        let line = line.split('#').next().unwrap_or("").trim();
        let (word, rest) = match line.split_once(char::is_whitespace) {
            Some((w, r)) => (w, r.trim()),
            None => (line, ""),
        };
        match (word, rest) {
            ("allow", "") => Ok(ScriptAnswer::Allow),
            ("allow-session", "") => Ok(ScriptAnswer::AllowForSession),
            ("deny", "") => Ok(ScriptAnswer::Deny(None)),
            ("deny", reason) => Ok(ScriptAnswer::Deny(Some(reason.to_owned()))),
            ("timeout", "") => Ok(ScriptAnswer::Timeout),
            _ => Err(format!(
                "unknown answer {:?} (expected allow, allow-session, deny [reason] or timeout)",
                escape(line)
            )),
        }
    }
}

/// Answers approval requests from a script of answers.
pub struct ScriptedApprover {
    queue: Queue,
}

impl ScriptedApprover {
    /// Reads answers from `path` (opened on first use, so a FIFO's writer may start later) and
    /// renders prompts and answers to standard error.
    pub fn new(path: &Path) -> std::io::Result<ScriptedApprover> {
        Self::with_output(path, Box::new(std::io::stderr()))
    }

    pub fn with_output(
        path: &Path,
        out: Box<dyn Write + Send>,
    ) -> std::io::Result<ScriptedApprover> {
        // Fail at start-up on a missing script. Only metadata is read: opening a FIFO would
        // block until its writer appears.
        std::fs::metadata(path)?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let prompter = ScriptPrompter {
            path: path.to_owned(),
            reader: None,
            line_no: 0,
            broken: None,
            out,
            approver: Approver {
                id: format!("script:{name}"),
                name: format!("{} (approver script)", path.display()),
                via: via::TERMINAL_SCRIPT.to_owned(),
            },
        };
        Ok(ScriptedApprover {
            queue: Queue::start("terminal-script", prompter)?,
        })
    }
}

impl ApprovalChannel for ScriptedApprover {
    fn name(&self) -> &str {
        via::TERMINAL_SCRIPT
    }

    fn request_approval<'a>(
        &'a self,
        request: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<ApprovalOutcome, ChannelError>> {
        Box::pin(self.queue.ask(request))
    }

    fn project<'a>(
        &'a self,
        session: Option<&'a str>,
        event: &'a Projection,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move { self.queue.note(note_line(session, event)) })
    }
}

struct ScriptPrompter {
    path: PathBuf,
    reader: Option<BufReader<File>>,
    line_no: usize,
    /// Why the script can no longer answer; every later request is `Unavailable`.
    broken: Option<String>,
    out: Box<dyn Write + Send>,
    approver: Approver,
}

impl ScriptPrompter {
    fn say(&mut self, text: &str) {
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }

    /// The next answer and its line number, or why there is none.
    fn next_answer(&mut self) -> Result<(usize, ScriptAnswer), String> {
        if let Some(why) = &self.broken {
            return Err(why.clone());
        }
        let result = self.read_answer();
        if let Err(why) = &result {
            self.broken = Some(why.clone());
        }
        result
    }

    fn read_answer(&mut self) -> Result<(usize, ScriptAnswer), String> {
        let shown = self.path.display().to_string();
        let reader = if let Some(reader) = &mut self.reader {
            reader
        } else {
            let file = File::open(&self.path)
                .map_err(|e| format!("cannot open approver script {shown}: {e}"))?;
            self.reader.insert(BufReader::new(file))
        };
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader
                .read_line(&mut line)
                .map_err(|e| format!("cannot read approver script {shown}: {e}"))?;
            if n == 0 {
                return Err(format!("approver script {shown} has no answers left"));
            }
            self.line_no += 1;
            let content = line.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            return ScriptAnswer::parse(content)
                .map(|a| (self.line_no, a))
                .map_err(|e| format!("approver script {shown} line {}: {e}", self.line_no));
        }
    }
}

impl Prompter for ScriptPrompter {
    fn ask(&mut self, job: &Active<'_>) -> Asked {
        // Checked before reading, so an answer is never spent on a request it cannot decide.
        if let Some(reason) = ineligible(job.request, &self.approver) {
            self.say(&format!("agp: {}\n", escape(&reason)));
            return Asked::Decided(Ok(ApprovalOutcome::Unavailable { reason }));
        }
        let prompt = render::prompt(
            job.request,
            job.waiting,
            now_ms(),
            Style::Plain,
            render::DEFAULT_WIDTH,
        );
        self.say(&prompt);
        let (line, answer) = match self.next_answer() {
            Ok(a) => a,
            Err(why) => {
                self.say(&format!("\n  {}\n", escape(&why)));
                return Asked::Decided(Ok(ApprovalOutcome::Unavailable {
                    reason: format!("no approver available: {why}"),
                }));
            }
        };
        if job.cancelled() {
            self.say("\n  withdrawn: agp stopped waiting; the scripted answer is not applied\n");
            return Asked::Withdrawn;
        }
        match answer {
            ScriptAnswer::Allow => {
                self.say(&format!("allow   (approver script, line {line})\n"));
                Asked::Decided(Ok(ApprovalOutcome::Granted {
                    by: vec![self.approver.clone()],
                }))
            }
            ScriptAnswer::AllowForSession if job.request.remember_secs.is_some() => {
                self.say(&format!(
                    "allow for this session   (approver script, line {line})\n"
                ));
                Asked::Decided(Ok(ApprovalOutcome::GrantedForSession {
                    by: vec![self.approver.clone()],
                }))
            }
            ScriptAnswer::AllowForSession => {
                self.say(&format!(
                    "allow   (approver script, line {line}: the rule remembers nothing, so once)\n"
                ));
                Asked::Decided(Ok(ApprovalOutcome::Granted {
                    by: vec![self.approver.clone()],
                }))
            }
            ScriptAnswer::Deny(reason) => {
                self.say(&format!("deny   (approver script, line {line})\n"));
                Asked::Decided(Ok(ApprovalOutcome::Denied {
                    by: self.approver.clone(),
                    reason: Some(reason.unwrap_or_else(|| "denied by the approver script".into())),
                }))
            }
            ScriptAnswer::Timeout => {
                self.say(&format!(
                    "(approver script, line {line}: no answer; waiting for the timeout)\n"
                ));
                let asked = job.wait_without_answer();
                if matches!(asked, Asked::Decided(_)) {
                    self.say("  timed out: nobody decided in time; the call is denied\n");
                }
                asked
            }
        }
    }

    fn discarded(&mut self, _request: &ApprovalRequest) {
        self.say("  (not applied: agp had already stopped waiting for this decision)\n");
    }

    fn note(&mut self, text: &str) {
        self.say(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::Shared;
    use std::time::Duration;

    fn request(call: &str, expires_in_ms: u64) -> ApprovalRequest {
        ApprovalRequest {
            session: "s".into(),
            call_id: call.into(),
            tool: "Bash".into(),
            redacted_input: serde_json::json!({"command": "git push"}),
            input_sha256: "a".repeat(64),
            rule_id: Some("git.push".into()),
            reason: "pushes to a remote".into(),
            approvers: vec![],
            quorum: 1,
            expires_at_ms: now_ms() + expires_in_ms,
            remember_secs: None,
        }
    }

    /// A scripted approver reading `answers` from a file in `dir`, its output thrown away.
    fn scripted(dir: &tempfile::TempDir, answers: &str) -> ScriptedApprover {
        let path = dir.path().join("answers");
        std::fs::write(&path, answers).unwrap();
        ScriptedApprover::with_output(&path, Box::new(Shared::default())).unwrap()
    }

    /// Asks `channel` about `call`, which expires in a minute.
    async fn ask(channel: &ScriptedApprover, call: &str) -> ApprovalOutcome {
        channel
            .request_approval(&request(call, 60_000))
            .await
            .unwrap()
    }

    #[test]
    fn parses_answers_strictly() {
        assert_eq!(ScriptAnswer::parse("allow"), Ok(ScriptAnswer::Allow));
        assert_eq!(
            ScriptAnswer::parse("allow-session"),
            Ok(ScriptAnswer::AllowForSession)
        );
        assert!(ScriptAnswer::parse("allow-session please").is_err());
        assert_eq!(
            ScriptAnswer::parse("deny  not today "),
            Ok(ScriptAnswer::Deny(Some("not today".into())))
        );
        assert_eq!(
            ScriptAnswer::parse("timeout # later"),
            Ok(ScriptAnswer::Timeout)
        );
        assert!(ScriptAnswer::parse("allow please").is_err());
        assert!(ScriptAnswer::parse("yes").is_err());
    }

    #[tokio::test]
    async fn answers_in_order_then_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("answers");
        std::fs::write(&path, "# demo\nallow\n\ndeny too risky\ntimeout\nbogus\n").unwrap();
        let out = Shared::default();
        let channel = ScriptedApprover::with_output(&path, Box::new(out.clone())).unwrap();

        let granted = ask(&channel, "1").await;
        let ApprovalOutcome::Granted { by } = granted else {
            panic!("{granted:?}")
        };
        assert_eq!(by[0].via, "terminal-script");
        assert_eq!(by[0].id, "script:answers");

        let denied = ask(&channel, "2").await;
        assert!(matches!(
            denied,
            ApprovalOutcome::Denied { ref reason, .. } if reason.as_deref() == Some("too risky")
        ));

        // `timeout` leaves the request unanswered until it expires.
        let timed = channel.request_approval(&request("3", 200)).await.unwrap();
        assert_eq!(timed, ApprovalOutcome::Timeout);

        // An unknown answer breaks the script for good: fail closed.
        for call in ["4", "5"] {
            let out = channel
                .request_approval(&request(call, 60_000))
                .await
                .unwrap();
            let ApprovalOutcome::Unavailable { reason } = out else {
                panic!("{out:?}")
            };
            assert!(reason.contains("line 6"), "{reason}");
        }
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("approval required") && text.contains("git push"));
    }

    #[tokio::test]
    async fn requests_the_script_cannot_decide_do_not_spend_an_answer() {
        let dir = tempfile::tempdir().unwrap();
        let channel = scripted(&dir, "allow\n");
        let mut named = request("1", 60_000);
        named.approvers = vec!["U012ABCDEF".into()];
        let out = channel.request_approval(&named).await.unwrap();
        assert!(
            matches!(out, ApprovalOutcome::Unavailable { .. }),
            "{out:?}"
        );
        let next = ask(&channel, "2").await;
        assert!(next.is_granted(), "the answer is still there: {next:?}");
    }

    #[tokio::test]
    async fn an_absurd_expiry_does_not_break_the_worker() {
        let dir = tempfile::tempdir().unwrap();
        let channel = scripted(&dir, "allow\nallow\n");
        let mut forever = request("1", 0);
        forever.expires_at_ms = u64::MAX;
        assert!(channel
            .request_approval(&forever)
            .await
            .unwrap()
            .is_granted());
        assert!(ask(&channel, "2").await.is_granted());
    }

    #[tokio::test]
    async fn exhausted_or_missing_scripts_are_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let nope = dir.path().join("nope");
        assert!(ScriptedApprover::with_output(&nope, Box::new(Shared::default())).is_err());
        // A script that disappears after start-up fails closed at the first request.
        std::fs::write(&nope, "allow\n").unwrap();
        let missing = ScriptedApprover::with_output(&nope, Box::new(Shared::default())).unwrap();
        std::fs::remove_file(&nope).unwrap();
        let out = ask(&missing, "1").await;
        assert!(
            matches!(out, ApprovalOutcome::Unavailable { ref reason } if reason.contains("cannot open"))
        );

        let one = scripted(&dir, "allow\n");
        assert!(ask(&one, "1").await.is_granted());
        let out = ask(&one, "2").await;
        assert!(
            matches!(out, ApprovalOutcome::Unavailable { ref reason } if reason.contains("no answers left"))
        );
    }

    #[tokio::test]
    async fn a_timed_out_caller_withdraws_a_waiting_answer() {
        let dir = tempfile::tempdir().unwrap();
        let channel = scripted(&dir, "timeout\nallow\n");
        let first = request("1", 60_000);
        let waited =
            tokio::time::timeout(Duration::from_millis(150), channel.request_approval(&first))
                .await;
        assert!(waited.is_err(), "the caller's timeout must win");
        // The worker noticed the withdrawal and moved on to the next answer.
        let next = tokio::time::timeout(
            Duration::from_secs(5),
            channel.request_approval(&request("2", 60_000)),
        )
        .await
        .expect("worker must not stay stuck on a withdrawn request")
        .unwrap();
        assert!(next.is_granted());
    }

    /// A test harness can feed answers through a FIFO as prompts appear (issue 5's real-client
    /// tests do): the script is opened on first use and read a line at a time.
    #[tokio::test]
    async fn answers_can_arrive_through_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("answers.fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let out = Shared::default();
        let channel = ScriptedApprover::with_output(&fifo, Box::new(out.clone())).unwrap();
        let seen = out.clone();
        let writer = std::thread::spawn(move || {
            let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            for (k, answer) in ["allow\n", "deny no\n"].into_iter().enumerate() {
                // Answer only once the prompt has been shown, as a harness would.
                let shown = || {
                    String::from_utf8_lossy(&seen.0.lock().unwrap())
                        .matches("approval required")
                        .count()
                };
                while shown() <= k {
                    std::thread::sleep(Duration::from_millis(5));
                }
                w.write_all(answer.as_bytes()).unwrap();
                w.flush().unwrap();
            }
        });
        assert!(ask(&channel, "1").await.is_granted());
        let second = ask(&channel, "2").await;
        assert!(
            matches!(second, ApprovalOutcome::Denied { .. }),
            "{second:?}"
        );
        writer.join().unwrap();
        // The writer closed the FIFO: no answers left, fail closed.
        let third = ask(&channel, "3").await;
        assert!(
            matches!(third, ApprovalOutcome::Unavailable { .. }),
            "{third:?}"
        );
    }
}
