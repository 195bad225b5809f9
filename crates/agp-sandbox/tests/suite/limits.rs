//! Session-wide resource bounds against a real bubblewrap sandbox: memory of all commands
//! together, tmpfs sizes, repository growth and process count. Each hit stops or refuses the
//! work and says which bound, its value and what was observed.

use super::support as common;

use agp_contracts::sandbox::{SandboxError, SandboxProvider};
use common::*;

const MIB: u64 = 1024 * 1024;

/// Python that allocates and touches `mib` MiB, then reports.
fn alloc(mib: u64) -> String {
    format!("python3 -c 'import time; b = b\"\\x01\" * ({mib} << 20); print(\"allocated\", flush=True); time.sleep(1)'")
}

/// Three children allocate 90 MiB each, report, and wait for the parent's go; prints how
/// many were killed.
const THREE: &str = "
import os, signal
r, w = os.pipe()
gr, gw = os.pipe()
kids = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        os.close(r); os.close(gw)
        b = bytes([1]) * (90 << 20)
        os.write(w, bytes([97])); os.close(w)
        os.read(gr, 1)
        os._exit(0)
    kids.append(pid)
os.close(w); os.close(gr)
while os.read(r, 1):
    pass
os.close(gw)
killed = 0
for k in kids:
    _, status = os.waitpid(k, 0)
    killed += os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
print(killed)
";

#[test]
fn session_memory_is_bounded_across_processes() {
    let fx = Fixture::with_spec(|spec| spec.limits.session_memory_bytes = Some(200 * MIB));
    if !fx.session.memory_limit_by_cgroup() {
        let caveats = fx.provider.isolation().caveats.join("\n");
        assert!(
            caveats.contains("session_memory_bytes is NOT enforced"),
            "{caveats}"
        );
        assert!(
            !is_root(),
            "root without a memory cgroup on this host: {caveats}"
        );
        eprintln!("SKIPPED LOUDLY: no memory cgroup can be created here (not root)");
        return;
    }
    // One process past the bound.
    let one = fx.sh(&alloc(300));
    assert!(!stdout(&one).contains("allocated"), "{one:?}");
    let hit = one.limit_exceeded.as_ref().expect("a limit hit");
    assert_eq!(hit.limit, "session_memory");
    assert_eq!(hit.bound, 200 * MIB);
    assert!(hit.message.contains("session_memory_bytes"), "{hit:?}");
    // Three processes, each under the bound, together over it: they hold their memory until
    // all have allocated or died, so they overlap whatever the scheduling.
    let three = fx.sh(&format!("python3 -c '{THREE}'"));
    let killed: u32 = stdout(&three).trim().parse().unwrap_or(0);
    assert!(killed >= 1, "all three held their memory: {three:?}");
    assert_eq!(
        three.limit_exceeded.as_ref().map(|h| h.limit.as_str()),
        Some("session_memory"),
        "{three:?}"
    );
    // Work within the bound still runs, and reports nothing.
    let small = fx.sh(&alloc(50));
    assert_eq!(stdout(&small), "allocated\n", "{small:?}");
    assert!(small.limit_exceeded.is_none(), "{small:?}");
}

#[test]
fn tmpfs_mounts_are_small_and_sized_by_config() {
    let fx = Fixture::with_spec(|spec| spec.limits.tmpfs_bytes = Some(8 * MIB));
    let out = fx.sh(
        "export LC_ALL=C; head -c 20M /dev/zero > /tmp/big || echo TMP-FULL; \
         head -c 20M /dev/zero > \"$HOME/big\" || echo HOME-FULL; \
         df -B1 --output=size /tmp \"$HOME\" | tail -n 2",
    );
    let s = stdout(&out);
    assert!(s.contains("TMP-FULL") && s.contains("HOME-FULL"), "{out:?}");
    assert!(stderr(&out).contains("No space left on device"), "{out:?}");
    for line in s.lines().rev().take(2) {
        assert_eq!(line.trim(), (8 * MIB).to_string(), "{s}");
    }
    // Without a setting the default is small, not gigabytes.
    let fx = Fixture::new();
    let size: u64 = stdout(&fx.sh("df -B1 --output=size /tmp | tail -n 1"))
        .trim()
        .parse()
        .unwrap();
    assert!(size <= 256 * MIB, "{size}");
}

