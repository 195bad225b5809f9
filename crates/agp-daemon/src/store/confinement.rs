//! Whether each session's agent is confined by agp's sandbox, recorded when it opens: a
//! running daemon does not reload its policy while an agent that could have rewritten the
//! file (one running on the host as the operator) is live.

use rusqlite::params;

use super::*;

/// A live session whose agent is not known to be confined by agp's sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnconfinedSession {
    pub id: String,
    pub intendant: String,
    pub repo: String,
    /// `None`: opened by an agp that did not record it.
    pub agent_confined: Option<bool>,
    /// When it ended; `None` while it lives.
    pub ended_at_ms: Option<i64>,
}

impl Store {
    /// Records whether `session`'s agent is confined (set once, when the session opens).
    pub fn set_agent_confined(&self, session: &str, confined: bool) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE sessions SET agent_confined = ?2 WHERE id = ?1",
            params![session, confined],
        )?;
        Ok(())
    }

    /// Sessions whose agent is not confined, or not known to be, that are active, or (with
    /// `since_ms`) ended at or after `since_ms`: their agent may have acted since then.
    pub fn unconfined_sessions(
        &self,
        since_ms: Option<i64>,
    ) -> Result<Vec<UnconfinedSession>, StoreError> {
        super::select_all(
            &self.conn(),
            "SELECT id, intendant, repo, agent_confined, ended_at_ms FROM sessions
             WHERE (agent_confined IS NULL OR agent_confined = 0)
               AND (status = 'active' OR (?1 IS NOT NULL AND ended_at_ms >= ?1))
             ORDER BY started_at_ms, id",
            [since_ms],
            |r| {
                from_row!(
                    r,
                    UnconfinedSession {
                        id,
                        intendant,
                        repo,
                        agent_confined,
                        ended_at_ms
                    }
                )
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(store: &Store, id: &str) {
        store
            .insert_session(
                id,
                "claude-code",
                "/r",
                "",
                "gate",
                &format!("t-{id}"),
                "o",
                1,
            )
            .unwrap();
    }

    fn ids(store: &Store, since: Option<i64>) -> Vec<(String, Option<bool>)> {
        store
            .unconfined_sessions(since)
            .unwrap()
            .into_iter()
            .map(|u| (u.id, u.agent_confined))
            .collect()
    }

    #[test]
    fn unconfined_and_unknown_sessions_are_listed_while_live_and_since_a_time() {
        let store = Store::open_in_memory().unwrap();
        open(&store, "s-hook");
        store.set_agent_confined("s-hook", false).unwrap();
        open(&store, "s-sandboxed");
        store.set_agent_confined("s-sandboxed", true).unwrap();
        // Opened by an agp that did not record it (or crashed before it did).
        open(&store, "s-old");
        let both = [("s-hook".into(), Some(false)), ("s-old".into(), None)];
        assert_eq!(ids(&store, None), both);
        assert!(store.end_session("s-hook", "completed", 1, 20).unwrap());
        assert!(store.end_session("s-old", "completed", 1, 30).unwrap());
        assert!(store
            .end_session("s-sandboxed", "completed", 1, 30)
            .unwrap());
        assert!(ids(&store, None).is_empty());
        // Ended at or after the time asked about: their agent may have acted since.
        assert_eq!(ids(&store, Some(20)), both);
        assert_eq!(ids(&store, Some(25)), [("s-old".into(), None)]);
        assert!(ids(&store, Some(31)).is_empty());
    }
}
