//! Adversarial tests against a real bubblewrap sandbox: everything a sandboxed command might
//! try to reach the host with. Run as root here and in CI, the hardest case (the sandboxed
//! process keeps kernel uid 0, without capabilities).

use super::support as common;

use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::unix::fs::symlink;
use std::time::Duration;

use agp_contracts::sandbox::{BindMount, ExecOutput, ExecRequest, SandboxError, SandboxProvider};
use common::*;

/// No connection was made (nothing printed `CONNECTED`) and the refusal reached the caller:
/// the host listener is unreachable, not merely silent.
fn assert_refused(out: &ExecOutput, refusal: &str) {
    let s = stdout(out);
    assert!(!s.contains("CONNECTED"), "connected to the host: {s}");
    assert!(stderr(out).contains(refusal), "{}", stderr(out));
}

#[test]
fn normal_work_in_the_repo_succeeds() {
    let fx = Fixture::new();
    std::fs::write(fx.repo.join("README.md"), "hello from the host\n").unwrap();
    let out = fx.sh(
        "set -e; git init -q . && git -c user.email=a@b -c user.name=t add README.md && \
         git status --porcelain; ls; cat README.md; echo made-inside > new.txt; \
         mkdir -p sub/dir && echo deep > sub/dir/f; pwd; echo \"home=$HOME\"; \
         echo tmp > /tmp/x && cat /tmp/x; echo h > \"$HOME/h\" && cat \"$HOME/h\"; \
         stat -c 'mode %a' /etc /home; head -n 1 /etc/passwd; \
         (echo x >> /etc/passwd) 2>/dev/null || echo PASSWD-READ-ONLY",
    );
    assert_eq!(out.exit_code, Some(0), "stderr: {}", stderr(&out));
    let s = stdout(&out);
    assert!(s.contains("A  README.md"), "{s}");
    assert!(s.contains("hello from the host"), "{s}");
    assert!(s.contains(&fx.repo.display().to_string()), "{s}");
    assert!(s.contains("home=/home/agent"), "{s}");
    assert!(s.contains("mode 755\nmode 755\n"), "{s}");
    let host_passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    assert!(s.contains(host_passwd.lines().next().unwrap()), "{s}");
    assert!(s.contains("PASSWD-READ-ONLY"), "{s}");
    assert_eq!(
        std::fs::read_to_string(fx.repo.join("new.txt")).unwrap(),
        "made-inside\n"
    );
    assert_eq!(
        std::fs::read_to_string(fx.repo.join("sub/dir/f")).unwrap(),
        "deep\n"
    );
    assert!(fx.repo.join(".git").is_dir());
}

#[test]
fn host_loopback_is_unreachable() {
    let fx = Fixture::new();
    let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
    v4.set_nonblocking(true).unwrap();
    let p4 = v4.local_addr().unwrap().port();
    let v6 = TcpListener::bind("[::1]:0").ok();
    let p6 = v6.as_ref().map(|l| l.local_addr().unwrap().port());
    let mut script = format!(
        "export LC_ALL=C; (exec 3<>/dev/tcp/127.0.0.1/{p4}) && echo CONNECTED4; \
         (exec 3<>/dev/tcp/localhost/{p4}) && echo CONNECTEDLH;"
    );
    if let Some(p6) = p6 {
        script.push_str(&format!("(exec 3<>/dev/tcp/::1/{p6}) && echo CONNECTED6;"));
    }
    script.push_str("true");
    let out = fx.sh(&script);
    assert_refused(&out, "Connection refused");
    assert!(matches!(v4.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock));
    if let Some(v6) = v6 {
        v6.set_nonblocking(true).unwrap();
        assert!(matches!(v6.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock));
    }
}

