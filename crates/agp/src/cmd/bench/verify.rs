//! `agp bench verify`: offline verification throughput and peak memory.

use std::path::PathBuf;
use std::time::Instant;

use agp_journal::{verify_dir, Durability, SignerKey, VerifyOptions};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;

use super::journal::{fill, BenchDir};
use crate::exit::Exit;

#[derive(Debug, Args)]
#[command(
    long_about = "Build a journal of N entries with a fresh key (group commit), then \
    verify it on one thread and report entries per second and the peak resident memory of the \
    verification alone (the high-water mark is reset before it starts). Targets: >= 400,000 \
    entries/s, <= 50 MB for 1,000,000 entries."
)]
pub struct VerifyBenchArgs {
    /// Number of entries in the journal
    #[arg(long, default_value_t = 200_000)]
    pub entries: u64,
    /// Keep the built journal (and journal.pub) in DIR
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Machine-readable report
    #[arg(long)]
    pub json: bool,
}

/// VmHWM and VmRSS from /proc/self/status, in KiB.
pub(super) fn memory_kib() -> Result<(u64, u64)> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("VmHWM:"), field("VmRSS:")))
}

pub fn run(args: &VerifyBenchArgs) -> Result<Exit> {
    let dir = BenchDir::new(args.out.as_deref())?;
    let key = SignerKey::generate("agp.bench/journal")?;
    // The journal holds N entries including its journal.created entry.
    let appends = args.entries.saturating_sub(1);
    fill(&dir.path, &key, Durability::Group, appends, 128)?;
    std::fs::write(
        dir.path.join("journal.pub"),
        format!("{}\n", key.verifier()),
    )?;

    // Reset the peak-RSS mark so it measures the verification only (Linux clear_refs "5").
    std::fs::write("/proc/self/clear_refs", "5").context("cannot reset the peak RSS mark")?;
    let (_, rss_before) = memory_kib()?;
    let opts = VerifyOptions {
        trusted_key: key.verifier().clone(),
        trusted_checkpoint: None,
    };
    let start = Instant::now();
    let report = verify_dir(&dir.path, &opts)?;
    let secs = start.elapsed().as_secs_f64();
    let (hwm, _) = memory_kib()?;
    if !report.intact || !report.findings.is_empty() {
        bail!(
            "the bench journal did not verify cleanly: {:?}",
            report.findings.first()
        );
    }
    let rate = report.entries as f64 / secs;
    let peak_mb = hwm as f64 / 1024.0;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "bench": "verify",
                "entries": report.entries,
                "seconds": secs,
                "entries_per_sec": rate.round(),
                "target_entries_per_sec": 400_000,
                "peak_rss_mb": (peak_mb * 10.0).round() / 10.0,
                "rss_before_mb": ((rss_before as f64 / 1024.0) * 10.0).round() / 10.0,
                "target_peak_rss_mb": 50,
                "meets_target": rate >= 400_000.0 && peak_mb <= 50.0,
            }))?
        );
    } else {
        println!(
            "verify: {} entries in {secs:.3} s = {rate:.0} entries/s (target >= 400000: {}); peak RSS {peak_mb:.1} MB (target <= 50 MB: {})",
            report.entries,
            if rate >= 400_000.0 { "met" } else { "NOT met" },
            if peak_mb <= 50.0 { "met" } else { "NOT met" },
        );
    }
    Ok(Exit::Ok)
}
