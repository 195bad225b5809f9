//! `agp verify`: check the journal offline.

use std::path::PathBuf;

use agp_journal::{verify_dir, Severity, VerifyError, VerifyOptions};
use anyhow::{Context, Result};
use clap::Args;

use crate::exit::Exit;
use crate::home::Home;

/// Shown by `--help` (the doc line in cli.rs is the short form).
pub const LONG_ABOUT: &str =
    "Verify the journal offline, streaming (memory does not grow with its \
    length): every line is RFC 8785 canonical JSON, seq is contiguous, each prev is the hash of \
    the line before, the RFC 6962 Merkle tree is recomputed, and every stored checkpoint is \
    signed by a key valid for its tree size (key rotations included), names this log, never \
    shrinks, and matches the recomputed root. With --trusted-checkpoint, a checkpoint you kept \
    earlier also detects a truncated or rewritten (forked) history.\n\n\
    Prints one line per finding, then a summary. A torn last line (crash) and entries after the \
    last checkpoint (not yet signed) are warnings; everything else is an error.\n\n\
    THE KEY MATTERS: verification proves the journal was written by the holder of the key you \
    verify with. The default is this home's keys/journal.pub. Verifying with a key found next to \
    a journal someone handed you proves nothing (whoever rewrote the journal could replace that \
    key too): pass the key you obtained through a channel you trust.";

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Journal folder to verify [default: <home>/journal]
    #[arg(long, value_name = "DIR")]
    pub journal: Option<PathBuf>,
    /// Verifier key: a C2SP verifier key (<name>+<keyid>+<base64>) or a file holding one
    /// [default: <home>/keys/journal.pub]
    #[arg(long, value_name = "VKEY_OR_FILE")]
    pub key: Option<String>,
    /// A signed checkpoint you kept earlier (detects TRUNCATED and FORKED)
    #[arg(long, value_name = "FILE")]
    pub trusted_checkpoint: Option<PathBuf>,
    /// A witness whose cosignatures count: its cosignature verifier key
    /// (`<name>+<keyid>+<base64>`, as `agp witness keygen` prints it) or a file holding it.
    /// Repeat for more witnesses. The latest checkpoint must then carry valid cosignatures
    /// (kept in the journal's `cosignatures` file) from at least --min-witnesses of them, and
    /// every checkpoint they cosigned must still be part of the journal.
    #[arg(long = "witness", value_name = "VKEY_OR_FILE")]
    pub witnesses: Vec<String>,
    /// How many of the --witness keys must have cosigned the latest checkpoint [default: 1]
    #[arg(long, value_name = "N", requires = "witnesses")]
    pub min_witnesses: Option<usize>,
    /// Team mode: check every member's checkpoints published to the shared database against
    /// the member journals readable here (--member-journal, default this home's journal): each
    /// must still extend everything it published. Members whose journal is not given are
    /// checked on the published series alone (signatures, forks).
    #[arg(long, conflicts_with_all = ["journal", "key", "trusted_checkpoint", "witnesses"])]
    pub team: bool,
    /// A member's journal folder to check against what it published (repeat for more)
    #[arg(long = "member-journal", value_name = "DIR", requires = "team")]
    pub member_journals: Vec<PathBuf>,
    /// The shared database [default: `[state] url` in config.toml]
    #[arg(long, value_name = "URL", requires = "team")]
    pub state_url: Option<String>,
    /// Machine-readable report
    #[arg(long)]
    pub json: bool,
}

/// A witness key given as the key itself or as a file holding it (the first line that is
/// neither blank nor a `#` comment).
fn load_witness_key(arg: &str) -> Result<agp_journal::cosig::WitnessKey> {
    let path = std::path::Path::new(arg);
    let text = if arg.contains('+') && !path.exists() {
        arg.to_string()
    } else {
        let body = std::fs::read_to_string(path).with_context(|| {
            format!("--witness {arg}: not a witness key and not a readable file")
        })?;
        body.lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .with_context(|| format!("--witness {arg}: the file holds no key"))?
    };
    agp_journal::cosig::WitnessKey::parse(&text).map_err(|e| {
        anyhow::anyhow!("--witness {arg}: {e} (a witness key is what `agp witness keygen` printed)")
    })
}

