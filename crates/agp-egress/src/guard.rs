//! Which network addresses the proxy may connect to, and the one resolution it acts on.
//!
//! Names are resolved on the host, once per connection; every address a name resolves to is
//! checked, and the proxy connects only to those checked addresses (never resolving again, so a
//! DNS answer that changes between the check and the connection — rebinding — changes nothing).
//! Anything but a public unicast address (loopback, private and shared ranges, link-local,
//! cloud metadata, multicast, reserved, documentation) is refused unless the configuration
//! explicitly opened it: a listed IP literal, or a name marked private in the configuration.
//! Metadata services are stricter still: only their literal address, listed as such, opens them.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

/// Names of cloud metadata services, refused whatever they resolve to.
const METADATA_NAMES: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "metadata.azure.internal",
    "instance-data",
    "instance-data.ec2.internal",
];

/// What kind of address an IP is, as far as egress is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrClass {
    Public,
    Loopback,
    /// RFC 1918, CGNAT 100.64/10, IPv6 ULA fc00::/7 and site-local fec0::/10.
    Private,
    LinkLocal,
    /// A cloud metadata service (169.254.169.254, fd00:ec2::254, 100.100.100.200, …).
    Metadata,
    /// Unspecified, multicast, broadcast, documentation, benchmarking and reserved ranges.
    Reserved,
}

impl AddrClass {
    fn label(self) -> &'static str {
        match self {
            AddrClass::Public => "a public address",
            AddrClass::Loopback => "a loopback address",
            AddrClass::Private => "a private address",
            AddrClass::LinkLocal => "a link-local address",
            AddrClass::Metadata => "a cloud metadata address",
            AddrClass::Reserved => "a reserved address",
        }
    }
}

pub fn classify(ip: IpAddr) -> AddrClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddrClass {
    let o = ip.octets();
    let n = u32::from(ip);
    let within = |net: u32, bits: u32| n >> (32 - bits) == net >> (32 - bits);
    if ip == Ipv4Addr::new(169, 254, 169, 254)
        || ip == Ipv4Addr::new(169, 254, 170, 2)
        || ip == Ipv4Addr::new(100, 100, 100, 200)
        || ip == Ipv4Addr::new(192, 0, 0, 192)
    {
        return AddrClass::Metadata;
    }
    if o[0] == 127 {
        AddrClass::Loopback
    } else if o[0] == 10
        || within(0xAC10_0000, 12)
        || within(0xC0A8_0000, 16)
        || within(0x6440_0000, 10)
    {
        AddrClass::Private
    } else if within(0xA9FE_0000, 16) {
        AddrClass::LinkLocal
    } else if o[0] == 0
        || o[0] >= 224
        || within(0xC000_0000, 24)
        || within(0xC000_0200, 24)
        || within(0xC612_0000, 15)
        || within(0xC633_6400, 24)
        || within(0xCB00_7100, 24)
    {
        AddrClass::Reserved
    } else {
        AddrClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddrClass {
    let s = ip.segments();
    // Addresses that embed an IPv4 address are judged by it: mapped ::ffff:0:0/96, the
    // deprecated compatible ::/96, NAT64 64:ff9b::/96 and 6to4 2002::/16.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return classify_v4(embedded_v4(s[6], s[7]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return classify_v4(embedded_v4(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return classify_v4(embedded_v4(s[1], s[2]));
    }
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return AddrClass::Metadata;
    }
    if ip.is_loopback() {
        AddrClass::Loopback
    } else if s[0] & 0xfe00 == 0xfc00 || s[0] & 0xffc0 == 0xfec0 {
        AddrClass::Private
    } else if s[0] & 0xffc0 == 0xfe80 {
        AddrClass::LinkLocal
    } else if ip.is_unspecified()
        || s[0] & 0xff00 == 0xff00
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || (s[0] == 0x2001 && s[1] < 0x0200)
        || s[..4] == [0x100, 0, 0, 0]
        // Only 2000::/3 is global unicast today; anything else is not a destination.
        || s[0] & 0xe000 != 0x2000
    {
        AddrClass::Reserved
    } else {
        AddrClass::Public
    }
}

fn embedded_v4(hi: u16, lo: u16) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))
}

