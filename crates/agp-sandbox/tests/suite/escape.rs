//! Adversarial tests: everything a sandboxed command might try to reach the host with, run
//! against every provider (bubblewrap; the container provider on Docker with runc and with
//! runsc, and on Podman with runc; see `support::provider`). Run as root here and in CI, the
//! hardest case for bubblewrap (the sandboxed process keeps kernel uid 0, without
//! capabilities). The network and sockets are in `escape_net`; bubblewrap's own mechanics in
//! `escape_bwrap`; git metadata, the environment and host Unix sockets in the repository in
//! `escape_git`, `env_leak` and `unix_socket`.
//!
//! Where a provider differs by design (a container's `/tmp` lives as long as its session; the
//! default image has no git), the case says so where it branches; bubblewrap keeps every
//! assertion it had before the suite was made generic.

use super::support as common;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use agp_contracts::sandbox::{BindMount, ExecRequest, SandboxError, SandboxSpec};
use common::provider::{each_provider, give_to_sandbox_user, Provider, Sandbox, Which};
use common::*;

each_provider!(
    normal_work_in_the_repo_succeeds,
    writes_outside_the_repo_fail,
    real_home_and_host_secrets_are_invisible,
    proc_tricks_do_not_reach_the_host,
    symlinks_planted_in_the_repo_do_not_lead_out,
    cpu_limit_holds,
    memory_limit_holds,
    timeout_kills_the_whole_sandbox,
    output_is_capped,
    stdin_is_delivered,
    requests_outside_the_repo_or_malformed_are_refused,
    concurrent_commands_in_one_session_are_independent,
    seeded_files_land_read_only_and_state_dirs_writable,
    bind_sources_inside_the_repo_are_refused,
);

/// `text` has the shell's "no such file" complaint about `path`: coreutils says
/// `cat: PATH: No such file or directory`, busybox `cat: can't open 'PATH': No such file or
/// directory`. Bubblewrap (a Debian host's tools) is held to the exact coreutils line.
pub fn says_missing(p: Which, text: &str, tool: &str, path: &str) -> bool {
    if p == Which::Bwrap {
        return text.contains(&format!("{tool}: {path}: No such file or directory"));
    }
    text.lines()
        .any(|l| l.contains(path) && l.contains("No such file or directory"))
}

fn normal_work_in_the_repo_succeeds(p: Which) {
    let Some(fx) = Sandbox::new(p) else { return };
    fx.put("README.md", "hello from the host\n");
    let out = fx.sh(
        "set -e; if command -v git >/dev/null; then git init -q . && \
         git -c user.email=a@b -c user.name=t add README.md && git status --porcelain; \
         else echo NO-GIT; fi; ls; cat README.md; echo made-inside > new.txt; \
         mkdir -p sub/dir && echo deep > sub/dir/f; pwd; echo \"home=$HOME\"; \
         echo tmp > /tmp/x && cat /tmp/x; echo h > \"$HOME/h\" && cat \"$HOME/h\"; \
         stat -c 'mode %a' /etc /home; head -n 1 /etc/passwd; \
         (echo x >> /etc/passwd) 2>/dev/null || echo PASSWD-READ-ONLY",
    );
    assert_eq!(out.exit_code, Some(0), "stderr: {}", stderr(&out));
    let s = stdout(&out);
    if p.is_container() {
        // The default image is a static busybox: no git to run (the guard is tested without).
        assert!(s.contains("NO-GIT"), "{s}");
    } else {
        assert!(s.contains("A  README.md"), "{s}");
        assert!(fx.repo.join(".git").is_dir());
        let host_passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        assert!(s.contains(host_passwd.lines().next().unwrap()), "{s}");
    }
    assert!(s.contains("hello from the host"), "{s}");
    assert!(s.contains(&fx.repo.display().to_string()), "{s}");
    assert!(s.contains("home=/home/agent"), "{s}");
    assert!(s.contains("mode 755\nmode 755\n"), "{s}");
    assert!(s.contains("PASSWD-READ-ONLY"), "{s}");
    assert_eq!(
        std::fs::read_to_string(fx.repo.join("new.txt")).unwrap(),
        "made-inside\n"
    );
    assert_eq!(
        std::fs::read_to_string(fx.repo.join("sub/dir/f")).unwrap(),
        "deep\n"
    );
}

