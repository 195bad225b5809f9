//! A host process listening on a Unix socket inside the repository is unreachable from the
//! sandbox: each socket is masked when the sandbox is built; on every provider (bubblewrap
//! masks for each command, the container provider when the session starts: its stated caveat
//! is that a socket made later is not masked). The client is `agp-probe` (see
//! `support::provider`) and, for the long-running bubblewrap command, python3.

use super::support as common;

use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use agp_contracts::sandbox::SandboxError;
use common::provider::{each_provider, Provider, Sandbox, Which};
use common::*;

each_provider!(
    host_sockets_in_the_repo_cannot_be_connected_to,
    a_socket_reached_through_a_repo_symlink_stays_masked,
    more_sockets_than_the_bound_refuse_the_command,
);

/// Connects to each path given and prints `path<TAB>CONNECTED` or the error; then proves that
/// connecting works at all in here, to a socket the script itself listens on.
const CLIENT: &str = r#"
import os, socket, sys
for p in sys.argv[1:]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(p)
        s.sendall(b"from-the-sandbox")
        print(p + "\tCONNECTED")
    except OSError as e:
        print(p + "\t" + type(e).__name__ + " " + str(e.errno))
    finally:
        s.close()
own = "inside-made.sock"
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(own)
srv.listen(1)
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c.connect(own)
print("own\tCONNECTED")
os.unlink(own)
"#;

fn listen(path: &Path) -> UnixListener {
    use std::os::unix::fs::PermissionsExt;
    let l = UnixListener::bind(path).unwrap();
    l.set_nonblocking(true).unwrap();
    // Connectable by anyone: the container's uid is not the host's, and a socket refused for
    // its permissions would prove nothing about the mask.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).unwrap();
    l
}

/// A session on a repository holding host sockets made by `make` (before the session starts,
/// as the container provider masks then; bubblewrap masks for each command either way).
///
/// Under runsc such a session is refused instead (gVisor cannot mount over a socket to mask
/// it), naming the sockets: checked here, and `None` returned.
fn with_sockets(
    p: Which,
    make: impl FnOnce(&Path) -> Vec<UnixListener>,
) -> Option<(Sandbox, Vec<UnixListener>)> {
    if p.is_runsc() {
        let provider = Provider::of(p)?;
        let dir = tempfile::tempdir().unwrap();
        let repo = std::fs::canonicalize(dir.path()).unwrap();
        let _held = make(&repo);
        common::provider::give_to_sandbox_user(p, &repo);
        let spec = agp_contracts::sandbox::SandboxSpec::new("sockets", &repo);
        let err = provider.spawn_err(&spec).expect("refused").to_string();
        assert!(
            err.contains("cannot start on a repository holding host Unix sockets"),
            "{err}"
        );
        return None;
    }
    let mut listeners = Vec::new();
    let fx = Sandbox::build(p, |repo| listeners = make(repo), |_| {}, |p| p)?;
    Some((fx, listeners))
}

/// Probe each path as a client, then connect to a socket of the script's own.
fn probe_script(paths: &[String]) -> String {
    let mut script = String::new();
    for p in paths {
        script.push_str(&format!("./agp-probe unix '{p}';"));
    }
    script.push_str("./agp-probe own inside-made.sock");
    script
}

/// The probe's refusal of `path` as a masked socket (a /dev/null in its place).
fn refused(stderr: &str, path: &str) -> bool {
    stderr.contains(&format!(
        "probe unix {path}: Connection refused (errno 111)"
    ))
}

