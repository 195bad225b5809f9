//! Gate mode: git metadata planted mid-session is scrubbed while the session lives.
//!
//! In proxy-exec mode the sandbox scrubs the git directory after every command
//! (`agp_sandbox::GitMetadataGuard`). In gate mode the agent is one long-running process (inside
//! bubblewrap under `agp run`, or on the host with `agp install-hooks`), so whatever it creates
//! in the repository's git directory (a `commondir` naming a doctored git directory, a
//! `config.worktree`, `hooks/` where there were none, `objects/info/alternates`, a rebase todo
//! with `exec` lines) would otherwise stay until the end-of-session integrity check, and the
//! user's `git status` on the host could meanwhile run code it names.
//!
//! So the daemon takes the guard's snapshot of the git metadata when the session opens and
//! scrubs against it (same rules as after a sandboxed command: what is new or replaced and is
//! not commit state is moved to `.git/agp-quarantine/<time>-<pid>-<n>/`) on every hook event:
//! before judging each call (PreToolUse), after each reported result (PostToolUse,
//! PostToolUseFailure), every [`SCRUB_EVERY`] as a backstop, and once more when the session
//! ends, before the integrity check. Each scrub that removed something is journaled as
//! `sandbox.git_metadata_removed` with `when` saying which.
//!
//! # What window remains
//!
//! - Between a plant and the next scrub: at most [`SCRUB_EVERY`], less when a hook event comes
//!   first. A host git run inside that window (the user's `git status` a moment after the
//!   agent wrote `.git/commondir`) still reads what was planted. A sandboxed agent cannot
//!   replace what existed when its sandbox started (those entries are bound read-only), so
//!   the window is about entries it creates.
//! - The scrub runs while the agent still runs: it can plant again right after. Each plant is
//!   removed again by the next scrub and journaled every time.
//! - Only what the guard watches: the top of the git directory and `objects/info` (inside
//!   `hooks/`, `info/` or `config` an agent under `agp run` cannot write: they are read-only in
//!   its sandbox). An agent on the host with `agp install-hooks` has no sandbox: policy alone
//!   keeps it out of `.git`, and the end-of-session integrity check reports what it changed.
//! - A session taken over by another daemon (after a restart) is snapshotted anew when it is
//!   taken over: what was planted while no daemon watched counts as there from the start, and
//!   is left to the end-of-session integrity check.
//! - `.git/agp-quarantine` made mid-session is writable for a sandboxed agent (it did not
//!   exist when its sandbox started): it can delete what was quarantined, or move it back,
//!   which the next scrub removes again. The journal keeps what was removed either way.
//! - Host git work by the user in the same repository during the session is scrubbed the same
//!   way (`git config`, `git worktree add`, a rebase stopped on a conflict): nothing can tell
//!   who wrote it, so it is quarantined, not lost, and the journal names where it went.

use std::sync::Arc;
use std::time::Duration;

use agp_contracts::events::SandboxGitMetadataRemoved;
use agp_gateway::SessionMode;
use agp_sandbox::GitMetadataGuard;

use crate::mediate::Mediator;
use crate::session::SessionState;

/// How often a live gate-mode session's git directory is scrubbed without a hook event.
pub(crate) const SCRUB_EVERY: Duration = Duration::from_secs(3);

/// A gate-mode session's git metadata guard. The lock is held from a scrub until its journal
/// entry is written: two scrubs never move the same entry, and a hook event answered after a
/// scrub finds what any earlier scrub removed already journaled.
pub(crate) type Watch = tokio::sync::Mutex<WatchState>;

#[derive(Debug, Default)]
pub(crate) struct WatchState {
    guard: Option<Arc<GitMetadataGuard>>,
    /// The last scrub's report, so that what cannot be removed is journaled once, not every
    /// few seconds for the rest of the session.
    last: Vec<String>,
}

