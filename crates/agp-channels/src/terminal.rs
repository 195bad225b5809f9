//! The terminal approval channel: agp's embedded default approver.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agp_contracts::approval::via;
use agp_contracts::events::Projection;
use agp_contracts::{
    ApprovalChannel, ApprovalOutcome, ApprovalRequest, Approver, BoxFuture, ChannelError,
};
use rustix::process::Signal;

use crate::queue::{ineligible, now_ms, Active, Asked, Prompter, Queue};
use crate::render::{self, Style};
use crate::sanitize::escape;
use crate::tty::{Ready, Tty, CONTROLLING_TTY};

/// Reason given when there is no terminal to ask. The loop turns it into a deny.
pub const NO_TERMINAL: &str = "no approver available: no terminal";
/// Reason given when agp runs as a background job of its terminal.
pub const IN_BACKGROUND: &str =
    "no approver available: agp is a background job of its terminal (bring it to the foreground)";
/// Reason given when the terminal went away (hang-up) while or before asking.
pub const TERMINAL_CLOSED: &str = "no approver available: the terminal was closed";

/// Asks the person at a terminal, one request at a time.
///
/// Keys: `a`/`y` allow, `s` allow for this session (only offered, and only accepted, when the
/// rule has `remember`), `d`/`n` deny, `?` details. A read that is more than one key (a paste, an
/// escape sequence from arrow or function keys) is ignored, so only a deliberate key press
/// decides; input typed before a prompt appears is discarded.
pub struct TerminalChannel {
    inner: Inner,
}

enum Inner {
    Tty(Queue),
    NoTerminal(String),
}

impl TerminalChannel {
    /// Uses the controlling terminal (`/dev/tty`). Without one, every request is answered
    /// [`ApprovalOutcome::Unavailable`] with [`NO_TERMINAL`]: require then means deny.
    pub fn controlling() -> TerminalChannel {
        Self::open_or_unavailable(Path::new(CONTROLLING_TTY))
    }

    /// Uses the terminal device at `path` (a pseudo-terminal in tests). A path that cannot be
    /// opened as a terminal gives a channel that answers every request `Unavailable`.
    pub fn open_or_unavailable(path: &Path) -> TerminalChannel {
        match Self::open(path) {
            Ok(channel) => channel,
            Err(_) => TerminalChannel {
                inner: Inner::NoTerminal(NO_TERMINAL.to_owned()),
            },
        }
    }

    /// Like [`TerminalChannel::open_or_unavailable`], but reports why the terminal is unusable.
    pub fn open(path: &Path) -> io::Result<TerminalChannel> {
        let tty = Tty::open(path)?;
        let style = if std::env::var_os("NO_COLOR").is_some() {
            Style::Plain
        } else {
            Style::Ansi
        };
        let prompter = TtyPrompter {
            tty,
            path: path.to_owned(),
            approver: local_approver(),
            style,
            closed: false,
        };
        Ok(TerminalChannel {
            inner: Inner::Tty(Queue::start("terminal", prompter)?),
        })
    }

    /// Whether a terminal is attached; `false` means every request is answered `Unavailable`.
    pub fn is_available(&self) -> bool {
        matches!(self.inner, Inner::Tty(_))
    }
}

impl ApprovalChannel for TerminalChannel {
    fn name(&self) -> &str {
        via::TERMINAL
    }

    fn request_approval<'a>(
        &'a self,
        request: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<ApprovalOutcome, ChannelError>> {
        Box::pin(async move {
            match &self.inner {
                Inner::Tty(queue) => queue.ask(request).await,
                Inner::NoTerminal(reason) => Ok(ApprovalOutcome::Unavailable {
                    reason: reason.clone(),
                }),
            }
        })
    }

    fn project<'a>(
        &'a self,
        session: Option<&'a str>,
        event: &'a Projection,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            match &self.inner {
                Inner::Tty(queue) => queue.note(note_line(session, event)),
                // Nobody to tell; projections are best effort.
                Inner::NoTerminal(_) => Ok(()),
            }
        })
    }
}

/// The person at this terminal, as journaled: `tty:<user>`, the account agp runs as.
fn local_approver() -> Approver {
    crate::identity::local_approver(rustix::process::getuid().as_raw(), via::TERMINAL)
}

