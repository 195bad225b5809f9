//! `agp journal`: show and export events, inclusion receipts, consistency proofs, recovery.

mod cursor;
mod export;
mod follow;
mod ocsf;
mod otlp;
mod record;
mod show;
mod source;

use std::path::PathBuf;

use agp_journal::proof::{self, ProofError};
use agp_journal::{JournalOptions, JournalWriter};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::exit::{Exit, EXIT_CODES_HELP};
use crate::home::Home;

#[derive(Debug, Args)]
pub struct JournalArgs {
    #[command(subcommand)]
    pub command: JournalCommand,
}

#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Print events readably (or as JSON lines), optionally filtered.
    #[command(after_help = EXIT_CODES_HELP)]
    Show {
        /// Only events of this session
        #[arg(long, value_name = "ID")]
        session: Option<String>,
        /// Only events of this kind (e.g. policy.decided)
        #[arg(long, value_name = "KIND")]
        kind: Option<String>,
        /// Print the matching events as JSON lines, exactly as journaled
        #[arg(long)]
        json: bool,
        /// Journal folder [default: <home>/journal]
        #[arg(long, value_name = "DIR")]
        journal: Option<PathBuf>,
    },
    /// Export the verified journal as JSON lines or OCSF events, to stdout or an OpenTelemetry
    /// collector (OTLP/HTTP), once or following it.
    #[command(after_help = EXIT_CODES_HELP, long_about = export::LONG_ABOUT)]
    Export(export::ExportArgs),
    /// Print a C2SP tlog-proof receipt for one entry: index, inclusion proof, latest checkpoint.
    #[command(after_help = EXIT_CODES_HELP)]
    Proof {
        /// The entry's seq
        #[arg(long, value_name = "N")]
        seq: u64,
        /// Verifier key to check the checkpoint with [default: <home>/keys/journal.pub]
        #[arg(long, value_name = "VKEY_OR_FILE")]
        key: Option<String>,
        /// Print the receipt inside a JSON document
        #[arg(long)]
        json: bool,
    },
    /// Check a tlog-proof receipt offline against the exact entry line and a verifier key.
    #[command(name = "verify-proof", after_help = EXIT_CODES_HELP)]
    VerifyProof {
        /// The receipt printed by `agp journal proof`
        file: PathBuf,
        /// A file holding the exact journal line the receipt is for
        #[arg(long, value_name = "LINE_FILE")]
        entry: PathBuf,
        /// Verifier key (string or file); a key shipped with the receipt proves nothing
        #[arg(long, value_name = "VKEY_OR_FILE")]
        key: String,
        #[arg(long)]
        json: bool,
    },
    /// Prove that the journal extends an older checkpoint (RFC 6962 consistency proof).
    #[command(after_help = EXIT_CODES_HELP)]
    Consistency {
        /// A signed checkpoint kept earlier
        old_checkpoint: PathBuf,
        /// Verifier key [default: <home>/keys/journal.pub]
        #[arg(long, value_name = "VKEY_OR_FILE")]
        key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Open the journal for writing and close it: moves a torn last line aside (journaled as
    /// journal.recovered) and seals entries after the last checkpoint. Refuses a journal that
    /// fails verification.
    #[command(after_help = EXIT_CODES_HELP)]
    Recover {
        /// Print what was recovered as one JSON document
        #[arg(long)]
        json: bool,
    },
}

pub fn run(home: &Home, args: JournalArgs) -> Result<Exit> {
    match args.command {
        JournalCommand::Show {
            session,
            kind,
            json,
            journal,
        } => show::show(
            &journal.unwrap_or_else(|| home.journal_dir()),
            session.as_deref(),
            kind.as_deref(),
            json,
        ),
        JournalCommand::Proof { seq, key, json } => {
            let key = crate::cmd::keygen::resolve_verifier(home, key.as_deref())?;
            let dir = home.journal_dir();
            match proof::build_inclusion(&dir, seq, &key) {
                Ok(p) if json => {
                    let (cp, _) = proof::latest_checkpoint(&dir, &key)?;
                    let out = json!({"seq": seq, "tree_size": cp.size, "origin": cp.origin,
                                     "key_id": key.id_hex(), "receipt": p});
                    println!("{}", serde_json::to_string_pretty(&out)?);
                    Ok(Exit::Ok)
                }
                Ok(p) => {
                    print!("{p}");
                    Ok(Exit::Ok)
                }
                Err(ProofError::NotSealed { seq, size }) => {
                    let entries = proof::leaf_hashes(&dir, u64::MAX)?.len() as u64;
                    let message = if seq >= entries {
                        format!(
                            "no entry with seq {seq}: the journal has {entries} entries (seq 0 to {})",
                            entries.saturating_sub(1)
                        )
                    } else {
                        format!(
                            "entry seq {seq} is not sealed yet: the latest checkpoint covers seq 0 to {}; \
                             `{} journal recover` seals it now",
                            size.saturating_sub(1),
                            home.agp()
                        )
                    };
                    if json {
                        println!("{}", json!({"seq": seq, "error": message}));
                    }
                    eprintln!("agp: {message}");
                    Ok(Exit::Bad)
                }
                Err(e) => proof_failure(e, json, json!({"seq": seq})),
            }
        }
        JournalCommand::VerifyProof {
            file,
            entry,
            key,
            json,
        } => {
            let key = crate::cmd::keygen::resolve_verifier(home, Some(&key))?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let line = std::fs::read(&entry)
                .with_context(|| format!("cannot read {}", entry.display()))?;
            match proof::verify_inclusion(&text, &line, &key) {
                Ok(inc) => {
                    if json {
                        println!(
                            "{}",
                            json!({"valid": true, "index": inc.index, "tree_size": inc.checkpoint.size, "origin": inc.checkpoint.origin, "key_id": key.id_hex()})
                        );
                    } else {
                        println!(
                            "valid: the entry is seq {} of {} (size {}, signed by key id {})",
                            inc.index,
                            inc.checkpoint.origin,
                            inc.checkpoint.size,
                            key.id_hex()
                        );
                    }
                    Ok(Exit::Ok)
                }
                Err(e) => proof_failure(e, json, json!({"valid": false})),
            }
        }
        JournalCommand::Consistency {
            old_checkpoint,
            key,
            json,
        } => {
            let key = crate::cmd::keygen::resolve_verifier(home, key.as_deref())?;
            let old = std::fs::read(&old_checkpoint)
                .with_context(|| format!("cannot read {}", old_checkpoint.display()))?;
            // Checkpoints signed before a key rotation are checked with the journal's earlier
            // keys, which the verified journal vouches for.
            let report = agp_journal::verify_dir(
                &home.journal_dir(),
                &agp_journal::VerifyOptions {
                    trusted_key: key.clone(),
                    trusted_checkpoint: None,
                },
            )?;
            let earlier: Vec<agp_journal::VerifierKey> = if report.intact {
                report.keys.iter().map(|k| k.verifier.clone()).collect()
            } else {
                Vec::new()
            };
            match proof::consistency(&home.journal_dir(), &old, &key, &earlier) {
                Ok(c) => {
                    let b64 = agp_journal::merkle::to_base64;
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&json!({
                                "consistent": true,
                                "old_size": c.old.size, "old_root": b64(&c.old.root),
                                "new_size": c.new.size, "new_root": b64(&c.new.root),
                                "proof": c.proof.iter().map(b64).collect::<Vec<_>>(),
                            }))?
                        );
                    } else {
                        println!(
                            "consistent: the journal at size {} extends the checkpoint at size {}",
                            c.new.size, c.old.size
                        );
                        println!(
                            "old root {}\nnew root {}",
                            b64(&c.old.root),
                            b64(&c.new.root)
                        );
                        println!("consistency proof ({} hashes):", c.proof.len());
                        for h in &c.proof {
                            println!("{}", b64(h));
                        }
                    }
                    Ok(Exit::Ok)
                }
                Err(e) => proof_failure(e, json, json!({"consistent": false})),
            }
        }
        JournalCommand::Recover { json } => recover(home, json),
        JournalCommand::Export(args) => export::run(home, &args),
    }
}

