//! Session lifecycle on the daemon: opening (sandbox, preflight, token, journal), ending (integrity
//! check, cancelled approvals), and the lease heartbeat.

use super::*;

/// Longest wait for a channel to withdraw one cancelled prompt.
const CHANNEL_CANCEL_WAIT: Duration = Duration::from_secs(2);

/// Writes a 0600 file atomically (temporary file, fsync, rename).
pub(super) fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

pub(super) fn eval_ctx(m: &Mediator, repo: &Path) -> EvalContext {
    EvalContext {
        project_root: repo.to_path_buf(),
        home: m.config.user_home.clone(),
        agp_home: m.config.agp_home.clone(),
    }
}

/// Spawns a session sandbox and proves it with a preflight (journaled either way). A failed
/// preflight refuses the session.
pub(super) async fn spawn_sandbox(
    m: &Arc<Mediator>,
    session: &str,
    repo: &Path,
) -> Result<Arc<dyn crate::exec::SessionSandbox>, DaemonError> {
    let Some(factory) = m.parts.sandbox.clone() else {
        return Err(DaemonError::Session(
            "proxy-exec needs a sandbox and none is configured".into(),
        ));
    };
    let mut spec = SandboxSpec::new(session, repo);
    spec.env = m.config.sandbox_env.clone();
    spec.limits = m.config.sandbox_limits.clone();
    let isolation = factory.isolation();
    let proven = tokio::task::spawn_blocking(move || {
        let sandbox = factory.open(&spec)?;
        match sandbox.preflight() {
            Ok(report) => Ok((sandbox, report)),
            Err(e) => {
                let _ = sandbox.teardown();
                Err(e)
            }
        }
    })
    .await
    .map_err(|e| DaemonError::Session(e.to_string()))?;
    match proven {
        Ok((sandbox, report)) => {
            let body = SandboxPreflight::proven(session, isolation.clone(), report.clone());
            if let Err(e) = m.record(Some(session), &body).await {
                let _ = sandbox.teardown();
                return Err(e.into());
            }
            if !report.passed {
                let _ = sandbox.teardown();
                return Err(DaemonError::Session(format!(
                    "sandbox preflight failed: {}",
                    report.failure_summary()
                )));
            }
            Ok(sandbox)
        }
        Err(e) => {
            let body = SandboxPreflight::failed(session, isolation.clone(), e.to_string());
            m.record(Some(session), &body).await?;
            Err(DaemonError::Session(e.to_string()))
        }
    }
}

/// Opens a session. `agent_sandboxed`: the opener launched the (gate-mode) agent inside agp's
/// sandbox; only an in-process opener can say so; over the gateway it is never believed.
pub(crate) async fn open_session(
    m: &Arc<Mediator>,
    params: SessionParams,
    identity: Option<Value>,
    agent_sandboxed: bool,
) -> Result<SessionInfo, DaemonError> {
    let repo = std::fs::canonicalize(&params.repo)
        .map_err(|e| DaemonError::Session(format!("repository {}: {e}", params.repo.display())))?;
    if !repo.is_dir() {
        return Err(DaemonError::Session(format!(
            "repository {} is not a directory",
            repo.display()
        )));
    }
    if params.intendant.is_empty() || params.intendant.len() > 64 || params.task.len() > 64 * 1024 {
        return Err(DaemonError::Session(
            "intendant must be 1..=64 bytes and task at most 64 KiB".into(),
        ));
    }
    let rnd = |n| random_hex(n).map_err(|e| DaemonError::Random(e.to_string()));
    let id = format!("s-{}", rnd(8)?);
    let token = rnd(32)?;
    let token_sha256 = sha256_hex(token.as_bytes());
    // Before anything of the session can run: what is already there is not the agent's doing.
    let baseline = crate::integrity::snapshot(m, &id, &repo).await;

    let sandbox = match params.mode {
        SessionMode::Gate => None,
        SessionMode::ProxyExec => Some(spawn_sandbox(m, &id, &repo).await?),
    };
    let isolation = m.parts.sandbox.as_ref().map(|f| f.isolation());
    // A proxy-exec agent acts only through calls agp runs in the sandbox (unless that is
    // `none`); a gate-mode agent runs wherever its opener started it.
    let agent_confined = match params.mode {
        SessionMode::ProxyExec => isolation.as_ref().is_some_and(|i| i.provider != "none"),
        SessionMode::Gate => agent_sandboxed,
    };
    // The task is user text: it may carry a secret, so only its redacted form is kept.
    let task = m.parts.redactor.redact_text(&params.task);
    let row = (
        id.clone(),
        params.intendant.clone(),
        repo.to_string_lossy().into_owned(),
        task.clone(),
        params.mode.as_str(),
        token_sha256.clone(),
        m.owner.clone(),
    );
    let inserted = async {
        let s = &m.store;
        let fencing = s
            .insert_session(
                &row.0,
                &row.1,
                &row.2,
                &row.3,
                row.4,
                &row.5,
                &row.6,
                now_ms(),
            )
            .await?;
        // Not recorded (a crash in between): read as not confined, the safe side.
        s.set_agent_confined(&row.0, agent_confined).await?;
        Ok::<_, crate::store::StoreError>(fencing)
    }
    .await;
    let fencing = match inserted {
        Ok(f) => f,
        Err(e) => {
            if let Some(sb) = sandbox {
                let _ = sb.teardown();
            }
            return Err(e.into());
        }
    };
    let started = SessionStarted {
        session: Some(id.clone()),
        task: Some(task),
        mode: Some(params.mode.as_str().to_owned()),
        lease_owner: Some(m.owner.clone()),
        fencing_token: Some(fencing),
        policy_sha256: Some(m.parts.policy.policy_sha256()),
        isolation: Some(isolation),
        approval_channel: Some(m.parts.channel.name().to_owned()),
        approval_timeout_secs: Some(m.config.approval_timeout.as_secs()),
        started_by: Some(m.config.operator.clone()),
        intendant_identity: identity,
        policy_mode: Some(m.config.policy_mode),
        agent_confined: Some(agent_confined),
        ..SessionStarted::new(params.intendant.clone(), repo.clone())
    };
    if let Err(e) = m.record(Some(&id), &started).await {
        if let Some(sb) = sandbox {
            let _ = sb.teardown();
        }
        let _ = m.store.end_session(&id, "failed", 1, now_ms()).await;
        return Err(e.into());
    }
    let state = Arc::new(SessionState::new(
        id.clone(),
        params.mode,
        repo.clone(),
        fencing,
        sandbox,
        eval_ctx(m, &repo),
    ));
    state.set_baseline(baseline);
    crate::git_scrub::start(m, &state).await;
    m.sessions.insert(token_sha256, state);
    m.project(Some(&id), started.into()).await;
    Ok(SessionInfo {
        id,
        token,
        mode: params.mode,
        repo,
    })
}

