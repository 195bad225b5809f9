//! A loopback TCP port where every connection is refused, for as long as it is held.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::OwnedFd;

use rustix::net::{AddressFamily, SocketType};

/// A port bound on 127.0.0.1 and never listened on: connecting is refused, and since the
/// port stays bound no other test running in parallel can take it over (a port merely found
/// free a moment ago can be, and then the "unreachable" peer answers).
pub struct RefusedPort {
    _socket: OwnedFd,
    port: u16,
}

impl RefusedPort {
    pub fn new() -> std::io::Result<Self> {
        let socket = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None)?;
        rustix::net::bind(&socket, &SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
        let port = SocketAddrV4::try_from(rustix::net::getsockname(&socket)?)?.port();
        Ok(Self {
            _socket: socket,
            port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connecting_is_refused_while_held() {
        let held = RefusedPort::new().unwrap();
        let err = std::net::TcpStream::connect(("127.0.0.1", held.port())).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(std::net::TcpListener::bind(("127.0.0.1", held.port())).is_err());
    }
}
