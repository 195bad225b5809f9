//! A host process listening on a Unix socket inside the repository is unreachable from the
//! sandbox: each socket is masked when the sandbox is built (real bubblewrap, real python3 as
//! the client).

use super::support as common;

use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixListener;
use std::path::Path;

use agp_contracts::sandbox::SandboxError;
use common::*;

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
    let l = UnixListener::bind(path).unwrap();
    l.set_nonblocking(true).unwrap();
    l
}

/// Nothing reached the host listener (judged on the host).
fn nothing_accepted(l: &UnixListener) -> bool {
    matches!(l.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

#[test]
fn host_sockets_in_the_repo_cannot_be_connected_to() {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.repo.join("deep/er/still")).unwrap();
    std::fs::create_dir(fx.repo.join(".git")).unwrap();
    std::fs::write(fx.repo.join("notes.txt"), "ordinary file\n").unwrap();
    let paths = [
        fx.repo.join("tmux.sock"),
        fx.repo.join("deep/er/still/lsp.sock"),
        fx.repo.join(".git/fsmonitor--daemon.ipc"),
    ];
    let listeners: Vec<_> = paths.iter().map(|p| listen(p)).collect();

    let mut argv = vec!["python3".to_string(), "-c".into(), CLIENT.into()];
    argv.extend(paths.iter().map(|p| p.display().to_string()));
    let out = fx.run(&argv).unwrap();
    let s = stdout(&out);
    assert_eq!(out.exit_code, Some(0), "{s}\n{}", stderr(&out));
    for p in &paths {
        let line = s
            .lines()
            .find(|l| l.starts_with(&format!("{}\t", p.display())))
            .unwrap_or_else(|| panic!("no result for {}: {s}", p.display()));
        assert!(line.ends_with("ConnectionRefusedError 111"), "{line}\n{s}");
    }
    // Connecting as such works in here: only the host's sockets are masked.
    assert!(s.contains("own\tCONNECTED"), "{s}");
    for l in &listeners {
        assert!(nothing_accepted(l));
    }

    // Inside, each is a read-only /dev/null that can be neither replaced, removed, linked nor
    // unmounted, and stays on the socket when its directory is renamed; ordinary files are
    // untouched.
    std::fs::write(fx.repo.join("client.py"), CLIENT).unwrap();
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
         python3 client.py renamed/er/still/lsp.sock",
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
        s.contains("renamed/er/still/lsp.sock\tConnectionRefusedError 111"),
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

#[test]
fn a_socket_reached_through_a_repo_symlink_stays_masked() {
    let fx = Fixture::new();
    let host = listen(&fx.repo.join("real.sock"));
    std::os::unix::fs::symlink("real.sock", fx.repo.join("alias")).unwrap();
    std::os::unix::fs::symlink(&fx.repo, fx.repo.join("loop")).unwrap();
    let through_loop = fx.repo.join("loop/loop/alias").display().to_string();
    let out = fx
        .run(&[
            "python3",
            "-c",
            CLIENT,
            "alias",
            "loop/real.sock",
            &through_loop,
        ])
        .unwrap();
    let s = stdout(&out);
    assert_eq!(s.matches("ConnectionRefusedError 111").count(), 3, "{s}");
    // Only the script's own socket connected.
    assert_eq!(s.matches("\tCONNECTED").count(), 1, "{s}");
    assert!(nothing_accepted(&host));
}

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

#[test]
fn more_sockets_than_the_bound_refuse_the_command() {
    let fx = Fixture::new();
    std::fs::create_dir(fx.repo.join("many")).unwrap();
    let _held: Vec<_> = (0..=256)
        .map(|i| listen(&fx.repo.join(format!("many/{i}.sock"))))
        .collect();
    let err = fx.run(&["true"]).unwrap_err();
    match err {
        SandboxError::Refused(m) => {
            assert!(m.contains("more than 256 sockets"), "{m}");
            assert!(m.contains("Unix socket"), "{m}");
        }
        other => panic!("{other}"),
    }
}
