//! The session container as Podman's own API makes it (`POST /libpod/containers/create`).
//!
//! Podman's Docker-compatible create rejects the address-space ulimit ("invalid ulimit type:
//! as"), so sessions with `max_memory_bytes` (every default session) could not run there.
//! Its own API takes every rlimit (`r_limits`) and states each hardening item in its own
//! fields; the container it makes is then read back through both inspects exactly as one
//! made through the compatible API (`container::Plan::verify`), so a field this Podman
//! ignores (it decodes the body leniently) refuses the session rather than weakening it.
//!
//! Two things the compatible API did that this one does not: it applied `containers.conf`'s
//! `default_ulimits`, and without them Podman asks the runtime for 1048576 open files and
//! processes, which a runtime without `CAP_SYS_RESOURCE` over the host cannot grant (the
//! container then fails to start). So `nofile` and `nproc` are given explicitly: the
//! engine's own limits (what a Docker container inherits from dockerd), read from
//! `/proc/PID/limits` of the process answering on the socket, else agp's own.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use agp_contracts::sandbox::SANDBOX_HOME;
use serde_json::{json, Map, Value};

use super::container::{env_list, Plan, MANAGED_LABEL, OWNER_LABEL, SESSION_LABEL};
use crate::layout::DEFAULT_TMPFS_BYTES;

/// `(soft, hard)` of one rlimit.
pub(crate) type Pair = (u64, u64);

/// The open-file and process limits the container's processes start with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Inherited {
    pub nofile: Pair,
    pub nproc: Pair,
}

impl Inherited {
    /// The engine's own (the process serving `socket`, when this host sees it), else agp's.
    pub(crate) fn of_engine(socket: &Path) -> Self {
        let own_rlimit = |resource| {
            let mut r = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit writes one `rlimit` we own; the resource is a valid constant.
            if unsafe { libc::getrlimit(resource, &raw mut r) } == 0 {
                (r.rlim_cur, r.rlim_max)
            } else {
                (1024, 1024)
            }
        };
        let own = Self {
            nofile: own_rlimit(libc::RLIMIT_NOFILE),
            nproc: own_rlimit(libc::RLIMIT_NPROC),
        };
        let Some(text) = peer_pid(socket)
            .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/limits")).ok())
        else {
            return own;
        };
        Self {
            nofile: parse_limit(&text, "Max open files").unwrap_or(own.nofile),
            nproc: parse_limit(&text, "Max processes").unwrap_or(own.nproc),
        }
    }
}

/// The PID of the process that accepted a connection on `socket` (SO_PEERCRED).
fn peer_pid(socket: &Path) -> Option<i32> {
    let stream = UnixStream::connect(socket).ok()?;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which we own; the fd is
    // open for the call's duration.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &raw mut len,
        )
    };
    (rc == 0 && cred.pid > 0).then_some(cred.pid)
}

/// `(soft, hard)` of the `/proc/PID/limits` line starting with `label`.
fn parse_limit(text: &str, label: &str) -> Option<Pair> {
    let rest = text.lines().find_map(|l| l.strip_prefix(label))?;
    let mut fields = rest.split_whitespace();
    let value = |v: Option<&str>| match v? {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    };
    Some((value(fields.next())?, value(fields.next())?))
}