/// One line for a projected event, escaped and kept short: `tool: reason` for a denial, the
/// intendant and repo for a session start, the status for a session end.
pub(crate) fn note_line(session: Option<&str>, event: &Projection) -> String {
    const MAX: usize = 300;
    let mut text = match event {
        Projection::CallDenied(d) => format!("{}: {}", d.tool, d.reason),
        Projection::SessionStarted(s) => {
            format!("intendant {} · repo {}", s.intendant, s.repo.display())
        }
        Projection::SessionEnded(e) => e.status.clone(),
    };
    if text.chars().count() > MAX {
        text = text.chars().take(MAX).collect::<String>() + "…";
    }
    format!(
        "agp: {} {}{}\n",
        escape(event.kind()),
        session
            .map(|s| format!("[{}] ", escape(s)))
            .unwrap_or_default(),
        escape(&text)
    )
}

struct TtyPrompter {
    tty: Tty,
    path: PathBuf,
    approver: Approver,
    style: Style,
    /// The terminal hung up: everything after is `Unavailable`.
    closed: bool,
}

/// After an escape byte, further bytes for this long belong to the same key sequence.
const ESCAPE_SEQUENCE_WINDOW: Duration = Duration::from_millis(100);

impl TtyPrompter {
    fn say(&self, text: &str) {
        // The decision does not depend on the display; a failed write shows up as a failed read.
        let _ = self.tty.write_all(text);
    }

    fn unavailable(&mut self, reason: &str) -> Asked {
        self.closed = true;
        Asked::Decided(Ok(ApprovalOutcome::Unavailable {
            reason: reason.to_owned(),
        }))
    }

    fn withdrawn(&self) -> Asked {
        self.say("\n  withdrawn: agp stopped waiting (timeout or shutdown); this prompt decides nothing\n");
        Asked::Withdrawn
    }
}

impl Prompter for TtyPrompter {
    fn ask(&mut self, job: &Active<'_>) -> Asked {
        if self.closed {
            return self.unavailable(TERMINAL_CLOSED);
        }
        let req = job.request;
        let deadline = job.deadline();
        if Instant::now() >= deadline {
            return Asked::Decided(Ok(ApprovalOutcome::Timeout));
        }
        if let Some(reason) = ineligible(req, &self.approver) {
            self.say(&format!(
                "\nagp: {} call not put to you: {}\n",
                escape(&req.tool.name()),
                escape(&reason)
            ));
            return Asked::Decided(Ok(ApprovalOutcome::Unavailable { reason }));
        }
        if self.tty.in_background() {
            // Not `closed`: the job may be brought to the foreground later.
            return Asked::Decided(Ok(ApprovalOutcome::Unavailable {
                reason: IN_BACKGROUND.to_owned(),
            }));
        }
        let mode = match self.tty.single_keys() {
            Ok(guard) => guard,
            Err(e) => {
                let reason = format!(
                    "no approver available: terminal {} unusable: {e}",
                    self.path.display()
                );
                self.closed = true;
                return Asked::Decided(Ok(ApprovalOutcome::Unavailable { reason }));
            }
        };
        // Discard before showing: nothing typed before the prompt was visible can answer it.
        let _ = self.tty.discard_input();
        let prompt = render::prompt(req, job.waiting, now_ms(), self.style, self.tty.width());
        let _ = self.tty.write_all(&prompt);

        let mut quiet_until: Option<Instant> = None;
        let mut buf = [0u8; 64];
        let answer = loop {
            if job.cancelled() {
                break None;
            }
            match self.tty.wait(job.wake_fd(), Some(deadline)) {
                Err(_) | Ok(Ready::Closed) => break Some(Key::Closed),
                Ok(Ready::Woken) => {
                    job.drain_wake();
                    continue;
                }
                Ok(Ready::Deadline) => break Some(Key::Expired),
                Ok(Ready::Input) => {}
            }
            let n = match self.tty.read(&mut buf) {
                Ok(0) | Err(_) => break Some(Key::Closed),
                Ok(n) => n,
            };
            // A key that arrives after the caller left must not be applied.
            if job.cancelled() {
                break None;
            }
            let now = Instant::now();
            if buf[..n].contains(&0x1b) {
                quiet_until = Some(now + ESCAPE_SEQUENCE_WINDOW);
                continue;
            }
            if quiet_until.is_some_and(|t| now < t) {
                continue;
            }
            if n != 1 {
                let _ = self.tty.write_all("\n  (ignored: press a single key) ");
                continue;
            }
            match buf[0] {
                b'a' | b'A' | b'y' | b'Y' => break Some(Key::Allow),
                // Only where offered: elsewhere `s` is no answer at all.
                b's' | b'S' if req.remember_secs.is_some() => break Some(Key::AllowForSession),
                b'd' | b'D' | b'n' | b'N' => break Some(Key::Deny),
                // Ctrl-C and Ctrl-\: what the terminal would have signalled.
                0x03 => break Some(Key::Interrupt(Signal::INT)),
                0x1c => break Some(Key::Interrupt(Signal::QUIT)),
                b'?' => {
                    let _ = self.tty.write_all(&render::details(req, now_ms()));
                }
                _ => {}
            }
        };
        drop(mode);
        match answer {
            None => self.withdrawn(),
            Some(Key::Interrupt(signal)) => {
                self.say("^C\n  interrupted: nothing was approved\n");
                // The terminal mode is restored (the guard is dropped); now do what the key
                // means. If agp handles or ignores the signal, the call is denied.
                let _ = rustix::process::kill_process(rustix::process::getpid(), signal);
                Asked::Decided(Ok(ApprovalOutcome::Unavailable {
                    reason: "no approver available: the prompt was interrupted".to_owned(),
                }))
            }
            Some(Key::Closed) => {
                self.say("\n");
                self.unavailable(TERMINAL_CLOSED)
            }
            Some(Key::Expired) => {
                self.say("\n  timed out: nobody decided in time; the call is denied\n");
                Asked::Decided(Ok(ApprovalOutcome::Timeout))
            }
            Some(Key::Allow) => {
                let who = escape(&self.approver.id).into_owned();
                self.say(&format!("allow\n  allowed by {who}\n"));
                Asked::Decided(Ok(ApprovalOutcome::Granted {
                    by: vec![self.approver.clone()],
                }))
            }
            Some(Key::AllowForSession) => {
                let who = escape(&self.approver.id).into_owned();
                let bound = render::duration_text(req.remember_secs.unwrap_or(0));
                self.say(&format!(
                    "allow for this session\n  allowed by {who}; the same call is not asked again in this session for {bound}\n"
                ));
                Asked::Decided(Ok(ApprovalOutcome::GrantedForSession {
                    by: vec![self.approver.clone()],
                }))
            }
            Some(Key::Deny) => {
                let who = escape(&self.approver.id).into_owned();
                self.say(&format!("deny\n  denied by {who}\n"));
                Asked::Decided(Ok(ApprovalOutcome::Denied {
                    by: self.approver.clone(),
                    reason: Some("denied at the terminal".to_owned()),
                }))
            }
        }
    }