pub fn run(home: &Home, args: VerifyArgs) -> Result<Exit> {
    if args.team {
        return crate::cmd::verify_team::run(
            home,
            args.state_url.as_deref(),
            &args.member_journals,
            args.json,
        );
    }
    let key = crate::cmd::keygen::resolve_verifier(home, args.key.as_deref())?;
    let dir = args.journal.unwrap_or_else(|| home.journal_dir());
    let witnesses = args
        .witnesses
        .iter()
        .map(|w| load_witness_key(w))
        .collect::<Result<Vec<_>>>()?;
    let min_witnesses = args.min_witnesses.unwrap_or(1);
    if !witnesses.is_empty() && (min_witnesses == 0 || min_witnesses > witnesses.len()) {
        anyhow::bail!(
            "--min-witnesses {min_witnesses}: it must be between 1 and the number of --witness keys given ({})",
            witnesses.len()
        );
    }
    let trusted_checkpoint = match &args.trusted_checkpoint {
        None => None,
        Some(p) => Some(
            std::fs::read(p)
                .with_context(|| format!("cannot read the trusted checkpoint {}", p.display()))?,
        ),
    };
    let opts = VerifyOptions {
        trusted_key: key.clone(),
        trusted_checkpoint,
    };
    let report = match verify_dir(&dir, &opts) {
        Ok(r) => r,
        Err(e @ VerifyError::MissingEntries(_)) => {
            return Err(anyhow::anyhow!(e).context(
                "nothing to verify (run `agp keygen` to start the journal, or pass --journal)",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let witnessed = if witnesses.is_empty() {
        None
    } else {
        Some(
            agp_journal::witnessed::check(&dir, &key, &witnesses, min_witnesses)
                .context("cannot check the witness cosignatures")?,
        )
    };
    let witnessed_ok = witnessed.as_ref().is_none_or(|w| w.ok);
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        if let (Some(w), Some(obj)) = (&witnessed, value.as_object_mut()) {
            obj.insert("witnessed".into(), serde_json::to_value(w)?);
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        for f in &report.findings {
            println!("{f}");
        }
        if report.more_findings > 0 {
            println!("... and {} more findings", report.more_findings);
        }
        let errors = report.errors().count();
        let warnings = report
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .count();
        if report.intact {
            println!(
                "journal intact: {} entr{}, signed up to size {} by key id {}{}",
                report.entries,
                if report.entries == 1 { "y" } else { "ies" },
                report.sealed_size,
                report
                    .active_key()
                    .map_or_else(|| key.id_hex(), agp_journal::VerifierKey::id_hex),
                if warnings > 0 {
                    format!(
                        " ({warnings} warning{})",
                        if warnings == 1 { "" } else { "s" }
                    )
                } else {
                    String::new()
                }
            );
        } else {
            println!(
                "journal NOT intact: {errors} error{} in {} ({} entries checked with key id {})",
                if errors == 1 { "" } else { "s" },
                dir.display(),
                report.entries,
                key.id_hex()
            );
        }
    }
    if let (Some(w), false) = (&witnessed, args.json) {
        for p in &w.problems {
            println!("NOT WITNESSED: {p}");
        }
        if w.ok {
            let who: Vec<&str> = w
                .witnesses
                .iter()
                .filter(|s| s.status == "valid")
                .map(|s| s.witness.as_str())
                .collect();
            println!(
                "witnessed: the latest checkpoint (size {}) is cosigned by {} of the {} required ({})",
                w.checkpoint_size,
                w.valid,
                w.required,
                who.join(", ")
            );
        }
    }
    Ok(if report.intact && witnessed_ok {
        Exit::Ok
    } else {
        Exit::Bad
    })
}