/// Nothing reached the host listener (judged on the host).
fn nothing_accepted(l: &UnixListener) -> bool {
    matches!(l.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

fn host_sockets_in_the_repo_cannot_be_connected_to(p: Which) {
    let paths = |repo: &Path| -> Vec<PathBuf> {
        vec![
            repo.join("tmux.sock"),
            repo.join("deep/er/still/lsp.sock"),
            repo.join(".git/fsmonitor--daemon.ipc"),
        ]
    };
    let Some((fx, listeners)) = with_sockets(p, |repo| {
        std::fs::create_dir_all(repo.join("deep/er/still")).unwrap();
        std::fs::create_dir(repo.join(".git")).unwrap();
        std::fs::write(repo.join("notes.txt"), "ordinary file\n").unwrap();
        paths(repo).iter().map(|p| listen(p)).collect()
    }) else {
        return;
    };
    let paths = paths(&fx.repo);
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let out = fx.sh(&probe_script(&names));
    let (s, e) = (stdout(&out), stderr(&out));
    assert_eq!(out.exit_code, Some(0), "{s}\n{e}");
    for p in &names {
        assert!(refused(&e, p), "{p} not refused: {s}\n{e}");
    }
    assert!(
        !s.contains("\nCONNECTED") && !s.starts_with("CONNECTED"),
        "{s}"
    );
    // Connecting as such works in here: only the host's sockets are masked.
    assert!(s.contains("OWN-CONNECTED"), "{s}\n{e}");
    for l in &listeners {
        assert!(nothing_accepted(l));
    }

    // Inside, each is a read-only /dev/null that can be neither replaced, removed, linked nor
    // unmounted, and stays on the socket when its directory is renamed; ordinary files are
    // untouched.
    let out = fx.sh(
        "for p in tmux.sock deep/er/still/lsp.sock .git/fsmonitor--daemon.ipc; do \
           [ -S \"$p\" ] && echo \"SOCKET $p\"; [ -c \"$p\" ] && echo \"masked $p\"; \
           rm -f \"$p\" 2>/dev/null && echo \"REMOVED $p\"; \
           mv \"$p\" moved 2>/dev/null && echo \"MOVED $p\"; \
           ln \"$p\" linked 2>/dev/null && echo \"LINKED $p\"; \
           echo x > \"$p\" 2>/dev/null; \
           umount \"$p\" 2>/dev/null && echo \"UNMOUNTED $p\"; \
           umount -l \"$p\" 2>/dev/null && echo \"UNMOUNTED $p\"; \
         done; cat notes.txt; echo more >> notes.txt; mv deep renamed && echo DIR-MOVED; \
         ./agp-probe unix renamed/er/still/lsp.sock",
    );
    let s = stdout(&out);
    for p in [
        "tmux.sock",
        "deep/er/still/lsp.sock",
        ".git/fsmonitor--daemon.ipc",
    ] {
        assert!(s.contains(&format!("masked {p}\n")), "{s}");
    }
    for bad in ["SOCKET", "REMOVED", "MOVED ", "LINKED", "UNMOUNTED"] {
        assert!(!s.contains(bad), "{bad}: {s}");
    }
    assert!(s.contains("ordinary file\n"), "{s}");
    // The mask moved with the directory renamed around it.
    assert!(s.contains("DIR-MOVED\n"), "{s}");
    assert!(
        refused(&stderr(&out), "renamed/er/still/lsp.sock"),
        "{s}\n{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(fx.repo.join("notes.txt")).unwrap(),
        "ordinary file\nmore\n"
    );

    // On the host the sockets are untouched and still serve.
    let moved = fx.repo.join("renamed/er/still/lsp.sock");
    let kept = [paths[0].clone(), moved, paths[2].clone()];
    for (p, l) in kept.iter().zip(&listeners) {
        let mut c = std::os::unix::net::UnixStream::connect(p).unwrap();
        let (mut server, _) = loop {
            match l.accept() {
                Ok(conn) => break conn,
                Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        };
        std::io::Write::write_all(&mut c, b"host").unwrap();
        drop(c);
        server.set_nonblocking(false).unwrap();
        let mut got = String::new();
        server.read_to_string(&mut got).unwrap();
        assert_eq!(got, "host");
    }
}

fn a_socket_reached_through_a_repo_symlink_stays_masked(p: Which) {
    let Some((fx, listeners)) = with_sockets(p, |repo| {
        let host = listen(&repo.join("real.sock"));
        std::os::unix::fs::symlink("real.sock", repo.join("alias")).unwrap();
        std::os::unix::fs::symlink(repo, repo.join("loop")).unwrap();
        vec![host]
    }) else {
        return;
    };
    let through_loop = fx.repo.join("loop/loop/alias").display().to_string();
    let paths = ["alias".to_string(), "loop/real.sock".into(), through_loop];
    let out = fx.sh(&probe_script(&paths));
    let e = stderr(&out);
    for path in &paths {
        assert!(refused(&e, path), "{path}: {e}");
    }
    // Only the script's own socket connected.
    assert_eq!(stdout(&out), "OWN-CONNECTED\n", "{e}");
    assert!(nothing_accepted(&listeners[0]));
}

/// Bubblewrap only: `command` (a long-running child) has no container counterpart yet.
#[test]
fn a_long_running_command_gets_the_masks_too() {
    let fx = Fixture::new();
    let host = listen(&fx.repo.join("agent-era.sock"));
    let argv = vec![
        "python3".to_string(),
        "-c".into(),
        CLIENT.into(),
        "agent-era.sock".into(),
    ];
    let out = fx
        .provider
        .command(&fx.session, &argv, &fx.repo)
        .unwrap()
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("agent-era.sock\tConnectionRefusedError 111"),
        "{s}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s.contains("own\tCONNECTED"), "{s}");
    assert!(nothing_accepted(&host));
}

fn more_sockets_than_the_bound_refuse_the_command(p: Which) {
    let make = |repo: &Path| -> Vec<UnixListener> {
        std::fs::create_dir(repo.join("many")).unwrap();
        (0..=256)
            .map(|i| listen(&repo.join(format!("many/{i}.sock"))))
            .collect()
    };
    let err = if p.is_container() {
        // The container provider masks when the session starts: the start is refused.
        let Some(provider) = Provider::of(p) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let _held = make(dir.path());
        common::provider::give_to_sandbox_user(p, dir.path());
        let spec = agp_contracts::sandbox::SandboxSpec::new("many", dir.path());
        provider.spawn_err(&spec).expect("refused")
    } else {
        let Some(fx) = Sandbox::new(p) else { return };
        let _held = make(&fx.repo);
        fx.run(&["true"]).unwrap_err()
    };
    match err {
        SandboxError::Refused(m) => {
            assert!(m.contains("more than 256 sockets"), "{m}");
            assert!(m.contains("Unix socket"), "{m}");
        }
        other => panic!("{other}"),
    }
}
