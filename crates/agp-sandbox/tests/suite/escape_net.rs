//! The network and sockets as ways out, on every provider (see `escape`): host loopback,
//! outside addresses, the agent's read-only gateway socket directory, the container engines'
//! API sockets, and abstract Unix sockets and shared memory.

use super::support as common;

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::Path;

use crate::suite::docker::{engine_of, Kind};
use agp_contracts::sandbox::ExecOutput;
use common::provider::{each_provider, Sandbox, Which};
use common::*;

each_provider!(
    host_loopback_is_unreachable,
    outside_addresses_are_unreachable_because_of_the_namespace,
    read_only_socket_directory_is_usable_but_not_replaceable,
    engine_sockets_are_unreachable,
    host_abstract_unix_sockets_and_shm_are_out_of_reach,
);

/// No connection was made (nothing printed `CONNECTED`) and the refusal reached the caller:
/// the host listener is unreachable, not merely silent.
fn assert_refused(out: &ExecOutput, refusal: &str) {
    let s = stdout(out);
    assert!(!s.contains("CONNECTED"), "connected to the host: {s}");
    assert!(stderr(out).contains(refusal), "{}", stderr(out));
}

fn host_loopback_is_unreachable(p: Which) {
    let Some(fx) = Sandbox::new(p) else { return };
    let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
    v4.set_nonblocking(true).unwrap();
    let p4 = v4.local_addr().unwrap().port();
    let v6 = TcpListener::bind("[::1]:0").ok();
    let p6 = v6.as_ref().map(|l| l.local_addr().unwrap().port());
    let mut script = format!("./agp-probe tcp 127.0.0.1 {p4};");
    if let Some(p6) = p6 {
        script.push_str(&format!("./agp-probe tcp ::1 {p6};"));
    }
    script.push_str("true");
    let out = fx.sh(&script);
    assert_refused(&out, "Connection refused");
    let refused = stderr(&out).matches("Connection refused").count();
    assert_eq!(refused, 1 + usize::from(p6.is_some()), "{out:?}");
    assert!(matches!(v4.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock));
    if let Some(v6) = v6 {
        v6.set_nonblocking(true).unwrap();
        assert!(matches!(v6.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock));
    }
}

fn outside_addresses_are_unreachable_because_of_the_namespace(p: Which) {
    let Some(fx) = Sandbox::new(p) else { return };
    let out = fx.sh(
        "export LC_ALL=C; ./agp-probe tcp 1.1.1.1 443; ./agp-probe tcp 8.8.8.8 53; \
         ./agp-probe udp 8.8.8.8 53; \
         (getent hosts example.com || nslookup example.com) >/dev/null 2>&1 && echo RESOLVED; \
         cat /proc/net/dev; echo routes:; tail -n +2 /proc/net/route; readlink /proc/self/ns/net",
    );
    let s = stdout(&out);
    let e = stderr(&out);
    assert!(
        !s.contains("CONNECTED") && !s.contains("UDP-SENT") && !s.contains("RESOLVED"),
        "{s}"
    );
    // "no route" from an empty namespace, not a timeout of a real network (gVisor's network
    // stack says "no route to host").
    let no_route = if p.is_runsc() {
        "No route to host"
    } else {
        "Network is unreachable"
    };
    assert_eq!(e.matches(no_route).count(), 3, "{e}");
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
    let first = after_routes.lines().next().unwrap_or_default();
    if p.is_runsc() {
        // gVisor's own network stack: no route table entries, its own namespace id.
        assert!(first.is_empty() || first.starts_with("net:["), "{s}");
    } else {
        assert!(first.starts_with("net:["), "{s}");
    }
    let host_ns = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert!(!s.contains(&host_ns.display().to_string()), "{s}");
}

fn read_only_socket_directory_is_usable_but_not_replaceable(p: Which) {
    use std::os::unix::fs::PermissionsExt;
    let sockets = tempfile::tempdir().unwrap();
    let sock_path = sockets.path().join("gw.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let dir = sockets.path().to_path_buf();
    if p.is_container() {
        // The gateway serves the container's user (the repository's owner): reachable by it.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&sock_path, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let bind = dir.clone();
    let Some(fx) = Sandbox::with_spec(p, |spec| spec.ro_binds.push(bind)) else {
        return;
    };
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).unwrap();
        // (The unblocking connection below has gone by now.)
        let _ = conn.write_all(b"pong\n");
        buf
    });
    let out = fx.sh(&format!(
        "./agp-probe talk '{p}'; rm -f '{p}' && echo REMOVED; : > '{d}/other' && echo CREATED",
        p = sock_path.display(),
        d = dir.display()
    ));
    let s = stdout(&out);
    if !s.starts_with("CONNECTED\n") {
        // Unblock the server before failing.
        let _ = std::os::unix::net::UnixStream::connect(&sock_path)
            .and_then(|mut c| std::io::Write::write_all(&mut c, b"none\n"));
    }
    // The test engines register runsc with --host-uds=open, as a live agent needs (see the
    // provider's caveat): the socket connects under every provider.
    assert_eq!(&server.join().unwrap(), b"ping\n", "{out:?}");
    assert!(s.starts_with("CONNECTED\npong\n"), "{s} {}", stderr(&out));
    assert!(!s.contains("REMOVED") && !s.contains("CREATED"), "{s}");
    assert!(sock_path.exists());
}

/// The test binary's container engines' API sockets (whichever run here): nothing inside a
/// sandbox of any provider reaches them, by path or otherwise.
fn engine_sockets_are_unreachable(p: Which) {
    let Some(fx) = Sandbox::new(p) else { return };
    let mut sockets: Vec<&Path> = Vec::new();
    // The test engines (this test binary's own, on private sockets), whatever the provider;
    // a container session's own engine first.
    if let Some(d) = fx.daemon {
        sockets.push(d.socket());
    }
    for kind in [Kind::Docker, Kind::Podman] {
        if let Some((d, _)) = engine_of(kind) {
            if !sockets.contains(&d.socket()) {
                sockets.push(d.socket());
            }
        }
    }
    for path in [
        "/var/run/docker.sock",
        "/run/docker.sock",
        "/run/podman/podman.sock",
    ] {
        sockets.push(Path::new(path));
    }
    let mut script = String::new();
    for s in &sockets {
        script.push_str(&format!("./agp-probe unix '{}';", s.display()));
    }
    script.push_str("true");
    let out = fx.sh(&script);
    assert!(!stdout(&out).contains("CONNECTED"), "{out:?}");
    assert_eq!(
        stderr(&out).matches("probe unix").count(),
        sockets.len(),
        "{out:?}"
    );
}

fn host_abstract_unix_sockets_and_shm_are_out_of_reach(p: Which) {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("agp-test-{}", token());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    listener.set_nonblocking(true).unwrap();
    let shm_name = format!("agp-test-shm-{}", token());
    let Some(fx) = Sandbox::new(p) else { return };
    let out = fx.sh(&format!(
        "./agp-probe abstract {name}; echo x > /dev/shm/{shm_name} && echo SHM-PRIVATE"
    ));
    assert_refused(&out, "Connection refused");
    let s = stdout(&out);
    assert!(matches!(listener.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock));
    assert!(s.contains("SHM-PRIVATE"), "{out:?}");
    assert!(!Path::new("/dev/shm").join(&shm_name).exists());
}