#[test]
fn outside_addresses_are_unreachable_because_of_the_namespace() {
    let fx = Fixture::new();
    let out = fx.sh(
        "export LC_ALL=C; (exec 3<>/dev/tcp/1.1.1.1/443) && echo CONNECTED; \
         (exec 3<>/dev/tcp/8.8.8.8/53) && echo CONNECTED; \
         (exec 3<>/dev/udp/8.8.8.8/53 && echo x >&3) && echo UDP-SENT; \
         getent hosts example.com && echo RESOLVED; \
         cat /proc/net/dev; echo routes:; tail -n +2 /proc/net/route; readlink /proc/self/ns/net",
    );
    let s = stdout(&out);
    let e = stderr(&out);
    assert!(
        !s.contains("CONNECTED") && !s.contains("UDP-SENT") && !s.contains("RESOLVED"),
        "{s}"
    );
    // "no route" from an empty namespace, not a timeout of a real network.
    assert_eq!(e.matches("Network is unreachable").count(), 6, "{e}");
    let ifaces: Vec<&str> = s
        .split("routes:")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim()))
        .filter(|n| !n.is_empty() && !n.contains('|'))
        .collect();
    assert_eq!(ifaces, vec!["lo"], "{s}");
    let after_routes = s.split("routes:\n").nth(1).unwrap();
    assert!(
        after_routes.lines().next().unwrap().starts_with("net:["),
        "{s}"
    );
    let host_ns = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert!(!s.contains(&host_ns.display().to_string()), "{s}");
}

#[test]
fn writes_outside_the_repo_fail() {
    let fx = Fixture::new();
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
    // /tmp) may succeed inside; what matters is that nothing reaches the host.
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
    assert!(!std::path::Path::new("/tmp/x").join(&name).exists());
    assert_ne!(
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim(),
        "x"
    );
}

#[test]
fn real_home_and_host_secrets_are_invisible() {
    let canary = HomeCanary::place();
    let fx = Fixture::new();
    let home = real_home();
    let out = fx.sh(&format!(
        "export LC_ALL=C; cat '{}'; ls -A '{}'; ls -A /root; ls -A /home; ls -A \"$HOME\"; \
         cat /etc/shadow; ls /etc/ssh; ls /run; ls /var; ls -A /tmp; cat /proc/1/environ | tr '\\0' '\\n'",
        canary.path.display(),
        home.display()
    ));
    let s = stdout(&out);
    assert!(!s.contains(&canary.content), "canary leaked: {s}");
    assert!(!stderr(&out).contains(&canary.content));
    let e = stderr(&out);
    assert!(
        e.contains(&format!(
            "cat: {}: No such file or directory",
            canary.path.display()
        )),
        "{e}"
    );
    assert!(
        e.contains("cat: /etc/shadow: No such file or directory"),
        "{e}"
    );
    assert!(e.contains("/run': No such file or directory"), "{e}");
    // /home holds only the sandbox's empty tmpfs HOME.
    assert!(s.contains("agent\n"), "{s}");
    assert!(!s.contains(".agp-test-canary"), "{s}");
}

#[test]
fn proc_tricks_do_not_reach_the_host() {
    let fx = Fixture::new();
    let host_pid = std::process::id();
    let out = fx.sh(&format!(
        "export LC_ALL=C; ls /proc/1/root/; echo ---; ls /proc/self/root/..; echo ---; \
         ls -d /proc/{host_pid} 2>&1; ls /proc | grep -c '^[0-9]'; echo ---; \
         cat /proc/1/cmdline | tr '\\0' ' '; echo; echo ---; \
         head -c 8 /proc/kpageflags >/dev/null && echo READ-KPAGEFLAGS; \
         cat /proc/keys && echo READ-KEYS; \
         readlink /proc/1/cwd; ls /proc/1/root/root /proc/1/root/work; \
         echo c > /proc/sysrq-trigger 2>/dev/null && echo SYSRQ; \
         grep NoNewPrivs /proc/self/status; grep CapBnd /proc/self/status"
    ));
    let s = stdout(&out);
    let sections: Vec<&str> = s.split("---\n").collect();
    // The sandbox's own root, not the host's: no /root, /work, /var, /home/<user>.
    for dir in ["root", "var", "work", "run", "srv", "boot"] {
        assert!(
            !sections[0].lines().any(|l| l == dir),
            "/proc/1/root shows {dir}: {}",
            sections[0]
        );
        assert!(!sections[1].lines().any(|l| l == dir), "{}", sections[1]);
    }
    assert!(
        sections[2].contains("No such file or directory"),
        "{}",
        sections[2]
    );
    let visible: u32 = sections[2].lines().last().unwrap().trim().parse().unwrap();
    assert!(visible < 10, "{visible} processes visible: {s}");
    // pid 1 is bubblewrap's own init inside the new pid namespace.
    assert!(sections[3].contains("bwrap"), "{}", sections[3]);
    // (Line matches: bwrap's command line, shown above, contains the script itself.)
    for leak in ["READ-KPAGEFLAGS", "READ-KEYS", "SYSRQ"] {
        assert!(!s.lines().any(|l| l == leak), "{leak}: {s}");
    }
    assert!(
        stderr(&out).contains("/proc/1/root/root': No such file or directory"),
        "{out:?}"
    );
    assert!(s.contains("CapBnd:\t0000000000000000"), "{s}");
}

