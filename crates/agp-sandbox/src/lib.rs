//! Sandbox providers for agp.
//!
//! - [`BubblewrapProvider`]: every command runs in fresh user, pid, ipc, uts, net (no network)
//!   and mount namespaces built by `bwrap`, with all capabilities dropped, no_new_privs and a
//!   seccomp denylist (which also refuses setuid/setgid modes and device nodes, see
//!   `seccomp`), system directories read-only, only the repository writable (its git
//!   directory only for what committing needs, see `gitguard`), a small tmpfs HOME and
//!   `/tmp`, every host Unix socket in the repository masked (see `sockets`), a cleared
//!   environment, no inherited descriptors, and resource limits: setrlimit
//!   per process, and per session a pids and a memory cgroup where they can be made and a
//!   bound on repository growth (see `cgroup` and `growth`). The preflight
//!   (`SandboxProvider::preflight`, or [`BubblewrapProvider::run_preflight`] for the full
//!   report) proves the isolation from inside instead of trusting the flags.
//! - [`docker::DockerProvider`]: one hardened container per session in a Docker Engine API
//!   engine (runc, or gVisor's runsc for a kernel boundary), each command an exec in it, the
//!   image pinned by digest; its preflight proves the isolation from inside too.
//! - [`NoSandbox`]: the explicit `--sandbox none` opt-out, which isolates nothing and says so.
//!
//! Everything here is blocking (it spawns processes); async callers use a blocking thread.

mod bwrap;
mod cgroup;
pub mod docker;
mod env;
mod gitguard;
mod growth;
mod layout;
mod limits;
mod none;
mod preflight;
mod run;
mod seccomp;
mod sockets;

pub use bwrap::{install_hint, BubblewrapProvider, BubblewrapSession, GitMetadataGuard};
pub use none::{NoSandbox, NoSandboxSession};

/// Default cap on captured stdout and on captured stderr of one command (each).
pub const DEFAULT_OUTPUT_CAP: usize = 1024 * 1024;
