//! Appending: composing entries, and committing them alone or in groups.

use super::*;

impl JournalWriter {
    /// What opening found and did.
    pub fn open_summary(&self) -> &OpenSummary {
        &self.summary
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The verifier key in force.
    pub fn verifier_key(&self) -> crate::note::VerifierKey {
        self.shared.signer().verifier().clone()
    }

    /// Entries durably written so far.
    pub fn len(&self) -> u64 {
        self.shared.lock().durable
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn append_inner(
        &self,
        kind: &str,
        session: Option<&str>,
        body: &Value,
    ) -> Result<AppendReceipt, JournalError> {
        let arrival = Arrival::new(&self.shared);
        let body = check_event(kind, session, body)?;
        let mut st = self.shared.lock();
        arrival.settle(&mut st);
        check_open(&st)?;
        let receipt = self.compose(&mut st, kind, session, &body);
        self.await_durable(st, receipt.seq)?;
        Ok(receipt)
    }

    /// Appends `events` as consecutive entries (no other append lands between them) and returns
    /// once all of them are durable under the journal's durability: one wait, usually one
    /// fdatasync, for the lot. Every event is checked before any is queued, so a refused event
    /// appends none of them. An error means none of them may be relied upon.
    pub fn append_batch(
        &self,
        events: &[(&str, Option<&str>, Value)],
    ) -> Result<Vec<AppendReceipt>, JournalError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let arrival = Arrival::new(&self.shared);
        let bodies = events
            .iter()
            .map(|(kind, session, body)| check_event(kind, *session, body))
            .collect::<Result<Vec<String>, JournalError>>()?;
        let mut st = self.shared.lock();
        arrival.settle(&mut st);
        check_open(&st)?;
        let receipts: Vec<AppendReceipt> = events
            .iter()
            .zip(&bodies)
            .map(|((kind, session, _), body)| self.compose(&mut st, kind, *session, body))
            .collect();
        let last = receipts.last().map_or(0, |r| r.seq);
        self.await_durable(st, last)?;
        Ok(receipts)
    }

    /// Waits (leading commits when none runs) until every entry up to `last` is durable.
    /// `st` must still be the guard under which those entries were queued.
    pub(super) fn await_durable<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        last: u64,
    ) -> Result<(), JournalError> {
        st.waiters.push((last, std::thread::current()));
        self.commit_or_follow(st, last)
    }