#[test]
fn symlinks_planted_in_the_repo_do_not_lead_out() {
    let canary = HomeCanary::place();
    let fx = Fixture::new();
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

#[test]
fn cpu_limit_holds() {
    let fx = Fixture::with_spec(|spec| spec.limits.max_cpu_seconds = Some(1));
    let spin = fx.sh_timeout("while :; do :; done", Duration::from_secs(30));
    assert!(!spin.timed_out, "RLIMIT_CPU did not stop the loop");
    // Killed by SIGXCPU (24) or SIGKILL (9), reported by bwrap as 128 + signal.
    assert!(matches!(spin.exit_code, Some(152 | 137)), "{spin:?}");
    assert_eq!(stdout(&fx.sh("echo fine")), "fine\n");
}

#[test]
fn memory_limit_holds() {
    let fx = Fixture::with_spec(|spec| spec.limits.max_memory_bytes = Some(256 * 1024 * 1024));
    let big = fx.sh("python3 -c 'b = bytearray(400_000_000); print(\"allocated\")'");
    assert_ne!(big.exit_code, Some(0));
    assert!(!stdout(&big).contains("allocated"), "{big:?}");
    assert!(stderr(&big).contains("MemoryError"), "{big:?}");
    let small = fx.sh("python3 -c 'b = bytearray(50_000_000); print(\"allocated\")'");
    assert_eq!(stdout(&small), "allocated\n", "{small:?}");
}

#[test]
fn process_limit_is_enforced_or_honestly_not() {
    let fx = Fixture::with_spec(|spec| spec.limits.max_processes = Some(16));
    // Python forks without bash's fork-retry back-off.
    let out = fx.sh(
        "python3 -c '\nimport os, time\npids = []\nfor _ in range(40):\n    try:\n        pid = os.fork()\n    except BlockingIOError:\n        break\n    if pid == 0:\n        time.sleep(5)\n        os._exit(0)\n    pids.append(pid)\nprint(len(pids))\nfor p in pids:\n    os.kill(p, 9)\n'",
    );
    let started: u32 = stdout(&out).trim().parse().unwrap();
    let caveats = fx.provider.isolation().caveats.join("\n");
    if fx.session.process_limit_by_cgroup() {
        // 16 counts bwrap's two processes and bash too.
        assert!(started <= 13, "{started} processes started: {out:?}");
        assert!(caveats.contains("per-session pids cgroup"), "{caveats}");
    } else if is_root() {
        // The kernel exempts root from RLIMIT_NPROC; the provider must say so.
        assert_eq!(started, 40, "{out:?}");
        assert!(
            caveats.contains("RLIMIT_NPROC) is not enforced"),
            "{caveats}"
        );
    } else {
        assert!(started < 40, "{started}");
    }
}

/// Not a test on its own: the stand-in daemon of `killing_the_parent_kills_the_sandbox`, run
/// in a child process of this test binary. Starts a sandboxed long-running command through
/// the provider, as the agent launcher does, then waits to be killed.
#[test]
fn die_with_parent_helper() {
    let (Some(marker), Some(repo)) = (
        std::env::var_os("AGP_DWP_MARKER"),
        std::env::var_os("AGP_DWP_REPO"),
    ) else {
        return;
    };
    let provider = agp_sandbox::BubblewrapProvider::new();
    let session = provider
        .spawn(&agp_contracts::sandbox::SandboxSpec::new("dwp", &repo))
        .unwrap();
    let script = format!("exec -a {} sleep 300", marker.to_string_lossy());
    let mut child = provider
        .command(
            &session,
            &["bash".into(), "-c".into(), script],
            session.repo(),
        )
        .unwrap()
        .spawn()
        .unwrap();
    let _ = child.wait();
}

#[test]
fn killing_the_parent_kills_the_sandbox() {
    let fx = Fixture::new();
    let marker = format!("agp-dwp-{}", token());
    let mut parent = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "suite::escape::die_with_parent_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("AGP_DWP_MARKER", &marker)
        .env("AGP_DWP_REPO", &fx.repo)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while host_pids_with(&format!("{marker}\0")).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "sandboxed sleep never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    parent.kill().unwrap();
    parent.wait().unwrap();
    let survivors = wait_gone(&marker, Duration::from_secs(5));
    assert!(
        survivors.is_empty(),
        "sandboxed processes survived: {survivors:?}"
    );
}

#[test]
fn timeout_kills_the_whole_sandbox() {
    let fx = Fixture::new();
    let marker = format!("agp-to-{}", token());
    let started = std::time::Instant::now();
    let out = fx.sh_timeout(
        &format!("(exec -a {marker} sleep 300) & (exec -a {marker} sleep 300) & wait"),
        Duration::from_millis(500),
    );
    assert!(out.timed_out);
    assert_eq!(out.exit_code, None);
    assert!(started.elapsed() < Duration::from_secs(10));
    let survivors = wait_gone(&marker, Duration::from_secs(5));
    assert!(survivors.is_empty(), "{survivors:?}");
}

#[test]
fn output_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let provider = agp_sandbox::BubblewrapProvider::new().output_cap(1000);
    let spec = agp_contracts::sandbox::SandboxSpec::new("s", dir.path());
    let session = provider.spawn(&spec).unwrap();
    let script = "head -c 5000000 /dev/zero; echo done >&2";
    let out = provider
        .exec(&session, &bash_in(session.repo(), script))
        .unwrap();
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(out.stdout.len(), 1000);
    assert!(out.truncated);
    assert_eq!(stderr(&out), "done\n");
}

