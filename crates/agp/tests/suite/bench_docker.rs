//! `agp bench sandbox --provider docker` through the real binary against this test binary's
//! own engine: the figures come out for the runtime asked for, and a missing image is one
//! line with the fix (exit 2). No figure is asserted against its target (no timed asserts).

use std::process::{Command, Stdio};

use agp_testkit::docker::DockerEngine;
use serde_json::Value;

use super::support::looping::agp_ok;

fn bench(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_agp"))
        .arg("--home")
        .arg(home)
        .args(["bench", "sandbox", "--provider", "docker"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn bench_sandbox_docker_reports_session_start_and_exec() {
    let Some(engine) = DockerEngine::shared() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("agp-home");
    let socket = engine.socket().to_str().unwrap();

    let out = bench(&home, &["--socket", socket]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--image") && stderr.contains("agp sandbox image build"),
        "{stderr}"
    );

    let built = agp_ok(
        &home,
        None,
        &[
            "sandbox",
            "image",
            "build",
            "--socket",
            socket,
            "--tag",
            "localhost/agp-bench:t",
        ],
    );
    let pinned = built
        .lines()
        .find_map(|l| l.strip_prefix("built "))
        .unwrap_or_else(|| panic!("no pinned reference in: {built}"));
    let (_, id) = pinned.split_once('@').unwrap();
    for runtime in ["runc", "runsc"] {
        let out = bench(
            &home,
            &[
                "--socket",
                socket,
                "--image",
                pinned,
                "--runtime",
                runtime,
                "--spawns",
                "3",
                "--warmup",
                "0",
                "--sessions",
                "2",
                "--json",
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        // 0: targets met, 1: missed (a loaded machine); never 2 (could not run).
        assert!(matches!(out.status.code(), Some(0 | 1)), "{stderr}");
        let figures: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(figures["runtime"], runtime, "{figures}");
        assert_eq!(figures["image"], id, "{figures}");
        assert_eq!(figures["calls"], 3, "{figures}");
        assert_eq!(figures["sessions"], 2, "{figures}");
        // One exec per clean call: runc's cgroup read on the host, gVisor's watcher.
        let check = if runtime == "runc" {
            "host cgroup"
        } else {
            "watcher"
        };
        assert_eq!(figures["leftover_check"], check, "{figures}");
        let p50 = figures["exec_p50_ms"].as_f64().unwrap();
        let p99 = figures["exec_p99_ms"].as_f64().unwrap();
        assert!(p50 > 0.0 && p50 <= p99, "{figures}");
        assert_eq!(
            out.status.code() == Some(0),
            figures["exec_target_met"] == true && figures["start_target_met"] == true,
            "{figures}"
        );
    }
}