    /// Leader/follower commit, with no hand-off to another thread: the first waiting appender
    /// to find no commit running writes and syncs what is queued (its own lines and any that
    /// arrived meanwhile; in group durability at most `group_max_entries`), then releases the
    /// appenders that commit covered. When it is done itself and others still wait, it wakes one
    /// of them to lead the next commit; the rest stay parked until a commit covers them.
    pub(super) fn commit_or_follow<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        last: u64,
    ) -> Result<(), JournalError> {
        let sh = &*self.shared;
        let group = sh.opts.durability == Durability::Group;
        let cap = sh.opts.group_max_entries.max(1);
        let me = std::thread::current().id();
        loop {
            if st.durable > last {
                return Ok(());
            }
            if let Some(f) = &st.failed {
                return Err(JournalError::Unavailable(f.clone()));
            }
            if st.committing {
                drop(st);
                std::thread::park();
                st = sh.lock();
                continue;
            }
            st.committing = true;
            if group {
                st = self.linger(st, cap);
            }
            // A queue holding more than a group has a mark at each group's end; take up to the
            // first. Without one (never expected) the whole queue is written, as when not full.
            let full_group = if group && st.queue.buf_entries > cap {
                st.queue.marks.pop_front()
            } else {
                None
            };
            let (mut buf, end, frontier) = if let Some(mark) = full_group {
                let rest = st.queue.buf.split_off(mark.bytes);
                let head = std::mem::replace(&mut st.queue.buf, rest);
                st.queue.buf_entries -= cap;
                for m in &mut st.queue.marks {
                    m.bytes -= mark.bytes;
                }
                // `buf_since` stays: the rest was queued later, so keeping the older time can
                // only shorten a later linger, never stretch it past `group_max_wait`.
                (head, mark.end, mark.frontier)
            } else {
                let spare = std::mem::take(&mut st.queue.spare);
                let all = std::mem::replace(&mut st.queue.buf, spare);
                st.queue.buf_entries = 0;
                st.queue.buf_since = None;
                st.queue.marks.clear();
                (all, st.chain.next_seq, st.chain.frontier.clone())
            };
            drop(st);

            let res = {
                let mut file = sh
                    .file
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                file.write_all(&buf).and_then(|()| file.sync_data())
            };
            let root = frontier.root();

            st = sh.lock();
            st.committing = false;
            match res {
                Ok(()) => {
                    st.durable = end;
                    st.to_seal = (end, root);
                    sh.seal_cv.notify_all();
                }
                Err(e) => {
                    // The in-memory chain is ahead of the file now: refuse everything until
                    // the journal is reopened.
                    st.failed = Some(format!("journal write failed: {e}; reopen the journal"));
                }
            }
            let failed = st.failed.is_some();
            let durable = st.durable;
            let mut released = Vec::new();
            st.waiters.retain(|(upto, t)| {
                let done = failed || *upto < durable;
                if done && t.id() != me {
                    released.push(t.clone());
                }
                !done
            });
            // The next leader is woken first, so its commit overlaps waking this one's batch.
            let mut wake = Vec::with_capacity(released.len() + 1);
            if failed || durable > last {
                if let Some((_, next)) = st.waiters.first() {
                    wake.push(next.clone());
                }
            }
            wake.append(&mut released);
            buf.clear();
            if buf.capacity() > st.queue.spare.capacity() {
                st.queue.spare = buf;
            }
            drop(st);
            for t in wake {
                t.unpark();
            }
            st = sh.lock();
        }
    }

    /// Group durability: the leader waits for appends that other threads are composing right
    /// now, so that they share this commit, while the commit has room and its oldest entry has
    /// been queued for less than `group_max_wait`. Nobody composing means no wait: a lone
    /// appender is never delayed.
    pub(super) fn linger<'a>(
        &self,
        mut st: MutexGuard<'a, State>,
        cap: usize,
    ) -> MutexGuard<'a, State> {
        let sh = &*self.shared;
        while st.queue.buf_entries < cap
            && sh.arriving.load(Ordering::Acquire) > 0
            && !st.closing
            && st.failed.is_none()
        {
            let Some(left) = st
                .queue
                .buf_since
                .and_then(|since| sh.opts.group_max_wait.checked_sub(since.elapsed()))
                .filter(|left| !left.is_zero())
            else {
                break;
            };
            st.lingering = true;
            st = sh
                .work
                .wait_timeout(st, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
            st.lingering = false;
        }
        st
    }

    /// Composes the next line under the lock and queues it for a commit.
    pub(super) fn compose(
        &self,
        st: &mut State,
        kind: &str,
        session: Option<&str>,
        body: &str,
    ) -> AppendReceipt {
        let seq = st.chain.next_seq;
        let prev_hex = if seq == 0 {
            GENESIS_PREV.to_string()
        } else {
            hex::encode(st.chain.prev)
        };
        let line = event::compose_line(
            seq,
            &event::now_rfc3339(),
            kind,
            session,
            &prev_hex,
            &st.chain.key_id,
            body,
        );
        let leaf = leaf_hash(line.as_bytes());
        st.chain.frontier.push(leaf);
        st.chain.prev = leaf;
        st.chain.next_seq += 1;
        st.queue.buf.extend_from_slice(line.as_bytes());
        st.queue.buf.push(b'\n');
        st.queue.buf_entries += 1;
        if st.queue.buf_since.is_none() {
            st.queue.buf_since = Some(Instant::now());
        }
        let sh = &*self.shared;
        if sh.opts.durability == Durability::Group {
            let cap = sh.opts.group_max_entries.max(1);
            if st.queue.buf_entries.is_multiple_of(cap) {
                let mark = Mark {
                    end: st.chain.next_seq,
                    bytes: st.queue.buf.len(),
                    frontier: st.chain.frontier.clone(),
                };
                st.queue.marks.push_back(mark);
                if st.lingering {
                    sh.work.notify_all();
                }
            }
        }
        AppendReceipt {
            seq,
            leaf_hash: leaf,
        }
    }
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl Journal for JournalWriter {
    fn append(
        &self,
        kind: &str,
        session: Option<&str>,
        body: Value,
    ) -> Result<AppendReceipt, JournalError> {
        self.append_inner(kind, session, &body)
    }

    fn append_batch(
        &self,
        events: &[(&str, Option<&str>, Value)],
    ) -> Result<Vec<AppendReceipt>, JournalError> {
        JournalWriter::append_batch(self, events)
    }
}

/// Checks an event and returns its canonical body.
pub(super) fn check_event(
    kind: &str,
    session: Option<&str>,
    body: &Value,
) -> Result<String, JournalError> {
    event::check_kind(kind).map_err(|e| JournalError::Refused(e.to_string()))?;
    if let Some(s) = session {
        event::check_session(s).map_err(|e| JournalError::Refused(e.to_string()))?;
    }
    event::canonical_body(body).map_err(|e| JournalError::Refused(e.to_string()))
}

pub(super) fn check_open(st: &State) -> Result<(), JournalError> {
    if let Some(f) = &st.failed {
        return Err(JournalError::Unavailable(f.clone()));
    }
    if st.closing {
        return Err(JournalError::Unavailable("the journal is closed".into()));
    }
    Ok(())
}

/// Counts an appender in `Shared::arriving` from the moment it enters `append` until its
/// lines are queued (or refused), so that a lingering group leader knows it is coming. Only
/// group durability lingers, so only it counts.
pub(super) struct Arrival<'a> {
    sh: &'a Shared,
    counted: bool,
}

impl<'a> Arrival<'a> {
    pub(super) fn new(sh: &'a Shared) -> Self {
        let counted = sh.opts.durability == Durability::Group;
        if counted {
            sh.arriving.fetch_add(1, Ordering::AcqRel);
        }
        Self { sh, counted }
    }

    /// Stops counting, under the state lock (so a lingering leader, which checks the count
    /// under that lock, cannot miss the wake-up). Call it before queueing under the same guard.
    pub(super) fn settle(mut self, st: &mut State) {
        self.leave(st);
    }

    pub(super) fn leave(&mut self, st: &State) {
        if std::mem::take(&mut self.counted) {
            let before = self.sh.arriving.fetch_sub(1, Ordering::AcqRel);
            if before == 1 && st.lingering {
                self.sh.work.notify_all();
            }
        }
    }
}

impl Drop for Arrival<'_> {
    fn drop(&mut self) {
        // Refused before reaching the lock.
        if self.counted {
            let st = self.sh.lock();
            self.leave(&st);
        }
    }
}