/// Resolves names on the host. A trait so tests can answer with chosen addresses while the
/// connection that follows stays the real one.
pub trait Resolve: Send + Sync {
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>>;
}

/// The host's resolver (getaddrinfo).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok((host, port).to_socket_addrs()?.collect())
    }
}

/// How far the configuration opened a destination beyond public addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// Public addresses only.
    PublicOnly,
    /// Private, loopback and link-local too (a name the configuration marks private).
    Private,
    /// The destination is an IP literal listed as such: that exact address, whatever it is.
    ListedLiteral,
}

/// Why a destination is not connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Policy: the destination is not allowed (403).
    Forbidden(String),
    /// The name did not resolve (502).
    Unresolved(String),
}

impl Refusal {
    pub fn message(&self) -> &str {
        match self {
            Refusal::Forbidden(m) | Refusal::Unresolved(m) => m,
        }
    }
}

/// Resolves `host` (once) and checks every address; returns the addresses to connect to.
pub async fn resolve_checked(
    resolver: &Arc<dyn Resolve>,
    host: &str,
    port: u16,
    opening: Opening,
) -> Result<Vec<SocketAddr>, Refusal> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        check(host, ip, opening)?;
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    if METADATA_NAMES.contains(&host) {
        return Err(Refusal::Forbidden(format!(
            "{host} is a cloud metadata service"
        )));
    }
    let r = resolver.clone();
    let name = host.to_owned();
    let addrs = tokio::task::spawn_blocking(move || r.resolve(&name, port))
        .await
        .map_err(|e| Refusal::Unresolved(format!("cannot resolve {host}: {e}")))?
        .map_err(|e| Refusal::Unresolved(format!("cannot resolve {host}: {e}")))?;
    if addrs.is_empty() {
        return Err(Refusal::Unresolved(format!("{host} has no address")));
    }
    // A literal opening never extends to a name: only `Private` does.
    let opening = if opening == Opening::ListedLiteral {
        Opening::PublicOnly
    } else {
        opening
    };
    for a in &addrs {
        check(host, a.ip(), opening)?;
    }
    Ok(addrs
        .into_iter()
        .map(|a| SocketAddr::new(a.ip(), port))
        .collect())
}

fn check(host: &str, ip: IpAddr, opening: Opening) -> Result<(), Refusal> {
    let class = classify(ip);
    let ok = match (class, opening) {
        (AddrClass::Public, _) | (_, Opening::ListedLiteral) => true,
        (AddrClass::Metadata | AddrClass::Reserved, _) => false,
        (_, Opening::Private) => true,
        (_, Opening::PublicOnly) => false,
    };
    if ok {
        return Ok(());
    }
    let how = if host == ip.to_string() {
        format!("{host} is {}", class.label())
    } else {
        format!("{host} resolves to {ip}, {}", class.label())
    };
    Err(Refusal::Forbidden(format!(
        "{how}; not reached unless the configuration lists it"
    )))
}