fn writes_outside_the_repo_fail(p: Which) {
    let Some(fx) = Sandbox::new(p) else { return };
    let name = format!(".agp-escape-{}", token());
    let parent = fx.repo.parent().unwrap().to_path_buf();
    let home = real_home();
    let targets = [
        "/".into(),
        "/etc".into(),
        "/usr".into(),
        "/usr/local/bin".into(),
        "/usr/bin".into(),
        "/home".into(),
        parent.clone(),
        fx.outside.clone(),
        home.clone(),
        "/root".into(),
        "/var/tmp".into(),
        "/run".into(),
    ];
    let mut script = String::from("export LC_ALL=C\n");
    for t in &targets {
        script.push_str(&format!(
            "( : > '{}/{name}' ) 2>/dev/null && echo 'WROTE {}'\n",
            t.display(),
            t.display()
        ));
    }
    script.push_str(&format!(
        "mkdir -p /tmp/x && : > /tmp/x/{name} && echo TMP-PRIVATE-OK\n\
         echo x > /proc/sys/kernel/hostname 2>/dev/null && echo WROTE-SYSCTL\n\
         echo 3 > /proc/sys/vm/drop_caches 2>/dev/null && echo WROTE-DROP-CACHES\n\
         mount -t tmpfs none /mnt 2>/dev/null && echo MOUNTED\n"
    ));
    let out = fx.sh(&script);
    let s = stdout(&out);
    // Writes into the sandbox's own tmpfs (/tmp, and the repo's parent when it lies under
    // /tmp; Podman's /run and /var/tmp) may succeed inside; what matters is that nothing
    // reaches the host.
    for t in &targets {
        assert!(
            !t.join(&name).exists(),
            "{} was written on the host: {s}",
            t.display()
        );
    }
    for system in ["/", "/etc", "/usr", "/usr/local/bin", "/usr/bin", "/home"] {
        assert!(!s.contains(&format!("WROTE {system}\n")), "{s}");
    }
    assert!(s.contains("TMP-PRIVATE-OK"), "{s}");
    assert!(
        !s.contains("WROTE-SYSCTL") && !s.contains("WROTE-DROP-CACHES"),
        "{s}"
    );
    assert!(!s.contains("MOUNTED"), "{s}");
    assert!(!Path::new("/tmp/x").join(&name).exists());
    assert_ne!(
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim(),
        "x"
    );
}

fn real_home_and_host_secrets_are_invisible(p: Which) {
    let canary = HomeCanary::place();
    let Some(fx) = Sandbox::new(p) else { return };
    let home = real_home();
    let out = fx.sh(&format!(
        "export LC_ALL=C; cat '{}'; ls -A '{}'; ls -A /root; ls -A /home; ls -A \"$HOME\"; \
         cat /etc/shadow; ls /etc/ssh; echo run:; ls -A /run; echo :run; ls /var; ls -A /tmp; \
         cat /proc/1/environ | tr '\\0' '\\n'",
        canary.path.display(),
        home.display()
    ));
    let s = stdout(&out);
    assert!(!s.contains(&canary.content), "canary leaked: {s}");
    assert!(!stderr(&out).contains(&canary.content));
    let e = stderr(&out);
    assert!(
        says_missing(p, &e, "cat", &canary.path.display().to_string()),
        "{e}"
    );
    assert!(says_missing(p, &e, "cat", "/etc/shadow"), "{e}");
    let run: Vec<&str> = s
        .split("run:\n")
        .nth(1)
        .and_then(|r| r.split(":run\n").next())
        .unwrap_or_default()
        .lines()
        .collect();
    match p {
        Which::Bwrap => assert!(e.contains("/run': No such file or directory"), "{e}"),
        // Podman puts its init and `.containerenv` (engine, container and image names, no
        // secret) in /run, and nothing else.
        Which::PodmanRunc => assert!(
            run.iter()
                .all(|l| ["podman-init", ".containerenv"].contains(l)),
            "{s}"
        ),
        _ => assert!(says_missing(p, &e, "ls", "/run"), "{e}"),
    }
    // /home holds only the sandbox's empty tmpfs HOME.
    assert!(s.contains("agent\n"), "{s}");
    assert!(!s.contains(".agp-test-canary"), "{s}");
}

