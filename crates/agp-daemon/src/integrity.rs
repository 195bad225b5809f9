//! The repository integrity check around a session (see `agp-integrity`): a snapshot of what
//! dangerous entries the repository already holds when the session opens, and at its end a
//! check that neutralizes what the session left and is journaled as `session.integrity`.
//!
//! The snapshot is also written to `<agp home>/integrity/<session>.json`, so a daemon that
//! takes over a session (or ends one after a restart) still tells pre-existing items from the
//! session's. Without it every finding is treated as the session's: neutralized, not kept.

use std::path::{Path, PathBuf};

use agp_contracts::events::SessionIntegrity;
use agp_integrity::{Action, Baseline, Limits, Origin, Report};

use crate::mediate::Mediator;

/// Findings listed in one `session.integrity` entry (all are counted and neutralized).
const MAX_JOURNALED_FINDINGS: usize = 200;

fn baseline_path(m: &Mediator, session: &str) -> PathBuf {
    m.config.integrity_dir.join(format!("{session}.json"))
}

/// Where the check of `session` moves what it neutralizes.
pub(crate) fn quarantine_dir(m: &Mediator, session: &str) -> PathBuf {
    m.config.quarantine_dir.join(session)
}

/// Takes (and stores) the start-of-session snapshot of `repo`.
pub(crate) async fn snapshot(m: &Mediator, session: &str, repo: &Path) -> Option<Baseline> {
    let (repo, path) = (repo.to_path_buf(), baseline_path(m, session));
    let taken = tokio::task::spawn_blocking(move || {
        let baseline = agp_integrity::snapshot(&repo, &Limits::default());
        if let Err(e) = store(&path, &baseline) {
            tracing::warn!(
                "cannot store the integrity snapshot {}: {e}",
                path.display()
            );
        }
        baseline
    })
    .await;
    taken.ok()
}

fn store(path: &Path, baseline: &Baseline) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    std::fs::write(path, serde_json::to_vec(baseline)?)
}

/// Checks `repo` at the end of `session`: the body of `session.integrity`.
pub(crate) async fn check(
    m: &Mediator,
    session: &str,
    repo: &Path,
    baseline: Option<Baseline>,
) -> SessionIntegrity {
    let (repo, quarantine) = (repo.to_path_buf(), quarantine_dir(m, session));
    let stored = baseline_path(m, session);
    let checked = tokio::task::spawn_blocking(move || {
        let baseline = baseline.or_else(|| {
            let text = std::fs::read(&stored).ok()?;
            serde_json::from_slice(&text).ok()
        });
        let report =
            agp_integrity::check(&repo, baseline.as_ref(), &quarantine, &Limits::default());
        let _ = std::fs::remove_file(&stored);
        (report, quarantine)
    })
    .await;
    match checked {
        Ok((mut report, quarantine)) => {
            let (by_session, not_neutralized) = (report.by_session(), report.not_neutralized());
            // A session can make entries by the million; the journal keeps the counts and the
            // findings that matter most (not neutralized, then the session's) up to a bound.
            let total = report.findings.len();
            report.findings.sort_by_key(|f| {
                (
                    !matches!(f.action, Action::NotNeutralized { .. }),
                    f.origin == Origin::PreExisting,
                )
            });
            report.findings.truncate(MAX_JOURNALED_FINDINGS);
            SessionIntegrity {
                session: session.to_owned(),
                findings_total: Some(total as u64),
                by_session: Some(by_session as u64),
                not_neutralized: Some(not_neutralized as u64),
                quarantine: Some(quarantine),
                report,
            }
        }
        Err(e) => SessionIntegrity {
            session: session.to_owned(),
            findings_total: None,
            by_session: None,
            not_neutralized: None,
            quarantine: None,
            report: Report::failed(e),
        },
    }
}