/// Whether a scrub's report is news: something was removed, and it is not the same report as
/// the previous scrub's (every successful move names a fresh quarantine folder, so only an
/// entry that could not be removed, still there, repeats).
fn worth_journaling(last: &mut Vec<String>, removed: &[String]) -> bool {
    let news = !removed.is_empty() && removed != last.as_slice();
    *last = removed.to_vec();
    news
}

/// Takes the snapshot of a gate-mode session's git metadata and starts the periodic scrub.
pub(crate) async fn start(m: &Arc<Mediator>, state: &Arc<SessionState>) {
    if state.mode != SessionMode::Gate {
        return;
    }
    let repo = state.repo.clone();
    let guard = tokio::task::spawn_blocking(move || GitMetadataGuard::watch(&repo)).await;
    match guard {
        Ok(Ok(guard)) => {
            state.git_watch.lock().await.guard = Some(Arc::new(guard));
        }
        Ok(Err(e)) => tracing::warn!("git metadata of session {} not watched: {e}", state.id),
        Err(e) => tracing::warn!("git metadata of session {} not watched: {e}", state.id),
    }
    let (m, state) = (m.clone(), state.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(SCRUB_EVERY) => {}
                () = state.ended() => return,
            }
            if !on_event(&m, &state, "periodic", None).await {
                return;
            }
        }
    });
}

/// Scrubs a live gate-mode session's git directory on a hook event and journals what was
/// removed. `false` once the session has ended (nothing of it is journaled after its end).
pub(crate) async fn on_event(
    m: &Mediator,
    state: &Arc<SessionState>,
    when: &str,
    call_id: Option<&str>,
) -> bool {
    if state.mode != SessionMode::Gate {
        return true;
    }
    let _admitted = state.gate.read().await;
    if state.is_ended() {
        return false;
    }
    scrub_and_journal(m, state, when, call_id).await;
    true
}

/// The last scrub, from the session's end (which holds the session's gate): what the agent
/// planted goes to the git directory's quarantine before the integrity check looks.
pub(crate) async fn finish(m: &Mediator, state: &Arc<SessionState>) {
    if state.mode == SessionMode::Gate {
        scrub_and_journal(m, state, "session_end", None).await;
    }
}

async fn scrub_and_journal(
    m: &Mediator,
    state: &Arc<SessionState>,
    when: &str,
    call_id: Option<&str>,
) {
    let mut watch = state.git_watch.lock().await;
    let Some(guard) = watch.guard.clone() else {
        return;
    };
    let removed = tokio::task::spawn_blocking(move || guard.scrub())
        .await
        .unwrap_or_else(|e| vec![format!("(the scrub failed: {e})")]);
    if !worth_journaling(&mut watch.last, &removed) {
        return;
    }
    let body = SandboxGitMetadataRemoved {
        call_id: call_id.map(str::to_owned),
        removed,
        scrubbed_by: Some("daemon".into()),
        when: Some(when.to_owned()),
    };
    if let Err(e) = m.record(Some(&state.id), &body).await {
        tracing::error!("could not journal removed git metadata: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::worth_journaling;

    #[test]
    fn what_cannot_be_removed_is_journaled_once_until_it_changes() {
        let mut last = Vec::new();
        let stuck = vec![".git/x (COULD NOT BE REMOVED: new file: busy)".to_string()];
        assert!(!worth_journaling(&mut last, &[]));
        assert!(worth_journaling(&mut last, &stuck));
        assert!(!worth_journaling(&mut last, &stuck));
        assert!(!worth_journaling(&mut last, &stuck));
        let moved = vec![
            ".git/commondir (new file: moved to .git/agp-quarantine/1-2-0/commondir)".to_string(),
        ];
        assert!(worth_journaling(&mut last, &moved));
        assert!(worth_journaling(&mut last, &stuck));
        // Gone, then back: news again.
        assert!(!worth_journaling(&mut last, &[]));
        assert!(worth_journaling(&mut last, &stuck));
    }
}