fn proc_tricks_do_not_reach_the_host(p: Which) {
    let canary = HomeCanary::place();
    let Some(fx) = Sandbox::new(p) else { return };
    std::fs::write(fx.outside.join("secret"), "outside-secret\n").unwrap();
    let host_pid = std::process::id();
    let out = fx.sh(&format!(
        "export LC_ALL=C; ls /proc/1/root/; echo ---; ls /proc/self/root/..; echo ---; \
         ls -d /proc/{host_pid} 2>&1; ls /proc | grep -c '^[0-9]'; echo ---; \
         cat /proc/1/cmdline | tr '\\0' ' '; echo; echo ---; \
         head -c 8 /proc/kpageflags >/dev/null && echo READ-KPAGEFLAGS; \
         head -c 8 /proc/kpageflags 2>/dev/null | od -An | grep -q . && echo KPAGEFLAGS-CONTENT; \
         cat /proc/keys && echo READ-KEYS; \
         cat /proc/keys 2>/dev/null | od -An | grep -q . && echo KEYS-CONTENT; \
         readlink /proc/1/cwd; ls /proc/1/root/root /proc/1/root/work; \
         echo c > /proc/sysrq-trigger 2>/dev/null && echo SYSRQ; \
         grep NoNewPrivs /proc/self/status; grep CapBnd /proc/self/status; echo ---; \
         for r in /proc/1/root /proc/self/root/.. /proc/self/root/../..; do \
           cat \"$r{c}\" \"$r{o}/secret\"; done 2>/dev/null; true",
        c = canary.path.display(),
        o = fx.outside.display(),
    ));
    let s = stdout(&out);
    let sections: Vec<&str> = s.split("---\n").collect();
    // Whatever root a /proc link leads to, the host's files are not in it.
    assert!(
        !s.contains(&canary.content) && !s.contains("outside-secret"),
        "{s}"
    );
    assert!(
        sections[2].contains("No such file or directory"),
        "{}",
        sections[2]
    );
    let visible: u32 = sections[2].lines().last().unwrap().trim().parse().unwrap();
    assert!(visible < 10, "{visible} processes visible: {s}");
    // (Line matches: bwrap's command line, shown above, contains the script itself.)
    for leak in ["KPAGEFLAGS-CONTENT", "KEYS-CONTENT", "SYSRQ"] {
        assert!(!s.lines().any(|l| l == leak), "{leak}: {s}");
    }
    assert!(s.contains("CapBnd:\t0000000000000000"), "{s}");
    if p == Which::Bwrap {
        // The sandbox's own root, not the host's: no /root, /work, /var, /home/<user>.
        for dir in ["root", "var", "work", "run", "srv", "boot"] {
            assert!(
                !sections[0].lines().any(|l| l == dir),
                "/proc/1/root shows {dir}: {}",
                sections[0]
            );
            assert!(!sections[1].lines().any(|l| l == dir), "{}", sections[1]);
        }
        // pid 1 is bubblewrap's own init inside the new pid namespace.
        assert!(sections[3].contains("bwrap"), "{}", sections[3]);
        for leak in ["READ-KPAGEFLAGS", "READ-KEYS"] {
            assert!(!s.lines().any(|l| l == leak), "{leak}: {s}");
        }
        assert!(
            stderr(&out).contains("/proc/1/root/root': No such file or directory"),
            "{out:?}"
        );
    }
}

