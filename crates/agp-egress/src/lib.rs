//! agp's egress control for sandboxed agents.
//!
//! The sandbox has no network. The agent reaches the outside only through [`EgressProxy`], an
//! HTTP proxy agp runs on the host side, listening on a Unix socket whose directory is bound
//! read-only into the sandbox (so the sandbox can connect but cannot replace it). The proxy
//! speaks plain proxy requests (absolute `http://` URIs) and `CONNECT host:port` (for https,
//! which stays end-to-end TLS); DNS is resolved on the host, never inside. Only hosts on the
//! [`Allowlist`] are reached, and every attempt — allowed or refused, well-formed or not — is
//! reported to an [`EgressObserver`] first (the daemon journals `egress.allowed` /
//! `egress.denied`). An allowed attempt whose report fails is refused: nothing leaves the
//! sandbox unrecorded.
//!
//! Every destination goes through [`guard`]'s check: a name is resolved once on the host, every
//! address it resolves to must be public (or opened by the configuration), and only those
//! checked addresses are connected to.
//!
//! A destination neither the allowlist nor an inspected host covers goes to the
//! [`ProxyConfig::destination_judge`] when one is set (the daemon asks a human), once its
//! addresses passed those checks; the request waits at most [`ProxyConfig::judge_timeout`].
//!
//! Hosts listed in an [`InspectConfig`] are not tunnelled: the proxy answers their CONNECT
//! itself, terminates TLS with a leaf issued by the session's [`SessionCa`], and reads HTTP/1.1
//! requests off the decrypted stream. Each is checked (framing, Host against the TLS server
//! name, path), decided by the host's [`Rule`]s (first match; none: `require`, answered by a
//! [`RequestJudge`]), given the host's [`Injection`]s (credentials, reported by name only) and
//! forwarded over TLS verified against the web PKI roots. Every request is reported to
//! [`EgressObserver::request`]; [`BurstSummary`] folds loops into counted records.
//!
//! Everything that arrives on the socket is an unverified claim: the agent's own shell can reach
//! it too. The proxy therefore trusts nothing but the allowlist, and records the caller's host
//! pid (`SO_PEERCRED`) only as a hint.
//!
//! [`bridge`] is the small forwarder run inside the sandbox for clients (Codex) that can only
//! talk to a TCP proxy: it listens on `127.0.0.1:PORT` inside the sandbox's own network
//! namespace and forwards each connection, byte for byte, to the bridged Unix socket.

pub mod allowlist;
pub mod bench;
pub mod bridge;
mod ca;
pub mod guard;
mod http1;
mod inspect;
mod observer;
mod proxy;
mod rewind;
mod rules;
mod summary;
mod tls;
mod watch;

pub use allowlist::{authority_of_url, normalize_host, Allowlist};
pub use ca::{CaError, SessionCa};
pub use guard::{classify, AddrClass, Resolve, SystemResolver};
pub use inspect::InspectConfig;
pub use observer::{
    EgressAttempt, EgressObserver, JournalObserver, MemoryObserver, RequestReport, UpstreamOutcome,
};
pub use proxy::{EgressProxy, ProxyConfig, RunningProxy, MAX_HEAD_BYTES, UNLISTED_RULE};
pub use rules::{
    normalize_path, CredentialProvider, DenyJudge, Effect, Injection, InspectHost, RequestJudge,
    RequestView, Rule, Verdict, VerdictFuture,
};
pub use rustls::pki_types::CertificateDer;
pub use summary::BurstSummary;
pub use tls::{roots_from_pem, upstream_client_config};
pub use watch::UpstreamWatch;

#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("bad egress allowlist entry {0}")]
    BadAllowlistEntry(String),
    #[error("bad URL {0}")]
    BadUrl(String),
    #[error("egress proxy I/O failed: {0}")]
    Io(#[from] std::io::Error),
}