#[test]
fn stdin_is_delivered() {
    let fx = Fixture::new();
    let request = ExecRequest {
        stdin: Some(b"shout\n".to_vec()),
        ..run_in(&fx.repo, &["tr", "a-z", "A-Z"])
    };
    let out = fx.provider.exec(&fx.session, &request).unwrap();
    assert_eq!(stdout(&out), "SHOUT\n");
}

#[test]
fn requests_outside_the_repo_or_malformed_are_refused() {
    let fx = Fixture::new();
    for (argv, cwd) in [
        (vec!["ls".to_string()], fx.outside.clone()),
        (vec!["ls".to_string()], fx.repo.join("../outside")),
        (vec!["ls".to_string()], "/".into()),
        (vec![], fx.repo.clone()),
        (vec!["a\0b".to_string()], fx.repo.clone()),
    ] {
        let err = fx
            .provider
            .exec(
                &fx.session,
                &ExecRequest {
                    argv,
                    cwd,
                    stdin: None,
                    timeout: Duration::from_secs(5),
                },
            )
            .unwrap_err();
        assert!(matches!(err, SandboxError::Refused(_)), "{err}");
    }
    let missing = fx.sh("exit 0");
    assert_eq!(missing.exit_code, Some(0));
    let out = fx.run(&["no-such-program-agp"]).unwrap();
    assert_eq!(out.exit_code, Some(127));
}

#[test]
fn a_sandbox_that_cannot_be_built_is_an_error_not_a_result() {
    let dir = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let provider = agp_sandbox::BubblewrapProvider::new();
    let mut spec = agp_contracts::sandbox::SandboxSpec::new("s", dir.path());
    // /usr is bound read-only: bubblewrap cannot create a mount point under it.
    spec.binds.push(BindMount {
        source: src.path().to_path_buf(),
        dest: "/usr/agp-cannot-exist-here".into(),
        writable: false,
    });
    let session = provider.spawn(&spec).unwrap();
    let err = provider
        .exec(&session, &run_in(session.repo(), &["true"]))
        .unwrap_err();
    assert!(
        matches!(&err, SandboxError::Refused(m) if m.contains("could not set up")),
        "{err}"
    );
    let preflight = provider.preflight(&session).unwrap_err();
    assert!(
        matches!(preflight, SandboxError::PreflightFailed(_)),
        "{preflight}"
    );
}

#[test]
fn read_only_socket_directory_is_usable_but_not_replaceable() {
    let sockets = tempfile::tempdir().unwrap();
    let sock_path = sockets.path().join("gw.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let dir = sockets.path().to_path_buf();
    let fx = Fixture::with_spec(|spec| spec.ro_binds.push(dir.clone()));
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).unwrap();
        conn.write_all(b"pong\n").unwrap();
        buf
    });
    let out = fx.sh(&format!(
        "python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); \
         s.sendall(b\"ping\\n\"); print(s.recv(16).decode().strip())' '{p}'; \
         rm -f '{p}' && echo REMOVED; : > '{d}/other' && echo CREATED",
        p = sock_path.display(),
        d = dir.display()
    ));
    assert_eq!(&server.join().unwrap(), b"ping\n");
    let s = stdout(&out);
    assert!(s.starts_with("pong\n"), "{s} {}", stderr(&out));
    assert!(!s.contains("REMOVED") && !s.contains("CREATED"), "{s}");
    assert!(sock_path.exists());
}