fn symlinks_planted_in_the_repo_do_not_lead_out(p: Which) {
    let canary = HomeCanary::place();
    let Some(fx) = Sandbox::new(p) else { return };
    let outside_file = fx.outside.join("secret.txt");
    std::fs::write(&outside_file, "outside-secret\n").unwrap();
    symlink(&canary.path, fx.repo.join("to-canary")).unwrap();
    symlink(&outside_file, fx.repo.join("to-outside")).unwrap();
    symlink("../outside/secret.txt", fx.repo.join("relative-up")).unwrap();
    symlink("/etc/shadow", fx.repo.join("to-shadow")).unwrap();
    symlink(real_home(), fx.repo.join("to-home")).unwrap();
    symlink(&fx.outside, fx.repo.join("to-outside-dir")).unwrap();
    let out = fx.sh(
        "export LC_ALL=C; cat to-canary to-outside relative-up to-shadow; ls -A to-home/; \
         echo pwned > to-outside; echo pwned > to-outside-dir/new; echo pwned > to-home/.agp-pwned; \
         ln -s / root-link && ls root-link/; true",
    );
    let s = stdout(&out);
    assert!(
        !s.contains(&canary.content) && !s.contains("outside-secret"),
        "{s}"
    );
    assert!(!s.contains("root:"), "{s}");
    assert_eq!(
        std::fs::read_to_string(&outside_file).unwrap(),
        "outside-secret\n"
    );
    assert!(!fx.outside.join("new").exists());
    assert!(!real_home().join(".agp-pwned").exists());
    let _ = std::fs::remove_file(real_home().join(".agp-pwned"));
}

/// A session with a bound: every provider must take it (Podman through its own API).
fn bounded(p: Which, edit: impl FnOnce(&mut SandboxSpec)) -> Option<Sandbox> {
    match Sandbox::try_with_spec(p, edit)? {
        Ok(fx) => Some(fx),
        Err(e) => panic!("spawn {p:?} session: {e}"),
    }
}

fn cpu_limit_holds(p: Which) {
    let bound = |spec: &mut SandboxSpec| spec.limits.max_cpu_seconds = Some(1);
    let Some(fx) = bounded(p, bound) else {
        return;
    };
    if p.is_runsc() {
        // gVisor does not enforce RLIMIT_CPU: the provider must say so, and the timeout stops
        // the loop instead.
        let caveats = fx.isolation_caveats();
        assert!(
            caveats.contains("max_cpu_seconds (RLIMIT_CPU) is NOT enforced under runsc"),
            "{caveats}"
        );
        let spin = fx.sh_timeout("while :; do :; done", Duration::from_secs(3));
        assert!(spin.timed_out, "{spin:?}");
        assert_eq!(stdout(&fx.sh("echo fine")), "fine\n");
        return;
    }
    let spin = fx.sh_timeout("while :; do :; done", Duration::from_secs(30));
    assert!(!spin.timed_out, "RLIMIT_CPU did not stop the loop");
    // Killed by SIGXCPU (24) or SIGKILL (9), reported as 128 + signal.
    assert!(matches!(spin.exit_code, Some(152 | 137)), "{spin:?}");
    assert_eq!(stdout(&fx.sh("echo fine")), "fine\n");
}