/// I/O problems mean "could not run" (2); anything else means the proof does not hold (1).
/// With `--json`, `fields` and the error go to stdout first.
fn proof_failure(e: ProofError, json: bool, mut fields: Value) -> Result<Exit> {
    if json {
        fields["error"] = e.to_string().into();
        println!("{fields}");
    }
    match e {
        ProofError::Io { .. } => Err(e.into()),
        other => {
            eprintln!("agp: {other}");
            Ok(Exit::Bad)
        }
    }
}

fn recover(home: &Home, json: bool) -> Result<Exit> {
    let key_path = crate::cmd::keygen::signer_path(home);
    let key = agp_journal::keys::load_signer_key(&key_path)
        .with_context(|| format!("cannot load the journal key {}", key_path.display()))?;
    let writer = match JournalWriter::open(&home.journal_dir(), key, JournalOptions::default()) {
        Ok(w) => w,
        Err(e) => {
            if json {
                println!("{}", json!({"recovered": false, "error": e.to_string()}));
            }
            eprintln!("agp: error: cannot recover the journal: {e}");
            return Ok(Exit::Bad);
        }
    };
    let s = writer.open_summary().clone();
    writer.close().context("cannot close the journal")?;
    if json {
        let out = json!({
            "recovered": true,
            "torn_file": s.torn_file,
            "torn_bytes": s.torn_bytes,
            "sealed": s.unsealed,
            "recovered_seq": s.recovered_seq,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(Exit::Ok);
    }
    if let Some(p) = &s.torn_file {
        println!(
            "moved a torn last line ({} bytes) to {}",
            s.torn_bytes,
            p.display()
        );
    }
    if s.unsealed > 0 {
        println!(
            "sealed {} entries that followed the last checkpoint",
            s.unsealed
        );
    }
    if s.unfinished_checkpoint {
        println!("finished publishing a checkpoint that a crash had interrupted");
    }
    match s.recovered_seq {
        Some(seq) => println!("journaled the recovery as journal.recovered at seq {seq}"),
        None if s.unfinished_checkpoint => {}
        None => println!("nothing to recover: the journal was complete and sealed"),
    }
    Ok(Exit::Ok)
}
