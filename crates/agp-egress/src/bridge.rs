//! TCP-to-Unix-socket forwarder, run INSIDE the sandbox.
//!
//! The sandbox's network namespace has only `lo`; a client that can reach a proxy only over TCP
//! (Codex) is pointed at `127.0.0.1:PORT` there, and this forwards each connection unchanged to
//! the egress proxy's bridged Unix socket. It judges nothing: the proxy on the host side does.
//! Plain threads (one pair per connection) keep it small; an agent opens few connections.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread::JoinHandle;

/// Binds `listen` and forwards every accepted connection to `socket`, on a background thread.
/// Returns the bound address (useful with port 0).
pub fn spawn(listen: SocketAddr, socket: &Path) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(listen)?;
    let addr = listener.local_addr()?;
    let socket = socket.to_path_buf();
    let handle = std::thread::Builder::new()
        .name("agp-egress-bridge".into())
        .spawn(move || accept_loop(&listener, &socket))?;
    Ok((addr, handle))
}

fn accept_loop(listener: &TcpListener, socket: &Path) {
    for conn in listener.incoming() {
        let Ok(tcp) = conn else { continue };
        let socket = socket.to_path_buf();
        let _ = std::thread::Builder::new()
            .name("agp-egress-conn".into())
            .spawn(move || forward(tcp, &socket));
    }
}

fn forward(tcp: TcpStream, socket: &Path) {
    let Ok(unix) = UnixStream::connect(socket) else {
        // The proxy is gone: closing the connection is the only honest answer.
        let _ = tcp.shutdown(Shutdown::Both);
        return;
    };
    let _ = tcp.set_nodelay(true);
    let (Ok(mut tcp_read), Ok(mut unix_write)) = (tcp.try_clone(), unix.try_clone()) else {
        return;
    };
    let upload = std::thread::spawn(move || {
        let _ = io::copy(&mut tcp_read, &mut unix_write);
        let _ = unix_write.shutdown(Shutdown::Write);
    });
    let (mut unix_read, mut tcp_write) = (unix, tcp);
    let _ = io::copy(&mut unix_read, &mut tcp_write);
    let _ = tcp_write.shutdown(Shutdown::Write);
    let _ = upload.join();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;

    #[test]
    fn bytes_pass_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("p.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            s.write_all(&[got.as_slice(), b"-echo"].concat()).unwrap();
        });
        let (addr, _h) = spawn("127.0.0.1:0".parse().unwrap(), &sock).unwrap();
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"hello").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello-echo");
    }

    #[test]
    fn missing_socket_closes_the_connection() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, _h) = spawn("127.0.0.1:0".parse().unwrap(), &dir.path().join("no")).unwrap();
        let mut c = TcpStream::connect(addr).unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        assert!(out.is_empty());
    }
}