fn memory_limit_holds(p: Which) {
    // runc's own init runs under the container's RLIMIT_AS and cannot start below about
    // 2 GiB (seen with runc 1.1.5: "unable to init seccomp ... cannot allocate memory"), so
    // there the bound is 2 GiB and the allocation past it 3 GB.
    let (bound, past) = match p {
        Which::DockerRunc | Which::PodmanRunc => (2048u64 << 20, 3_000_000_000u64),
        _ => (256 << 20, 400_000_000),
    };
    let edit = move |spec: &mut SandboxSpec| spec.limits.max_memory_bytes = Some(bound);
    let Some(fx) = bounded(p, edit) else {
        return;
    };
    // dd allocates its block at once: more than the bound cannot be had.
    let big = fx.sh(&format!(
        "dd if=/dev/zero of=/dev/null bs={past} count=1 && echo allocated"
    ));
    assert_ne!(big.exit_code, Some(0), "{big:?}");
    assert!(!stdout(&big).contains("allocated"), "{big:?}");
    // coreutils: "memory exhausted"; busybox: "out of memory".
    let e = stderr(&big);
    assert!(
        e.contains("memory exhausted") || e.contains("out of memory"),
        "{big:?}"
    );
    let small =
        fx.sh("dd if=/dev/zero of=/dev/null bs=50000000 count=1 2>/dev/null && echo allocated");
    assert_eq!(stdout(&small), "allocated\n", "{small:?}");
    if p == Which::Bwrap {
        let big = fx.sh("python3 -c 'b = bytearray(400_000_000); print(\"allocated\")'");
        assert_ne!(big.exit_code, Some(0));
        assert!(!stdout(&big).contains("allocated"), "{big:?}");
        assert!(stderr(&big).contains("MemoryError"), "{big:?}");
        let small = fx.sh("python3 -c 'b = bytearray(50_000_000); print(\"allocated\")'");
        assert_eq!(stdout(&small), "allocated\n", "{small:?}");
    }
}

/// A number no other process on the host has in its command line.
fn unique_seconds() -> String {
    format!(
        "3{}",
        u64::from_str_radix(&token()[..12], 16).unwrap() % 1_000_000_000_000
    )
}

fn timeout_kills_the_whole_sandbox(p: Which) {
    let Some(fx) = Sandbox::new(p) else { return };
    // `sleep N` with a unique N: the marker in each process's command line on the host (and,
    // under gVisor, whose processes the host does not see, inside).
    let marker = unique_seconds();
    let started = std::time::Instant::now();
    let out = fx.sh_timeout(
        &format!("(sleep {marker}) & (sleep {marker}) & wait"),
        Duration::from_millis(500),
    );
    assert!(out.timed_out);
    assert_eq!(out.exit_code, None);
    if p == Which::Bwrap {
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    let survivors = wait_gone(&format!("sleep\0{marker}"), Duration::from_secs(5));
    assert!(survivors.is_empty(), "{survivors:?}");
    let inside = fx.sh(&format!(
        "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f 2>/dev/null; echo; done | grep -c '^sleep {marker}'"
    ));
    assert_eq!(stdout(&inside), "0\n", "{inside:?}");
}

fn output_is_capped(p: Which) {
    let Some(fx) = Sandbox::build(p, |_| {}, |_| {}, |provider| provider.output_cap(1000)) else {
        return;
    };
    let out = fx.sh("head -c 5000000 /dev/zero; echo done >&2");
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(out.stdout.len(), 1000);
    assert!(out.truncated);
    assert_eq!(stderr(&out), "done\n");
}

fn stdin_is_delivered(p: Which) {
    let Some(fx) = Sandbox::new(p) else { return };
    let request = ExecRequest {
        stdin: Some(b"shout\n".to_vec()),
        ..run_in(&fx.repo, &["tr", "a-z", "A-Z"])
    };
    let out = fx.exec(&request).unwrap();
    assert_eq!(stdout(&out), "SHOUT\n");
}

fn requests_outside_the_repo_or_malformed_are_refused(p: Which) {
    let Some(fx) = Sandbox::new(p) else { return };
    for (argv, cwd) in [
        (vec!["ls".to_string()], fx.outside.clone()),
        (vec!["ls".to_string()], fx.repo.join("../outside")),
        (vec!["ls".to_string()], "/".into()),
        (vec![], fx.repo.clone()),
        (vec!["a\0b".to_string()], fx.repo.clone()),
    ] {
        let err = fx
            .exec(&ExecRequest {
                argv,
                cwd,
                stdin: None,
                timeout: Duration::from_secs(5),
            })
            .unwrap_err();
        assert!(matches!(err, SandboxError::Refused(_)), "{err}");
    }
    let missing = fx.sh("exit 0");
    assert_eq!(missing.exit_code, Some(0));
    let out = fx.run(&["no-such-program-agp"]).unwrap();
    assert_eq!(out.exit_code, Some(127), "{out:?}");
}

fn concurrent_commands_in_one_session_are_independent(p: Which) {
    let Some(fx) = Sandbox::new(p) else { return };
    let fx = std::sync::Arc::new(fx);
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let fx = std::sync::Arc::clone(&fx);
            // Each bubblewrap command has its own /tmp; a container's /tmp is the session's
            // (the provider's stated caveat), so there each command keeps to its own file.
            let mine = if p.is_container() {
                format!("/tmp/mine-{i}")
            } else {
                "/tmp/mine".to_string()
            };
            std::thread::spawn(move || {
                let out = fx.sh(&format!(
                    "echo {i} > {mine}; sleep 0.2; cat {mine}; echo {i} > out-{i}"
                ));
                (i, out)
            })
        })
        .collect();
    for h in handles {
        let (i, out) = h.join().unwrap();
        // Nobody else's value shows up.
        assert_eq!(stdout(&out), format!("{i}\n"), "{out:?}");
        assert!(fx.repo.join(format!("out-{i}")).exists());
    }
}

