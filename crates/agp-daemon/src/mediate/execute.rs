//! Acting on an allowed call: running it in the sandbox (proxy-exec) or recording the result the
//! agent reports (gate).

use super::*;

impl Mediator {
    /// Runs an allowed call in the session's sandbox and journals its result. The result is
    /// only returned once journaled; otherwise the output is withheld.
    pub(super) async fn execute(
        &self,
        session: &Arc<SessionState>,
        call: &ToolCall,
        input_sha256: &str,
        abandon: &Abandon,
    ) -> ExecResult {
        let ran = match session.sandbox.clone() {
            _ if abandon.is_raised() => Err(ToolError::Invalid(
                "the agent disconnected before the call ran; not run".into(),
            )),
            None => Err(ToolError::Invalid("this session has no sandbox".into())),
            Some(sandbox) => {
                let tool = call.tool.clone();
                let input = call.input.clone();
                let cwd = exec::call_cwd(&session.repo, &call.cwd.to_string_lossy());
                let timeout = self.config.exec_timeout;
                let secrets = self.config.secrets.clone();
                tokio::task::spawn_blocking(move || {
                    exec::run_tool_with_secrets(
                        sandbox.as_ref(),
                        &tool,
                        &input,
                        &cwd,
                        timeout,
                        &secrets,
                    )
                })
                .await
                .unwrap_or_else(|e| Err(ToolError::Invalid(format!("sandbox task failed: {e}"))))
            }
        };
        // What the sandbox enforced on the way: journaled on their own, and told to the agent.
        let (limit, refused, removed) = match &ran {
            Ok(out) => (
                out.limit_exceeded.clone(),
                false,
                out.git_metadata_removed.clone(),
            ),
            Err(ToolError::Sandbox(SandboxError::LimitExceeded(hit))) => {
                (Some(hit.clone()), true, Vec::new())
            }
            Err(_) => (None, false, Vec::new()),
        };
        let (exit_code, timed_out, mut raw, cut_by_sandbox, error) = match ran {
            Ok(out) => (
                out.exit_code,
                out.timed_out,
                // Before anything reads it (hash, journal, the agent): no secret's value leaves.
                self.config.secrets.redact(&out.output),
                out.truncated,
                None,
            ),
            Err(e) => (None, false, Vec::new(), false, Some(e.to_string())),
        };
        if let (Some(hit), false) = (&limit, refused) {
            raw.extend_from_slice(format!("\nagp: {}\n", hit.message).as_bytes());
        }
        if !removed.is_empty() {
            raw.extend_from_slice(
                format!(
                    "\nagp: git metadata is not the agent's to change; removed: {}\n",
                    removed.join("; ")
                )
                .as_bytes(),
            );
        }
        if let Some(hit) = &limit {
            let body = ev::SandboxLimitExceeded::new(&call.id, hit, refused);
            if let Err(e) = self.record(Some(&session.id), &body).await {
                tracing::error!("could not journal a sandbox limit hit: {e}");
            }
        }
        if !removed.is_empty() {
            let body = ev::SandboxGitMetadataRemoved {
                call_id: Some(call.id.clone()),
                removed: removed.clone(),
                scrubbed_by: None,
                when: None,
            };
            if let Err(e) = self.record(Some(&session.id), &body).await {
                tracing::error!("could not journal removed git metadata: {e}");
            }
        }
        let output_sha256 = sha256_hex(&raw);
        let text = match &error {
            Some(e) => format!("agp: tool not run: {e}"),
            None => String::from_utf8_lossy(&raw).into_owned(),
        };
        let redacted = self.parts.redactor.redact_text(&text);
        let (shown, cut) = truncate_utf8(&redacted, self.config.output_limit);
        let result = ExecResult {
            id: call.id.clone(),
            ok: error.is_none() && exit_code == Some(0) && !timed_out,
            exit_code,
            timed_out,
            output: shown.to_owned(),
            truncated: cut || cut_by_sandbox,
            output_sha256,
        };
        let body = ev::ToolCallResult {
            call_id: call.id.clone(),
            tool: call.tool.clone(),
            input_sha256: input_sha256.to_owned(),
            ok: result.ok,
            exit_code: Some(exit_code),
            timed_out: Some(timed_out),
            error: Some(error),
            output: result.output.clone(),
            truncated: result.truncated,
            output_bytes: Some(raw.len() as u64),
            output_sha256: result.output_sha256.clone(),
            reported_by: "sandbox".into(),
        };
        match self.record(Some(&session.id), &body).await {
            Ok(()) => result,
            Err(e) => ExecResult {
                ok: false,
                output: format!("agp could not journal the result ({e}); output withheld"),
                truncated: false,
                ..result
            },
        }
    }

    /// Gate mode: journals what the agent reports a tool produced; `reported_by` says whether
    /// its sender was shown to be the harness's hook (`harness`) or not (`agent`).
    pub(crate) async fn record_result(
        &self,
        session: &Arc<SessionState>,
        result: ToolCallResult,
        reported_by: &str,
    ) -> Result<(), Rejection> {
        crate::git_scrub::on_event(self, session, "after_call", Some(&result.id)).await;
        let valid_hash = result.output_sha256.len() == 64
            && result
                .output_sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid_hash {
            return Err(Rejection::new(
                ErrorCode::InvalidCall,
                "output_sha256 must be 64 lowercase hex digits",
            ));
        }
        let Some(awaited) = session.take_expected(&result.id) else {
            if session.was_reported(&result.id) {
                // The same call reported again (another post event of the harness): its
                // first result stands, nothing more to journal.
                return Ok(());
            }
            return Err(Rejection::new(
                ErrorCode::UnknownCall,
                format!(
                    "no allowed call {:?} awaits a result in this session",
                    result.id
                ),
            ));
        };
        let redacted = self.parts.redactor.redact_text(&result.output);
        let (shown, cut) = truncate_utf8(&redacted, self.config.output_limit);
        // The harness says which input the tool ran with; only the approved one links the
        // result to the approved call. Anything else (another input, or none named) is a
        // mismatch of its own kind, so no reader of the journal takes it for the call's result.
        let (kind, body) = if result.input_sha256.as_deref() == Some(&awaited.input_sha256) {
            let body = ev::ToolCallResult {
                call_id: result.id,
                tool: awaited.tool,
                input_sha256: awaited.input_sha256,
                ok: result.ok,
                exit_code: None,
                timed_out: None,
                error: None,
                output: shown.to_owned(),
                truncated: cut,
                output_bytes: None,
                output_sha256: result.output_sha256,
                reported_by: reported_by.into(),
            };
            (ev::ToolCallResult::KIND, body.to_body())
        } else {
            let reported = result
                .input_sha256
                .as_deref()
                .map(|h| truncate_utf8(h, 128).0.to_owned());
            let reason = match &reported {
                Some(_) => "the reported result ran with an input other than the approved one",
                None => "the reported result does not say which input it ran with",
            };
            let body = ev::ToolCallResultMismatch {
                call_id: result.id,
                tool: awaited.tool,
                approved_input_sha256: awaited.input_sha256,
                reported_input_sha256: reported,
                reason: reason.to_owned(),
                ok: result.ok,
                output: shown.to_owned(),
                truncated: cut,
                output_sha256: result.output_sha256,
                reported_by: reported_by.into(),
            };
            (ToolCallResultMismatch::KIND, body.to_body())
        };
        self.journal(kind, Some(&session.id), body)
            .await
            .map_err(|e| Rejection::new(ErrorCode::Internal, format!("result not journaled: {e}")))
    }
}