impl Plan<'_> {
    /// The body of Podman's `POST /libpod/containers/create`: the same container as
    /// `create_body`, in Podman's terms.
    pub(crate) fn libpod_body(&self, inherited: Inherited) -> Value {
        let tmpfs = self.limits.tmpfs_bytes.unwrap_or(DEFAULT_TMPFS_BYTES);
        let bind = |source: &Path, dest: &Path, writable: bool| {
            json!({
                "type": "bind",
                "source": source,
                "destination": dest,
                "options": ["rbind", "rprivate", if writable { "rw" } else { "ro" }],
            })
        };
        let mut mounts = vec![bind(self.repo, self.repo, true)];
        mounts.extend(self.binds.iter().map(|(s, d, w)| bind(s, d, *w)));
        for dest in ["/tmp", SANDBOX_HOME] {
            mounts.push(json!({
                "type": "tmpfs",
                "source": "tmpfs",
                "destination": dest,
                "options": ["rw", "nosuid", "nodev", format!("size={tmpfs}"), "mode=1777"],
            }));
        }
        let mut r_limits: Vec<Value> = self
            .rlimits()
            .into_iter()
            .map(|(name, v)| json!({"type": name, "soft": v, "hard": v}))
            .collect();
        for (name, (soft, hard)) in [("nofile", inherited.nofile), ("nproc", inherited.nproc)] {
            r_limits.push(json!({"type": name, "soft": soft, "hard": hard}));
        }
        let mut resources = Map::new();
        if let Some(bytes) = self.limits.session_memory_bytes {
            // Equal to the limit: no swap on top.
            resources.insert("memory".into(), json!({"limit": bytes, "swap": bytes}));
        }
        if let Some(n) = self.limits.max_processes {
            resources.insert("pids".into(), json!({"limit": n}));
        }
        if let Some(millis) = self.limits.cpu_millis {
            resources.insert(
                "cpu".into(),
                json!({"quota": millis.saturating_mul(100), "period": 100_000}),
            );
        }
        let private = json!({"nsmode": "private"});
        json!({
            "image": self.image_id,
            "user": self.init_user_spec(),
            "entrypoint": ["sleep"],
            "command": ["2147483647"],
            "env": env_list(self.env)
                .into_iter()
                .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), json!(v))))
                .collect::<Map<String, Value>>(),
            "work_dir": self.repo,
            "hostname": "agp-sandbox",
            "labels": {MANAGED_LABEL: "1", SESSION_LABEL: self.session, OWNER_LABEL: self.owner},
            "netns": {"nsmode": "none"},
            "pidns": private,
            "ipcns": private,
            "utsns": private,
            "cgroupns": private,
            "cap_drop": ["ALL"],
            "cap_add": [],
            "no_new_privileges": true,
            "read_only_filesystem": true,
            // Only the tmpfs asked for (not Podman's /run, /var/tmp).
            "read_only_tmpfs": false,
            "privileged": false,
            // The profile containers.conf names (checked after create, see engine_kind).
            "seccomp_policy": "default",
            "init": true,
            // Podman 4.3's API ignores it (containers/podman#28429); sent so a Podman that
            // applies it does, and checked after create either way.
            "oci_runtime": self.runtime.name(),
            "mounts": mounts,
            "r_limits": r_limits,
            "resource_limits": resources,
            "devices": [],
            "log_configuration": {"driver": "none"},
            "restart_policy": "no",
            "stdin": false,
            "terminal": false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::Runtime;
    use agp_contracts::sandbox::ResourceLimits;

    #[test]
    fn proc_limits_lines_are_read() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             32768                32768                processes \n\
                    Max open files            1024                 unlimited            files     \n";
        assert_eq!(parse_limit(text, "Max processes"), Some((32768, 32768)));
        assert_eq!(parse_limit(text, "Max open files"), Some((1024, u64::MAX)));
        assert_eq!(parse_limit(text, "Max locked memory"), None);
        assert_eq!(parse_limit("Max processes  x y", "Max processes"), None);
    }

    #[test]
    fn every_bound_and_hardening_item_is_in_podmans_terms() {
        let limits = ResourceLimits {
            max_processes: Some(64),
            session_memory_bytes: Some(1 << 28),
            max_memory_bytes: Some(1 << 30),
            max_cpu_seconds: Some(600),
            cpu_millis: Some(500),
            ..ResourceLimits::default()
        };
        let env = [("PATH".to_string(), "/bin:/usr/bin".to_string())];
        let plan = Plan {
            session: "s1",
            owner: "o",
            image_id: "sha256:00",
            runtime: Runtime::Runc,
            user: (1000, 1000),
            repo: Path::new("/r"),
            env: &env,
            binds: vec![("/a".into(), "/b".into(), false)],
            limits: &limits,
        };
        let inherited = Inherited {
            nofile: (1024, 4096),
            nproc: (100, 200),
        };
        let body = plan.libpod_body(inherited);
        assert_eq!(body["netns"]["nsmode"], "none");
        assert_eq!(body["cap_drop"], json!(["ALL"]));
        assert_eq!(body["no_new_privileges"], true);
        assert_eq!(body["read_only_filesystem"], true);
        assert_eq!(body["user"], "65533:65533");
        assert_eq!(body["env"]["PATH"], "/bin:/usr/bin");
        let rl = body["r_limits"].as_array().unwrap();
        assert!(rl.contains(&json!({"type": "as", "soft": 1u64 << 30, "hard": 1u64 << 30})));
        assert!(rl.contains(&json!({"type": "cpu", "soft": 600, "hard": 600})));
        assert!(rl.contains(&json!({"type": "nofile", "soft": 1024, "hard": 4096})));
        let res = &body["resource_limits"];
        assert_eq!(
            res["memory"],
            json!({"limit": 1u64 << 28, "swap": 1u64 << 28})
        );
        assert_eq!(res["pids"]["limit"], 64);
        assert_eq!(res["cpu"], json!({"quota": 50_000, "period": 100_000}));
        let mounts = body["mounts"].as_array().unwrap();
        assert!(
            mounts.contains(&json!({"type": "bind", "source": "/a", "destination": "/b",
            "options": ["rbind", "rprivate", "ro"]}))
        );
        assert_eq!(
            mounts.iter().filter(|m| m["type"] == "tmpfs").count(),
            2,
            "{mounts:?}"
        );
    }
}