fn seeded_files_land_read_only_and_state_dirs_writable(p: Which) {
    let seed = tempfile::tempdir().unwrap();
    let settings = seed.path().join("managed-settings.json");
    std::fs::write(&settings, "{\"allowManagedHooksOnly\": true}\n").unwrap();
    let state = seed.path().join("codex-home");
    std::fs::create_dir(&state).unwrap();
    give_to_sandbox_user(p, &state);
    let (s2, st2) = (settings.clone(), state.clone());
    let Some(fx) = Sandbox::with_spec(p, move |spec| {
        spec.binds.push(BindMount {
            source: s2,
            dest: "/etc/claude-code/managed-settings.json".into(),
            writable: false,
        });
        spec.binds.push(BindMount {
            source: st2,
            dest: "/home/agent/.codex".into(),
            writable: true,
        });
    }) else {
        return;
    };
    let out = fx.sh(
        "export LC_ALL=C; cat /etc/claude-code/managed-settings.json; \
         echo '{}' > /etc/claude-code/managed-settings.json && echo EDITED; \
         mkdir /etc/claude-code/managed-settings.d && echo ADDED; \
         rm -f /etc/claude-code/managed-settings.json && echo REMOVED; \
         echo state > /home/agent/.codex/auth.json && echo STATE-WRITTEN",
    );
    let s = stdout(&out);
    assert!(
        s.starts_with("{\"allowManagedHooksOnly\": true}\n"),
        "{out:?}"
    );
    for bad in ["EDITED", "ADDED", "REMOVED"] {
        assert!(!s.contains(bad), "{bad}: {s}");
    }
    assert!(s.contains("STATE-WRITTEN"), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(&settings).unwrap(),
        "{\"allowManagedHooksOnly\": true}\n"
    );
    assert_eq!(
        std::fs::read_to_string(state.join("auth.json")).unwrap(),
        "state\n"
    );
}

fn bind_sources_inside_the_repo_are_refused(p: Which) {
    let Some(provider) = Provider::of(p) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let repo = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::create_dir(repo.join("cache")).unwrap();
    // Owned as a container session needs, so what is refused is the bind and nothing else.
    give_to_sandbox_user(p, &repo);
    let mut spec = SandboxSpec::new("s", &repo);
    spec.ro_binds.push(repo.join("cache"));
    let err = provider.spawn_err(&spec).expect("refused");
    assert!(err.to_string().contains("inside the repository"), "{err}");
    let mut spec = SandboxSpec::new("s", &repo);
    spec.binds.push(BindMount {
        source: repo.join("cache"),
        dest: "/home/agent/.cache".into(),
        writable: true,
    });
    let err = provider.spawn_err(&spec).expect("refused");
    assert!(err.to_string().contains("inside the repository"), "{err}");
}
