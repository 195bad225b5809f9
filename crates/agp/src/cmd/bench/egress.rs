//! `agp bench egress`: latency a request gains through the egress proxy, against a real HTTPS
//! upstream on loopback: CONNECT pass-through, and terminated TLS (inspected host, warm
//! certificate cache, a rule and a header injection applied).

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use super::gateway::percentile;
use super::{mark, report};
use crate::exit::Exit;

#[derive(Debug, Args)]
#[command(
    long_about = "Start the egress proxy and an HTTPS server on loopback, then send requests \
    over three kept-alive connections taking turns: direct, through a CONNECT tunnel (TLS end to \
    end), and through an inspected host (the proxy terminates TLS with a leaf from its session \
    CA, already cached, judges the request by a rule, injects a header and forwards it over \
    verified TLS). Reports the added latency per request (proxy minus direct) at p50 and p99, \
    and the time to a first response on a fresh connection. Targets: added p50 <= 1 ms \
    pass-through, <= 3 ms terminated; exits 1 when missed."
)]
pub struct EgressBenchArgs {
    /// Timed requests per path
    #[arg(long, default_value_t = 2_000)]
    pub requests: usize,
    /// Untimed requests per path first
    #[arg(long, default_value_t = 100)]
    pub warmup: usize,
    /// Fresh connections timed per path (set-up figures)
    #[arg(long, default_value_t = 50)]
    pub connections: usize,
    /// Machine-readable report
    #[arg(long)]
    pub json: bool,
}

const TARGET_PASS_P50_MS: f64 = 1.0;
const TARGET_TERM_P50_MS: f64 = 3.0;

#[derive(Debug, Serialize)]
struct Path {
    p50_ms: f64,
    p99_ms: f64,
    added_p50_ms: f64,
    added_p99_ms: f64,
}

#[derive(Debug, Serialize)]
struct Figures {
    requests: usize,
    direct_p50_ms: f64,
    direct_p99_ms: f64,
    pass_through: Path,
    terminated: Path,
    direct_connect_p50_ms: f64,
    terminated_connect_p50_ms: f64,
    target_pass_through_added_p50_ms: f64,
    target_terminated_added_p50_ms: f64,
    pass_through_met: bool,
    terminated_met: bool,
}

pub fn run(args: &EgressBenchArgs) -> Result<Exit> {
    let s = agp_egress::bench::measure(args.requests.max(1), args.warmup, args.connections)
        .context("egress bench")?;
    let (d50, d99) = (percentile(&s.direct, 0.50), percentile(&s.direct, 0.99));
    let path = |v: &[std::time::Duration]| {
        let (p50, p99) = (percentile(v, 0.50), percentile(v, 0.99));
        Path {
            p50_ms: p50,
            p99_ms: p99,
            added_p50_ms: p50 - d50,
            added_p99_ms: p99 - d99,
        }
    };
    let pass_through = path(&s.pass_through);
    let terminated = path(&s.terminated);
    let f = Figures {
        requests: args.requests,
        direct_p50_ms: d50,
        direct_p99_ms: d99,
        pass_through_met: pass_through.added_p50_ms <= TARGET_PASS_P50_MS,
        terminated_met: terminated.added_p50_ms <= TARGET_TERM_P50_MS,
        pass_through,
        terminated,
        direct_connect_p50_ms: percentile(&s.direct_connect, 0.50),
        terminated_connect_p50_ms: percentile(&s.terminated_connect, 0.50),
        target_pass_through_added_p50_ms: TARGET_PASS_P50_MS,
        target_terminated_added_p50_ms: TARGET_TERM_P50_MS,
    };
    let met = f.pass_through_met && f.terminated_met;
    report(args.json, &f, serde_json::to_string_pretty, text, met)
}

fn text(f: &Figures) {
    println!(
        "egress: {} requests per path, loopback HTTPS upstream",
        f.requests
    );
    println!(
        "  direct                p50 {:.3} ms  p99 {:.3} ms",
        f.direct_p50_ms, f.direct_p99_ms
    );
    for (name, p, met, target) in [
        (
            "CONNECT pass-through",
            &f.pass_through,
            f.pass_through_met,
            f.target_pass_through_added_p50_ms,
        ),
        (
            "terminated TLS",
            &f.terminated,
            f.terminated_met,
            f.target_terminated_added_p50_ms,
        ),
    ] {
        println!(
            "  {name:<21} p50 {:.3} ms  p99 {:.3} ms  added p50 {:.3} ms {} (target <= {target} ms)  added p99 {:.3} ms",
            p.p50_ms,
            p.p99_ms,
            p.added_p50_ms,
            mark(met),
            p.added_p99_ms
        );
    }
    println!(
        "  fresh connection to first response: direct p50 {:.3} ms, terminated (cached leaf) p50 {:.3} ms",
        f.direct_connect_p50_ms, f.terminated_connect_p50_ms
    );
}
