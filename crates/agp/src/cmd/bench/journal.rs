//! `agp bench journal`: append throughput under a durability mode.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use agp_contracts::Journal as _;
use agp_journal::{Durability, JournalOptions, JournalWriter, SignerKey};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;

use crate::exit::Exit;

#[derive(Debug, Args)]
#[command(
    long_about = "Append N tool-call-sized events to a fresh journal (new key, temporary \
    folder) and report entries per second. Each append returns only once durable under the \
    chosen mode. Targets on a 2-core machine: entry >= 5,000/s (one fdatasync each, single \
    appender), group >= 80,000/s (concurrent appenders, up to 64 entries per fdatasync)."
)]
pub struct JournalBenchArgs {
    /// Number of events to append
    #[arg(long, default_value_t = 20_000)]
    pub entries: u64,
    /// entry (fdatasync per append) or group (group commit)
    #[arg(long, default_value = "entry")]
    pub durability: Durability,
    /// Concurrent appending threads [default: 1 for entry, 128 for group]
    #[arg(long)]
    pub threads: Option<usize>,
    /// Write the journal folder (entries.jsonl, checkpoint, checkpoints, checkpoint.sig and
    /// journal.pub) to DIR instead of a temporary folder; DIR must not exist or be empty
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Machine-readable report
    #[arg(long)]
    pub json: bool,
}

/// A bench folder: a fresh temporary one (removed on drop) or the user's `--out`.
pub struct BenchDir {
    pub path: PathBuf,
    temporary: bool,
}

impl BenchDir {
    pub fn new(out: Option<&Path>) -> Result<Self> {
        if let Some(p) = out {
            if p.exists() && std::fs::read_dir(p)?.next().is_some() {
                bail!("{} is not empty", p.display());
            }
            std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
            Ok(Self {
                path: p.to_path_buf(),
                temporary: false,
            })
        } else {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            let path =
                std::env::temp_dir().join(format!("agp-bench-{}-{nanos}", std::process::id()));
            std::fs::create_dir(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            Ok(Self {
                path,
                temporary: true,
            })
        }
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Appends `entries` events with `threads` appenders; returns the elapsed seconds.
pub fn fill(
    dir: &Path,
    key: &SignerKey,
    durability: Durability,
    entries: u64,
    threads: usize,
) -> Result<f64> {
    let writer = Arc::new(
        JournalWriter::open(
            dir,
            key.clone(),
            JournalOptions::with_durability(durability),
        )
        .context("cannot open the bench journal")?,
    );
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads.max(1))
        .map(|t| {
            let writer = writer.clone();
            let next = next.clone();
            std::thread::spawn(move || -> Result<()> {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= entries {
                        return Ok(());
                    }
                    writer.append(
                        "tool_call.requested",
                        Some(&format!("bench-{t}")),
                        json!({
                            "call_id": format!("c{i}"),
                            "tool": "Bash",
                            "input": {"command": format!("cargo test -p agp-journal --lib case_{i}")},
                            "input_sha256": agp_contracts::canonical::sha256_hex(&i.to_be_bytes()),
                        }),
                    )?;
                }
            })
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("an appender thread panicked"))??;
    }
    let secs = start.elapsed().as_secs_f64();
    writer.close().context("cannot close the bench journal")?;
    Ok(secs)
}

pub fn run(args: &JournalBenchArgs) -> Result<Exit> {
    let dir = BenchDir::new(args.out.as_deref())?;
    let key = SignerKey::generate("agp.bench/journal")?;
    let threads = args.threads.unwrap_or(match args.durability {
        Durability::Entry => 1,
        Durability::Group => 128,
    });
    let secs = fill(&dir.path, &key, args.durability, args.entries, threads)?;
    std::fs::write(
        dir.path.join("journal.pub"),
        format!("{}\n", key.verifier()),
    )?;
    let rate = args.entries as f64 / secs;
    let (mode, target) = match args.durability {
        Durability::Entry => ("entry", 5_000.0),
        Durability::Group => ("group", 80_000.0),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "bench": "journal",
                "durability": mode,
                "entries": args.entries,
                "threads": threads,
                "seconds": secs,
                "entries_per_sec": rate.round(),
                "target_entries_per_sec": target,
                "meets_target": rate >= target,
                "journal": if dir.temporary { None } else { Some(dir.path.display().to_string()) },
            }))?
        );
    } else {
        println!(
            "journal append ({mode} durability, {threads} thread{}): {} entries in {secs:.3} s = {rate:.0} entries/s (target >= {target:.0}: {})",
            if threads == 1 { "" } else { "s" },
            args.entries,
            if rate >= target { "met" } else { "NOT met" }
        );
        if !dir.temporary {
            println!(
                "journal written to {0}; check it with: agp verify --journal {0} --key {0}/journal.pub",
                dir.path.display()
            );
        }
    }
    Ok(Exit::Ok)
}
