//! One prompt at a time: a worker thread that puts queued requests to a [`Prompter`] in order,
//! and withdraws a prompt whose caller has stopped waiting.
//!
//! Cancel safety: the future returned to the caller owns the receiving end of a oneshot and a
//! guard that, when the future is dropped (the caller's timeout), wakes the worker through a
//! pipe. The worker re-checks [`Active::cancelled`] after every wake-up and after every key, and
//! a decision is only ever delivered through the oneshot, which refuses it once the caller has
//! gone: a late key press cannot be applied.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agp_contracts::{ApprovalOutcome, ApprovalRequest, Approver, ChannelError};
use futures_channel::oneshot;
use rustix::event::{poll, PollFd, PollFlags};
use rustix::pipe::{pipe_with, PipeFlags};

pub(crate) type Reply = Result<ApprovalOutcome, ChannelError>;

/// What a prompter did with a request.
pub(crate) enum Asked {
    Decided(Reply),
    /// The caller stopped waiting; nothing was decided.
    Withdrawn,
}

/// Something that can put one request at a time to an approver.
pub(crate) trait Prompter: Send + 'static {
    fn ask(&mut self, job: &Active<'_>) -> Asked;
    /// A decision was taken but the caller had already gone: say it was not applied.
    fn discarded(&mut self, request: &ApprovalRequest);
    /// A best-effort notice (session start/end, a denial).
    fn note(&mut self, text: &str);
}

/// The request being asked, with what the prompter needs to notice cancellation.
pub(crate) struct Active<'a> {
    pub request: &'a ApprovalRequest,
    /// Requests queued behind this one.
    pub waiting: usize,
    reply: &'a oneshot::Sender<Reply>,
    wake: BorrowedFd<'a>,
}

impl Active<'_> {
    /// True once the caller dropped its future.
    pub fn cancelled(&self) -> bool {
        self.reply.is_canceled()
    }

    /// Readable when someone cancelled a request; drain it with [`Active::drain_wake`].
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake
    }

    pub fn drain_wake(&self) {
        let mut buf = [0u8; 64];
        while let Ok(n) = rustix::io::read(self.wake, &mut buf) {
            if n == 0 {
                break;
            }
        }
    }

    /// When the request expires, on the monotonic clock.
    pub fn deadline(&self) -> Instant {
        // Capped: an absurd expiry must not overflow the clock (a panic would stop the worker).
        const LONGEST: Duration = Duration::from_secs(7 * 24 * 3600);
        let left = Duration::from_millis(self.request.expires_at_ms.saturating_sub(now_ms()));
        Instant::now() + left.min(LONGEST)
    }

    /// Waits, with no terminal involved, until the caller gives up or the request expires.
    pub fn wait_without_answer(&self) -> Asked {
        let deadline = self.deadline();
        loop {
            if self.cancelled() {
                return Asked::Withdrawn;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Asked::Decided(Ok(ApprovalOutcome::Timeout));
            }
            let ts = rustix::event::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            let mut fds = [PollFd::new(&self.wake, PollFlags::IN)];
            match poll(&mut fds, Some(&ts)) {
                Ok(n) if n > 0 => self.drain_wake(),
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(_) => {
                    // Without a working wake-up we can still honour the deadline by sleeping.
                    std::thread::sleep(left.min(Duration::from_millis(50)));
                }
            }
        }
    }
}

/// Why `approver` cannot decide `request` on their own, if they cannot: the request names other
/// approvers, or needs more distinct people than one channel user. Asking anyway would only
/// collect an answer the daemon must refuse.
pub(crate) fn ineligible(request: &ApprovalRequest, approver: &Approver) -> Option<String> {
    if !request.approvers.is_empty() && !request.approvers.contains(&approver.id) {
        return Some(format!(
            "no approver available: only {} may approve this call, and {} is not one of them",
            request.approvers.join(", "),
            approver.id
        ));
    }
    if request.quorum > 1 {
        return Some(format!(
            "no approver available: this call needs {} distinct approvers; {} is one person",
            request.quorum, approver.id
        ));
    }
    None
}

/// Unix time in milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

enum Message {
    Ask {
        // Boxed: a request is far larger than a note, and the queue holds many messages.
        request: Box<ApprovalRequest>,
        reply: oneshot::Sender<Reply>,
    },
    Note(String),
}

/// The handle callers share; the worker thread ends when the last handle is dropped.
pub(crate) struct Queue {
    channel: String,
    tx: mpsc::Sender<Message>,
    queued: Arc<AtomicUsize>,
    wake_tx: Arc<OwnedFd>,
}

