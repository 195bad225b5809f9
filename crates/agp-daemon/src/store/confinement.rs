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

    /// Active sessions whose agent is not confined, or not known to be.
    pub fn unconfined_live_sessions(&self) -> Result<Vec<UnconfinedSession>, StoreError> {
        super::select_all(
            &self.conn(),
            "SELECT id, intendant, repo, agent_confined FROM sessions
             WHERE status = 'active' AND (agent_confined IS NULL OR agent_confined = 0)
             ORDER BY started_at_ms, id",
            [],
            |r| {
                from_row!(
                    r,
                    UnconfinedSession {
                        id,
                        intendant,
                        repo,
                        agent_confined
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

    #[test]
    fn unconfined_and_unknown_live_sessions_are_listed_until_they_end() {
        let store = Store::open_in_memory().unwrap();
        open(&store, "s-hook");
        store.set_agent_confined("s-hook", false).unwrap();
        open(&store, "s-sandboxed");
        store.set_agent_confined("s-sandboxed", true).unwrap();
        // Opened by an agp that did not record it (or crashed before it did).
        open(&store, "s-old");
        let ids = |s: &Store| -> Vec<(String, Option<bool>)> {
            s.unconfined_live_sessions()
                .unwrap()
                .into_iter()
                .map(|u| (u.id, u.agent_confined))
                .collect()
        };
        assert_eq!(
            ids(&store),
            [("s-hook".into(), Some(false)), ("s-old".into(), None)]
        );
        assert!(store.end_session("s-hook", "completed", 1, 2).unwrap());
        assert!(store.end_session("s-old", "completed", 1, 2).unwrap());
        assert!(ids(&store).is_empty());
    }
}