#[test]
fn host_abstract_unix_sockets_and_shm_are_out_of_reach() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("agp-test-{}", token());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    listener.set_nonblocking(true).unwrap();
    let shm_name = format!("agp-test-shm-{}", token());
    let fx = Fixture::new();
    let out = fx.sh(&format!(
        "python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); s.connect(\"\\0{name}\"); print(\"CONNECTED\")'; \
         echo x > /dev/shm/{shm_name} && echo SHM-PRIVATE"
    ));
    assert_refused(&out, "ConnectionRefusedError");
    let s = stdout(&out);
    assert!(matches!(listener.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock));
    assert!(s.contains("SHM-PRIVATE"), "{out:?}");
    assert!(!std::path::Path::new("/dev/shm").join(&shm_name).exists());
}

#[test]
fn concurrent_commands_in_one_session_are_independent() {
    let fx = std::sync::Arc::new(Fixture::new());
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let fx = std::sync::Arc::clone(&fx);
            std::thread::spawn(move || {
                let out = fx.sh(&format!(
                    "echo {i} > /tmp/mine; sleep 0.2; cat /tmp/mine; echo {i} > out-{i}"
                ));
                (i, out)
            })
        })
        .collect();
    for h in handles {
        let (i, out) = h.join().unwrap();
        // Each command has its own /tmp: nobody else's value shows up.
        assert_eq!(stdout(&out), format!("{i}\n"), "{out:?}");
        assert!(fx.repo.join(format!("out-{i}")).exists());
    }
}

