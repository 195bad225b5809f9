//! What `agp run` tells the user about a scripted run: the progress lines, the summary, the
//! journal check, and the same as one JSON document with `--json`.

use std::io::Write as _;
use std::path::Path;

use agp_intendants::RunReport;

use crate::exit::Exit;

/// Where the run's lines go: with `--json`, stdout carries only the summary document and the
/// progress lines go to stderr.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Out {
    pub json: bool,
}

impl Out {
    pub fn line(self, text: &str) {
        // After a signal, the intendant thread's late lines would only confuse.
        if crate::cmd::interrupt::caught() {
            return;
        }
        // A closed terminal or pipe must not abort the run (and the session's clean-up).
        let _ = if self.json {
            writeln!(std::io::stderr(), "{text}")
        } else {
            writeln!(std::io::stdout(), "{text}")
        };
    }
}

/// What a run produced: its exit code and (once the session ran) the `--json` summary.
pub(crate) struct Ran {
    pub exit: Exit,
    pub summary: Option<serde_json::Value>,
}

/// Printed before the calls: what the mark after each call means.
pub(crate) const LEGEND: &str =
    "agp: after each call, ✓ = the outcome the script expects, ✗ = a different outcome";

/// The summary lines (or fields) and the exit code of a finished run.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish(
    agp: &str,
    flags: &[String],
    session: &str,
    repo: &Path,
    report: &RunReport,
    journal_dir: &Path,
    verifier: &Path,
    mode: &crate::cmd::mode_report::ModeTally,
    out: Out,
) -> Ran {
    let status = if report.failure().is_none() {
        "completed"
    } else {
        "failed"
    };
    let mut summary = base_summary(session, repo, status);
    summarize(session, report, &mut summary, out);
    if let Some(line) = mode.line() {
        out.line(&line);
    }
    summary["policy_mode"] = mode.json();
    // The integrity report and unlinked results, as journaled when the session ended.
    for line in flags {
        out.line(&format!("agp: {}", agp_channels::sanitize::escape(line)));
    }
    summary["flags"] = serde_json::json!(flags);
    let journal = verify(journal_dir, verifier, out);
    let verified = journal["verified"] == true;
    summary["journal"] = journal;
    if !out.json {
        println!(
            "next: `{agp} sessions show {session}` for the session's timeline, `{agp} verify` to check the journal"
        );
    }
    let bad = report.failure().is_some() || !report.mismatches().is_empty() || !verified;
    Ran {
        exit: if bad { Exit::Bad } else { Exit::Ok },
        summary: Some(summary),
    }
}

pub(crate) fn base_summary(session: &str, repo: &Path, status: &str) -> serde_json::Value {
    serde_json::json!({
        "session": session,
        "intendant": "scripted",
        "repo": repo,
        "status": status,
    })
}

fn summarize(session: &str, report: &RunReport, summary: &mut serde_json::Value, out: Out) {
    let approved = report
        .calls
        .iter()
        .filter(|c| {
            matches!(
                c.outcome,
                agp_intendants::CallOutcome::Allowed {
                    approved_by: Some(_),
                    ..
                }
            )
        })
        .count();
    let mismatches = report.mismatches();
    summary["calls"] = serde_json::json!(report.calls.len());
    summary["allowed"] = serde_json::json!(report.allowed());
    summary["approved"] = serde_json::json!(approved);
    summary["denied"] = serde_json::json!(report.denied());
    summary["not_run"] = serde_json::json!(report.not_run);
    summary["failure"] = serde_json::json!(report.failure());
    summary["mismatches"] = serde_json::json!(mismatches
        .iter()
        .map(|c| serde_json::json!({
            "index": c.index,
            "expected": c.expect.map(|e| e.to_string()),
            "observed": c.observed().to_string(),
        }))
        .collect::<Vec<_>>());
    out.line(&format!(
        "agp: session {session}: {} calls, {} allowed ({} after approval), {} denied",
        report.calls.len(),
        report.allowed(),
        approved,
        report.denied()
    ));
    if let Some(failure) = report.failure() {
        out.line(&format!(
            "agp: ✗ the gateway failed ({failure}); {} call(s) not sent",
            report.not_run
        ));
    }
    if !mismatches.is_empty() {
        out.line(&format!(
            "agp: ✗ {} call(s) did not get the outcome the script expects",
            mismatches.len()
        ));
    }
}

/// Verifies the journal against the home's public key: one line, and the `journal` field of the
/// summary.
pub(crate) fn verify(journal_dir: &Path, verifier: &Path, out: Out) -> serde_json::Value {
    let failed = |line: String, error: String| {
        out.line(&line);
        serde_json::json!({"verified": false, "error": error})
    };
    let key = match agp_journal::keys::load_verifier_key(&verifier.to_string_lossy()) {
        Ok(k) => k,
        Err(e) => return failed(format!("agp: ✗ journal not verified: {e}"), e.to_string()),
    };
    let opts = agp_journal::verify::VerifyOptions {
        trusted_key: key,
        trusted_checkpoint: None,
    };
    match agp_journal::verify::verify_dir(journal_dir, &opts) {
        Ok(r) if r.intact => {
            out.line(&format!(
                "agp: ✓ journal verified: {} entries, {} sealed by a signed checkpoint",
                r.entries, r.sealed_size
            ));
            serde_json::json!({"verified": true, "entries": r.entries, "sealed": r.sealed_size})
        }
        Ok(r) => {
            let first = r
                .errors()
                .next()
                .map(|f| format!("{f:?}"))
                .unwrap_or_default();
            failed(
                format!("agp: ✗ journal verification FAILED: {first}"),
                first,
            )
        }
        Err(e) => failed(format!("agp: ✗ journal not verified: {e}"), e.to_string()),
    }
}