impl Queue {
    /// Starts the worker thread for `prompter`. `channel` names it in errors.
    pub fn start(channel: &str, prompter: impl Prompter) -> io::Result<Queue> {
        let (wake_rx, wake_tx) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        let (tx, rx) = mpsc::channel::<Message>();
        let queued = Arc::new(AtomicUsize::new(0));
        let worker_queued = Arc::clone(&queued);
        std::thread::Builder::new()
            .name(format!("agp-{channel}-approver"))
            .spawn(move || run(prompter, &rx, &worker_queued, &wake_rx))?;
        Ok(Queue {
            channel: channel.to_owned(),
            tx,
            queued,
            wake_tx: Arc::new(wake_tx),
        })
    }

    /// Queues `request` and waits for its decision. Dropping the returned future withdraws it.
    pub async fn ask(&self, request: &ApprovalRequest) -> Reply {
        let (reply, answer) = oneshot::channel();
        let mut guard = WakeOnDrop {
            wake: Some(Arc::clone(&self.wake_tx)),
        };
        self.queued.fetch_add(1, Ordering::SeqCst);
        if self
            .tx
            .send(Message::Ask {
                request: Box::new(request.clone()),
                reply,
            })
            .is_err()
        {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            guard.wake = None;
            return Err(self.failed("the approval worker has stopped"));
        }
        let result = answer.await;
        guard.wake = None;
        result.unwrap_or_else(|_| Err(self.failed("the approval worker dropped the request")))
    }

    /// Queues a notice; never waits.
    pub fn note(&self, text: String) -> Result<(), ChannelError> {
        self.tx
            .send(Message::Note(text))
            .map_err(|_| self.failed("the approval worker has stopped"))
    }

    fn failed(&self, message: &str) -> ChannelError {
        ChannelError::Failed {
            channel: self.channel.clone(),
            message: message.to_owned(),
        }
    }
}

/// Wakes the worker when a caller stops waiting, so the prompt is withdrawn at once.
struct WakeOnDrop {
    wake: Option<Arc<OwnedFd>>,
}

impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        if let Some(fd) = &self.wake {
            // A full pipe already means "wake up"; nothing else can usefully be done on error.
            let _ = rustix::io::write(fd.as_fd(), &[1]);
        }
    }
}

fn run(
    mut prompter: impl Prompter,
    rx: &mpsc::Receiver<Message>,
    queued: &AtomicUsize,
    wake_rx: &OwnedFd,
) {
    while let Ok(message) = rx.recv() {
        match message {
            Message::Note(text) => prompter.note(&text),
            Message::Ask { request, reply } => {
                queued.fetch_sub(1, Ordering::SeqCst);
                // Withdrawn while queued: never shown.
                if reply.is_canceled() {
                    continue;
                }
                let active = Active {
                    request: &request,
                    waiting: queued.load(Ordering::SeqCst),
                    reply: &reply,
                    wake: wake_rx.as_fd(),
                };
                active.drain_wake();
                match prompter.ask(&active) {
                    Asked::Withdrawn => {}
                    Asked::Decided(outcome) => {
                        if reply.send(outcome).is_err() {
                            prompter.discarded(&request);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(approvers: &[&str], quorum: u32) -> ApprovalRequest {
        ApprovalRequest {
            session: "s".into(),
            call_id: "c".into(),
            tool: "Bash".into(),
            redacted_input: serde_json::json!({}),
            input_sha256: "0".repeat(64),
            rule_id: None,
            reason: "r".into(),
            approvers: approvers
                .iter()
                .map(std::string::ToString::to_string)
                .collect(),
            quorum,
            expires_at_ms: 0,
            remember_secs: None,
        }
    }

    #[test]
    fn deadlines_follow_the_expiry_and_never_overflow() {
        let (reply, _answer) = oneshot::channel();
        let (wake, _wake_tx) = pipe_with(PipeFlags::CLOEXEC).unwrap();
        let mut req = request(&[], 1);
        for (expires, low, high) in [
            (u64::MAX, 6 * 24 * 3600, 8 * 24 * 3600),
            (now_ms() + 60_000, 50, 70),
            (0, 0, 1),
        ] {
            req.expires_at_ms = expires;
            let active = Active {
                request: &req,
                waiting: 0,
                reply: &reply,
                wake: wake.as_fd(),
            };
            let left = active.deadline().saturating_duration_since(Instant::now());
            assert!(
                left >= Duration::from_secs(low) && left <= Duration::from_secs(high),
                "{expires}: {left:?}"
            );
        }
    }

    #[test]
    fn only_named_approvers_and_single_person_quorums_are_asked() {
        let me = Approver {
            id: "tty:alice".into(),
            name: "alice".into(),
            via: "terminal".into(),
        };
        assert_eq!(ineligible(&request(&[], 1), &me), None);
        assert_eq!(ineligible(&request(&["tty:alice", "U1"], 1), &me), None);
        let other = ineligible(&request(&["U1"], 1), &me).unwrap();
        assert!(other.contains("only U1 may approve"), "{other}");
        let quorum = ineligible(&request(&[], 2), &me).unwrap();
        assert!(quorum.contains("needs 2 distinct approvers"), "{quorum}");
    }
}