    fn discarded(&mut self, _request: &ApprovalRequest) {
        self.say("  (not applied: agp had already stopped waiting for this decision)\n");
    }

    fn note(&mut self, text: &str) {
        if !self.closed {
            self.say(text);
        }
    }
}

enum Key {
    Interrupt(Signal),
    Allow,
    AllowForSession,
    Deny,
    Expired,
    Closed,
}

#[cfg(test)]
mod tests {
    use super::*;
    use agp_contracts::events::SessionStarted;
    use serde_json::{json, Value};

    #[test]
    fn notes_are_short_escaped_single_lines() {
        let read = |kind: &str, body: Value| Projection::from_parts(kind, &body).unwrap();
        let denial = json!({"call_id": "c1", "tool": "Bash", "reason": "guard\u{1b}[2J",
                            "input": {"command": "x"}, "rule_id": null});
        assert_eq!(
            note_line(Some("s1"), &read("call.denied", denial)),
            "agp: call.denied [s1] Bash: guard\\e[2J\n"
        );
        let ended = json!({"session": "s1", "status": "completed", "lease_held": true});
        assert_eq!(
            note_line(Some("s1"), &read("session.ended", ended)),
            "agp: session.ended [s1] completed\n"
        );
        let mut started = SessionStarted::new("scripted", "/r");
        started.task = Some("t".into());
        assert_eq!(
            note_line(Some("s1"), &started.into()),
            "agp: session.started [s1] intendant scripted · repo /r\n"
        );
        let long = SessionStarted::new("scripted", "y".repeat(1000));
        let line = note_line(None, &long.into());
        assert!(line.chars().count() < 340 && line.ends_with("…\n"));
        assert_eq!(line.matches('\n').count(), 1);
        // A body that does not read as its kind never reaches a person as a note.
        assert!(Projection::from_parts("session.ended", &json!({"status": "completed"})).is_err());
    }
}