#[test]
fn long_running_command_gets_its_own_stdio() {
    use std::io::{BufRead, BufReader, Write};
    let fx = Fixture::new();
    let mut cmd = fx
        .provider
        .command(
            &fx.session,
            &[
                "bash".into(),
                "-c".into(),
                "while read -r line; do echo \"got $line in $PWD as $HOME\"; done".into(),
            ],
            &fx.repo,
        )
        .unwrap();
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for word in ["one", "two"] {
        writeln!(stdin, "{word}").unwrap();
        let line = lines.next().unwrap().unwrap();
        assert_eq!(
            line,
            format!("got {word} in {} as /home/agent", fx.repo.display())
        );
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[test]
fn seeded_files_land_read_only_and_state_dirs_writable() {
    let seed = tempfile::tempdir().unwrap();
    let settings = seed.path().join("managed-settings.json");
    std::fs::write(&settings, "{\"allowManagedHooksOnly\": true}\n").unwrap();
    let state = seed.path().join("codex-home");
    std::fs::create_dir(&state).unwrap();
    let (s2, st2) = (settings.clone(), state.clone());
    let fx = Fixture::with_spec(move |spec| {
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
    });
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

#[cfg(target_arch = "x86_64")]
#[test]
fn risky_system_calls_are_refused_by_seccomp() {
    let fx = Fixture::new();
    // keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING), bpf(0, 0, 0),
    // userfaultfd(0), unshare(CLONE_NEWNS), getpid through the x32 ABI.
    let python = [
        "import ctypes",
        "libc = ctypes.CDLL(None, use_errno=True)",
        "calls = [('keyctl', 250, (0, -3)), ('bpf', 321, (0, 0, 0)), ('userfaultfd', 323, (0,)),",
        "         ('unshare', 272, (0x20000,)), ('x32_getpid', 0x40000000 | 39, ())]",
        "for name, nr, args in calls:",
        "    r = libc.syscall(nr, *args)",
        "    print(name, r, ctypes.get_errno())",
        "print('getpid', libc.syscall(39))",
    ]
    .join("\n");
    let out = fx.sh(&format!(
        "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; python3 -c \"{python}\""
    ));
    let s = stdout(&out);
    assert!(s.contains("Seccomp:\t2"), "{out:?}");
    assert!(s.contains("NoNewPrivs:\t1"), "{out:?}");
    for name in ["keyctl", "bpf", "userfaultfd", "unshare", "x32_getpid"] {
        assert!(
            s.lines().any(|l| l == format!("{name} -1 1")),
            "{name} not refused with EPERM: {s}"
        );
    }
    // Ordinary calls still work.
    assert!(
        s.lines()
            .any(|l| l.starts_with("getpid ") && !l.starts_with("getpid -1")),
        "{s}"
    );
}

#[test]
fn git_hooks_and_config_cannot_be_planted_from_inside() {
    let dir = tempfile::tempdir().unwrap();
    let repo = std::fs::canonicalize(dir.path()).unwrap();
    let init = std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(&repo)
        .status()
        .unwrap();
    assert!(init.success());
    let config_before = std::fs::read_to_string(repo.join(".git/config")).unwrap();
    let provider = agp_sandbox::BubblewrapProvider::new();
    let session = provider
        .spawn(&agp_contracts::sandbox::SandboxSpec::new("s", &repo))
        .unwrap();
    let script =
        "printf '#!/bin/sh\\ntouch /tmp/pwned\\n' > .git/hooks/post-checkout && echo HOOK; \
                  git config core.fsmonitor 'touch /tmp/pwned' && echo CONFIG; \
                  echo ok > tracked.txt && git add tracked.txt && \
                  git -c user.email=a@b -c user.name=t commit -qm x && echo COMMITTED";
    let out = provider.exec(&session, &bash_in(&repo, script)).unwrap();
    let s = stdout(&out);
    assert!(!s.contains("HOOK") && !s.contains("CONFIG"), "{out:?}");
    // Ordinary git work still goes through.
    assert!(s.contains("COMMITTED"), "{out:?}");
    assert!(!repo.join(".git/hooks/post-checkout").exists());
    assert_eq!(
        std::fs::read_to_string(repo.join(".git/config")).unwrap(),
        config_before
    );
}

#[test]
fn git_dir_cannot_be_swapped_to_expose_the_host() {
    let canary = HomeCanary::place();
    let dir = tempfile::tempdir().unwrap();
    let repo = std::fs::canonicalize(dir.path()).unwrap();
    assert!(std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(&repo)
        .status()
        .unwrap()
        .success());
    let provider = agp_sandbox::BubblewrapProvider::new();
    let session = provider
        .spawn(&agp_contracts::sandbox::SandboxSpec::new("s", &repo))
        .unwrap();
    let run = |script: String| provider.exec(&session, &bash_in(&repo, &script)).unwrap();
    // Try to move .git away and put symlinks where the protected paths were. A path-based
    // bind would follow them on the host for the next command: /etc is a target that exists
    // on both sides, so the host's whole /etc (shadow included) would be mounted inside.
    let first = run(
        "mv .git .git-moved && echo MOVED; rm -rf .git/hooks && echo REMOVED; \
         mkdir -p .git && ln -sfn /etc .git/hooks && ln -sfn /etc/shadow .git/config && echo PLANTED; true"
            .to_string(),
    );
    assert!(!stdout(&first).contains("MOVED"), "{first:?}");
    assert!(!stdout(&first).contains("REMOVED"), "{first:?}");
    assert!(repo.join(".git/hooks").is_dir() && !repo.join(".git-moved").exists());
    // Whatever was planted, a later command must not see the real HOME.
    let second = run(format!(
        "cat '{c}' /etc/shadow .git/config 2>&1; ls -A /root 2>&1; true",
        c = canary.path.display(),
    ));
    let s = stdout(&second);
    assert!(!s.contains(&canary.content), "{second:?}");
    assert!(
        s.contains("/etc/shadow: No such file or directory"),
        "{second:?}"
    );
    assert!(!s.contains("root:"), "{second:?}");
}

#[test]
fn bind_sources_inside_the_repo_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let repo = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::create_dir(repo.join("cache")).unwrap();
    let mut spec = agp_contracts::sandbox::SandboxSpec::new("s", &repo);
    spec.ro_binds.push(repo.join("cache"));
    let err = agp_sandbox::BubblewrapProvider::new()
        .spawn(&spec)
        .unwrap_err();
    assert!(err.to_string().contains("inside the repository"), "{err}");
    let mut spec = agp_contracts::sandbox::SandboxSpec::new("s", &repo);
    spec.binds.push(BindMount {
        source: repo.join("cache"),
        dest: "/home/agent/.cache".into(),
        writable: true,
    });
    assert!(agp_sandbox::BubblewrapProvider::new().spawn(&spec).is_err());
}