pub(crate) async fn end_session(
    m: &Arc<Mediator>,
    state: &Arc<SessionState>,
    status: &str,
) -> Result<(), DaemonError> {
    if !state.mark_ended() {
        return Ok(());
    }
    // Calls already entering the journal finish first; later ones see the session ended.
    let _closing = state.gate.write().await;
    if let Some(sb) = state.sandbox.clone() {
        if let Err(e) = tokio::task::spawn_blocking(move || sb.teardown())
            .await
            .unwrap_or(Ok(()))
        {
            tracing::warn!("sandbox teardown failed: {e}");
        }
    }
    cancel_pending(m, &state.id, status).await?;
    // Withdraws prompts still on a channel; their outcome was settled just above.
    state.signal_ended();
    // After the teardown nothing of the sandbox runs any more to race the check.
    crate::git_scrub::finish(m, state).await;
    let integrity = crate::integrity::check(m, &state.id, &state.repo, state.take_baseline()).await;
    let ended = m
        .store
        .end_session(&state.id, status, state.fencing_token, now_ms())
        .await?;
    m.record(Some(&state.id), &integrity).await?;
    // "Allow for this session" answers end with it.
    if let Err(e) = m.store.forget_remembered(&state.id).await {
        tracing::warn!("cannot forget the session's remembered approvals: {e}");
    }
    let end = SessionEnded {
        session: state.id.clone(),
        status: status.to_owned(),
        lease_held: ended,
    };
    m.record(Some(&state.id), &end).await?;
    m.project(Some(&state.id), end.into()).await;
    Ok(())
}

/// Settles the session's pending approvals as cancelled (journaled as denials), so no prompt
/// outlives its session and no later answer can apply to it.
pub(crate) async fn cancel_pending(
    m: &Arc<Mediator>,
    session: &str,
    status: &str,
) -> Result<(), DaemonError> {
    let pending = m.store.pending().await?;
    for row in pending.into_iter().filter(|r| r.session == session) {
        if !m
            .settle_pending(&row.session, &row.call_id, &row.input_sha256, "cancelled")
            .await?
        {
            continue;
        }
        let denied = ApprovalDenied {
            cancelled: Some(true),
            ..ApprovalDenied::unavailable(
                &row.call_id,
                &row.input_sha256,
                m.parts.channel.name(),
                format!("the session ended ({status}) before a decision"),
            )
        };
        m.record(Some(session), &denied).await?;
        // The prompt is withdrawn where the approvers see it (best effort, after the record).
        if let Ok(request) =
            serde_json::from_str::<agp_contracts::ApprovalRequest>(&row.request_json)
        {
            let shown = format!("cancelled: session {status}");
            // Bounded: a channel that is down must not hold up the session's end.
            let cancelled = m.parts.channel.cancel(&request, &shown);
            if tokio::time::timeout(CHANNEL_CANCEL_WAIT, cancelled)
                .await
                .is_err()
            {
                tracing::warn!(
                    "the approval channel did not withdraw {} in time",
                    row.call_id
                );
            }
        }
    }
    Ok(())
}

pub(super) async fn heartbeat(m: Arc<Mediator>) {
    let every = (m.config.lease_ttl / 3).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = m.store.heartbeat(&m.owner, now_ms()).await {
            tracing::warn!("lease heartbeat failed: {e}");
        }
    }
}
