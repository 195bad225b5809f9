//! [`ConsoleData`] served from the journal index (`agp-journal-index`): pages are SQLite reads
//! of what was indexed, and [`ConsoleData::catch_up`] reads only what the journal gained.

use std::path::Path;

use agp_journal_index as idx;

use crate::data::{
    ApprovalInfo, CallRow, ConsoleData, DataError, EntryView, EventRow, JournalStats, Page,
    ResultInfo, SessionQuery, SessionRow, TimelineQuery,
};

/// Longest event body shown in the list (the journal keeps it whole).
const EVENT_SUMMARY_CHARS: usize = 400;

pub struct IndexData {
    index: idx::JournalIndex,
}

impl IndexData {
    /// Opens (or creates) the index file for `journal_dir`; reads nothing yet.
    pub fn open(journal_dir: &Path, index_path: &Path) -> Result<Self, DataError> {
        let index = idx::JournalIndex::open(journal_dir, index_path)?;
        Ok(IndexData { index })
    }
}

impl From<idx::IndexError> for DataError {
    fn from(e: idx::IndexError) -> Self {
        DataError::Failed(format!("journal index: {e}"))
    }
}

/// A cursor the pages handed out; anything else starts from the beginning.
fn cursor(c: Option<&String>) -> Option<u64> {
    c.and_then(|c| c.parse().ok())
}

fn next(n: Option<u64>) -> Option<String> {
    n.map(|n| n.to_string())
}

fn session_row(s: idx::SessionSummary) -> SessionRow {
    let mode = match (s.mode, s.policy_mode) {
        (Some(m), Some(p)) => format!("{m}, {p}"),
        (Some(m), None) => m,
        (None, Some(p)) => p,
        (None, None) => String::new(),
    };
    let state = match s.end_status {
        Some(st) if !st.is_empty() && st != s.state => format!("{} ({st})", s.state),
        _ => s.state,
    };
    SessionRow {
        id: s.id,
        agent: s.agent.unwrap_or_default(),
        repo: s.repo.unwrap_or_default(),
        task: s.task.unwrap_or_default(),
        operator: s.operator.unwrap_or_default(),
        mode,
        allowed: s.allowed,
        denied: s.denied,
        approved: s.approved,
        pending: s.pending,
        state,
        started: s.started_ts.unwrap_or_default(),
        ended: s.ended_ts,
    }
}

fn result_info(r: idx::CallResult) -> ResultInfo {
    let status = if r.timed_out == Some(true) {
        "timed out".to_owned()
    } else if let Some(e) = r.error {
        format!("error: {e}")
    } else {
        match r.ok {
            Some(true) => "ok".to_owned(),
            Some(false) => "failed".to_owned(),
            None => "reported".to_owned(),
        }
    };
    let by = r.reported_by.map(|b| format!(" (reported by {b})"));
    ResultInfo {
        exit_status: r.exit_code,
        output_sha256: r.output_sha256,
        status: status + by.as_deref().unwrap_or(""),
    }
}

fn call_row(c: idx::CallRow) -> CallRow {
    let approval = c.approval.map(|decision| {
        let by = c
            .approvers
            .iter()
            .map(|a| {
                if a.name.is_empty() {
                    a.id.as_str()
                } else {
                    a.name.as_str()
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let via = c
            .approval_channel
            .clone()
            .or_else(|| c.approvers.first().map(|a| a.via.clone()))
            .unwrap_or_default();
        ApprovalInfo { decision, by, via }
    });
    let mut reason = c.reason.unwrap_or_default();
    if let Some(shadow) = c.shadow_verdict {
        reason = format!("{reason} (shadow: would {shadow})");
    }
    CallRow {
        seq: c.seq,
        call_id: c.call_id,
        tool: c.tool.unwrap_or_default(),
        input: c.input_summary.unwrap_or_default(),
        verdict: c.verdict.unwrap_or_default(),
        rule: c.rule_id,
        reason,
        approval,
        result: c.result.map(result_info),
        egress: c.egress,
        outcome: c.outcome.unwrap_or_default(),
        covered: c.covered,
    }
}

impl ConsoleData for IndexData {
    fn catch_up(&self) -> Result<u64, DataError> {
        let done = self.index.catch_up()?;
        if let Some(why) = &done.rebuilt {
            tracing::warn!("console: the journal index was rebuilt: {why}");
        }
        Ok(done.entries)
    }

    fn stats(&self) -> Result<JournalStats, DataError> {
        let s = self.index.stats()?;
        Ok(JournalStats {
            entries: s.entries,
            bytes: s.bytes,
            sessions: s.sessions,
            checkpoint_size: s.checkpoint.as_ref().map(|c| c.size),
            checkpoint_root: s.checkpoint.as_ref().map(|c| c.root.clone()),
            checkpoint_problem: s.checkpoint.and_then(|c| c.problem),
            not_covered: s.not_covered,
            key_id: s.key_id,
            origin: s.origin,
        })
    }

    fn sessions(&self, q: &SessionQuery) -> Result<Page<SessionRow>, DataError> {
        let page = self.index.sessions(&idx::SessionQuery {
            before: cursor(q.cursor.as_ref()),
            limit: Some(q.limit),
            ..idx::SessionQuery::default()
        })?;
        Ok(Page {
            items: page.items.into_iter().map(session_row).collect(),
            next: next(page.next),
        })
    }

    fn session(&self, id: &str) -> Result<Option<SessionRow>, DataError> {
        // The index finds sessions by substring: page through the few that contain the id.
        let mut before = None;
        loop {
            let page = self.index.sessions(&idx::SessionQuery {
                before,
                limit: Some(idx::MAX_PAGE),
                text: Some(id.to_owned()),
                ..idx::SessionQuery::default()
            })?;
            if let Some(s) = page.items.into_iter().find(|s| s.id == id) {
                return Ok(Some(session_row(s)));
            }
            match page.next {
                Some(n) => before = Some(n),
                None => return Ok(None),
            }
        }
    }

    fn timeline(&self, session: &str, q: &TimelineQuery) -> Result<Page<CallRow>, DataError> {
        let page = self.index.timeline(
            session,
            &idx::TimelineQuery {
                after: cursor(q.cursor.as_ref()),
                limit: Some(q.limit),
                verdict: q.verdict.clone(),
                tool: q.tool.clone(),
                text: q.text.clone(),
                outcome: None,
            },
        )?;
        Ok(Page {
            items: page.items.into_iter().map(call_row).collect(),
            next: next(page.next),
        })
    }

    fn session_events(&self, session: &str) -> Result<Vec<EventRow>, DataError> {
        let page = self.index.session_events(
            Some(session),
            &idx::EventQuery {
                kinds: vec![],
                after: None,
                limit: Some(idx::MAX_PAGE),
            },
        )?;
        Ok(page
            .items
            .into_iter()
            .map(|e| EventRow {
                seq: e.seq,
                kind: e.kind,
                summary: e.body.chars().take(EVENT_SUMMARY_CHARS).collect(),
                covered: e.covered,
            })
            .collect())
    }

    fn entry(&self, seq: u64) -> Result<Option<EntryView>, DataError> {
        Ok(self.index.entry(seq)?.map(|e| EntryView {
            seq: e.seq,
            line: e.line,
            leaf_hash: e.leaf_hash,
            covered: e.covered,
        }))
    }
}