/// Connects to the first checked address that answers, within `timeout` in all.
pub async fn connect_checked(addrs: &[SocketAddr], timeout: Duration) -> io::Result<TcpStream> {
    let attempt = async {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address to connect to");
        for a in addrs {
            match TcpStream::connect(a).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no connection in time"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> AddrClass {
        classify(s.parse().unwrap())
    }

    #[test]
    fn classes() {
        for (ip, c) in [
            ("8.8.8.8", AddrClass::Public),
            ("2606:4700::1111", AddrClass::Public),
            ("127.0.0.1", AddrClass::Loopback),
            ("127.9.9.9", AddrClass::Loopback),
            ("::1", AddrClass::Loopback),
            ("10.0.0.1", AddrClass::Private),
            ("172.16.0.1", AddrClass::Private),
            ("172.31.255.255", AddrClass::Private),
            ("192.168.1.1", AddrClass::Private),
            ("100.64.0.1", AddrClass::Private),
            ("100.127.255.255", AddrClass::Private),
            ("fc00::1", AddrClass::Private),
            ("fd12:3456::1", AddrClass::Private),
            ("169.254.1.1", AddrClass::LinkLocal),
            ("fe80::1", AddrClass::LinkLocal),
            ("febf::1", AddrClass::LinkLocal),
            ("169.254.169.254", AddrClass::Metadata),
            ("fd00:ec2::254", AddrClass::Metadata),
            ("100.100.100.200", AddrClass::Metadata),
            ("::ffff:169.254.169.254", AddrClass::Metadata),
            ("::ffff:10.0.0.1", AddrClass::Private),
            ("::ffff:127.0.0.1", AddrClass::Loopback),
            ("64:ff9b::a9fe:a9fe", AddrClass::Metadata),
            ("2002:0a00:0001::1", AddrClass::Private),
            ("::10.0.0.1", AddrClass::Private),
            ("0.0.0.0", AddrClass::Reserved),
            ("::", AddrClass::Reserved),
            ("255.255.255.255", AddrClass::Reserved),
            ("224.0.0.1", AddrClass::Reserved),
            ("ff02::1", AddrClass::Reserved),
            ("192.0.2.1", AddrClass::Reserved),
            ("2001:db8::1", AddrClass::Reserved),
        ] {
            assert_eq!(class(ip), c, "{ip}");
        }
        // Edges stay outside the ranges.
        assert_eq!(class("172.32.0.1"), AddrClass::Public);
        assert_eq!(class("100.128.0.1"), AddrClass::Public);
        assert_eq!(class("11.0.0.1"), AddrClass::Public);
    }

    /// Answers every name with fixed addresses.
    struct Fixed(Vec<IpAddr>);
    impl Resolve for Fixed {
        fn resolve(&self, _: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
            Ok(self.0.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn every_answer_is_checked() {
        let rt = rt();
        let mixed: Arc<dyn Resolve> = Arc::new(Fixed(vec![
            "93.184.216.34".parse().unwrap(),
            "10.1.1.1".parse().unwrap(),
        ]));
        // One private answer among public ones refuses the name.
        let r = rt.block_on(resolve_checked(
            &mixed,
            "evil.example",
            443,
            Opening::PublicOnly,
        ));
        assert!(
            matches!(&r, Err(Refusal::Forbidden(m)) if m.contains("10.1.1.1")),
            "{r:?}"
        );
        // Marked private: allowed, and the port is the requested one.
        let r = rt
            .block_on(resolve_checked(
                &mixed,
                "db.internal",
                5432,
                Opening::Private,
            ))
            .unwrap();
        assert!(r.iter().all(|a| a.port() == 5432));
        // A literal opening is for the literal only, never for a name.
        let r = rt.block_on(resolve_checked(
            &mixed,
            "x.example",
            443,
            Opening::ListedLiteral,
        ));
        assert!(matches!(r, Err(Refusal::Forbidden(_))));

        let meta: Arc<dyn Resolve> = Arc::new(Fixed(vec!["169.254.169.254".parse().unwrap()]));
        let r = rt.block_on(resolve_checked(
            &meta,
            "innocent.example",
            80,
            Opening::Private,
        ));
        assert!(matches!(r, Err(Refusal::Forbidden(m)) if m.contains("metadata")));
        let public: Arc<dyn Resolve> = Arc::new(Fixed(vec!["8.8.8.8".parse().unwrap()]));
        let r = rt.block_on(resolve_checked(
            &public,
            "metadata.google.internal",
            80,
            Opening::Private,
        ));
        assert!(matches!(r, Err(Refusal::Forbidden(_))));
        let none: Arc<dyn Resolve> = Arc::new(Fixed(vec![]));
        let r = rt.block_on(resolve_checked(
            &none,
            "gone.example",
            80,
            Opening::PublicOnly,
        ));
        assert!(matches!(r, Err(Refusal::Unresolved(_))));
    }

    #[test]
    fn literals() {
        let rt = rt();
        let sys: Arc<dyn Resolve> = Arc::new(SystemResolver);
        let r = rt.block_on(resolve_checked(&sys, "10.0.0.1", 443, Opening::PublicOnly));
        assert!(matches!(r, Err(Refusal::Forbidden(_))));
        let r = rt.block_on(resolve_checked(
            &sys,
            "169.254.169.254",
            80,
            Opening::Private,
        ));
        assert!(matches!(r, Err(Refusal::Forbidden(_))));
        let r = rt.block_on(resolve_checked(
            &sys,
            "127.0.0.1",
            80,
            Opening::ListedLiteral,
        ));
        assert_eq!(r.unwrap(), vec!["127.0.0.1:80".parse().unwrap()]);
    }
}