#[test]
fn repository_growth_is_bounded_and_then_refused() {
    let fx = Fixture::with_spec(|spec| spec.limits.repo_growth_bytes = Some(4 * MIB));
    // One file past the bound is stopped as it is written (RLIMIT_FSIZE).
    let single = fx.sh("export LC_ALL=C; head -c 6M /dev/zero > one.bin; echo rc=$?");
    assert!(
        stdout(&single).contains("rc=1") || stdout(&single).contains("rc=153"),
        "{single:?}"
    );
    let written = std::fs::metadata(fx.repo.join("one.bin")).unwrap().len();
    assert!(written <= 4 * MIB, "{written}");
    std::fs::remove_file(fx.repo.join("one.bin")).unwrap();
    // Many files, each under the bound: caught after the command...
    let many = fx.sh("for i in 1 2 3; do head -c 2M /dev/urandom > f$i.bin; done; echo wrote");
    assert_eq!(stdout(&many), "wrote\n", "{many:?}");
    let hit = many
        .limit_exceeded
        .as_ref()
        .expect("repo growth over the bound");
    assert_eq!(hit.limit, "repo_growth");
    assert_eq!(hit.bound, 4 * MIB);
    assert!(hit.observed > 4 * MIB, "{hit:?}");
    // ...and the next command is refused, naming the bound.
    let refused = fx.run(&["true"]);
    match refused {
        Err(SandboxError::LimitExceeded(hit)) => {
            assert_eq!(hit.limit, "repo_growth");
            assert!(hit.message.contains("repo_growth_bytes"), "{hit:?}");
        }
        other => panic!("not refused: {other:?}"),
    }
    // Once the human cleans up on the host, work resumes.
    for i in 1..=3 {
        std::fs::remove_file(fx.repo.join(format!("f{i}.bin"))).unwrap();
    }
    let after = fx.sh("echo back");
    assert_eq!(stdout(&after), "back\n");
    assert!(after.limit_exceeded.is_none());
}

#[test]
fn a_command_writing_past_the_repository_bound_is_stopped() {
    let fx = Fixture::with_spec(|spec| spec.limits.repo_growth_bytes = Some(4 * MIB));
    // 200 MiB in 1 MiB files over about 20 s, far past the bound, unless stopped.
    let out = fx.sh_timeout(
        "for i in $(seq 200); do head -c 1M /dev/urandom > f$i.bin; sleep 0.1; done; echo FINISHED",
        std::time::Duration::from_secs(120),
    );
    assert!(!stdout(&out).contains("FINISHED"), "{out:?}");
    assert!(!out.timed_out, "{out:?}");
    assert_eq!(out.exit_code, None, "{out:?}");
    let hit = out
        .limit_exceeded
        .as_ref()
        .expect("stopped for repo growth");
    assert_eq!(hit.limit, "repo_growth");
    let files = std::fs::read_dir(&fx.repo).unwrap().count();
    assert!(files < 200, "{files} files written");
}

#[test]
fn process_bound_hit_is_reported() {
    let fx = Fixture::with_spec(|spec| spec.limits.max_processes = Some(16));
    if !fx.session.process_limit_by_cgroup() {
        eprintln!("SKIPPED LOUDLY: no pids cgroup here; the caveat test in escape.rs covers it");
        return;
    }
    let out = fx.sh(
        "python3 -c '\nimport os, time\npids = []\nfor _ in range(40):\n    try:\n        pid = os.fork()\n    except BlockingIOError:\n        break\n    if pid == 0:\n        time.sleep(5)\n        os._exit(0)\n    pids.append(pid)\nprint(len(pids))\nfor p in pids:\n    os.kill(p, 9)\n'",
    );
    let started: u32 = stdout(&out).trim().parse().unwrap();
    assert!(started <= 13, "{out:?}");
    let hit = out.limit_exceeded.as_ref().expect("process bound hit");
    assert_eq!(hit.limit, "processes");
    assert_eq!(hit.bound, 16);
    assert!(hit.observed >= 1, "{hit:?}");
}
