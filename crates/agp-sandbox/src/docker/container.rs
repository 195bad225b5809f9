//! The session container: its hardened configuration, and the check that the engine applied
//! every piece of it (an engine that silently ignores a field must not weaken the sandbox).

use std::path::{Path, PathBuf};

use agp_contracts::sandbox::SANDBOX_HOME;
use serde_json::{json, Value};

use super::engine_kind::podman_checks;
use super::Runtime;
use crate::layout::DEFAULT_TMPFS_BYTES;

/// Label every agp container carries, so orphans can be found.
pub const MANAGED_LABEL: &str = "agp.managed";
/// The container's own processes run as this uid (or the one below, see `init_user_spec`).
const INIT_UID: u32 = 65533;

/// Label naming who started the container (see `DockerProvider::owner`).
pub const OWNER_LABEL: &str = "agp.owner";
/// Label holding the session id.
pub const SESSION_LABEL: &str = "agp.session";

/// What the container is made of, before it is asked for.
pub(crate) struct Plan<'a> {
    pub session: &'a str,
    /// Who started the container (an agp home), for orphan cleanup.
    pub owner: &'a str,
    pub image_id: &'a str,
    pub runtime: Runtime,
    pub user: (u32, u32),
    pub repo: &'a Path,
    pub env: &'a [(String, String)],
    /// (source, dest, writable)
    pub binds: Vec<(PathBuf, PathBuf, bool)>,
    pub limits: &'a agp_contracts::sandbox::ResourceLimits,
}

impl Plan<'_> {
    /// Whether a bind lies in HOME: the HOME tmpfs is then asked for as a mount of its own,
    /// which the engine orders before the binds inside it by depth (a `HostConfig.Tmpfs` one
    /// is mounted after every bind and would hide them).
    fn home_in_mounts(&self) -> bool {
        self.binds
            .iter()
            .any(|(_, dest, _)| dest.starts_with(SANDBOX_HOME) && dest != Path::new(SANDBOX_HOME))
    }

    /// The uid of the container's own processes (its init and the waiting `sleep`): never the
    /// commands' uid, so a command can neither signal nor ptrace them (no capabilities), and
    /// never root.
    pub(crate) fn init_user_spec(&self) -> String {
        let uid = if self.user.0 == INIT_UID {
            INIT_UID - 1
        } else {
            INIT_UID
        };
        format!("{uid}:{uid}")
    }

    /// The per-process rlimits every process in the container gets (soft = hard), by the
    /// engine's short name.
    pub(crate) fn rlimits(&self) -> Vec<(&'static str, u64)> {
        [
            ("cpu", self.limits.max_cpu_seconds),
            ("as", self.limits.max_memory_bytes),
            ("fsize", self.limits.repo_growth_bytes),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.map(|v| (name, v)))
        .collect()
    }

    /// The body of `POST /containers/create`.
    pub(crate) fn create_body(&self) -> Value {
        let tmpfs = self.limits.tmpfs_bytes.unwrap_or(DEFAULT_TMPFS_BYTES);
        let mut mounts = vec![json!({
            "Type": "bind",
            "Source": self.repo,
            "Target": self.repo,
            "ReadOnly": false,
            "BindOptions": {"Propagation": "rprivate"},
        })];
        for (source, dest, writable) in &self.binds {
            mounts.push(json!({
                "Type": "bind",
                "Source": source,
                "Target": dest,
                "ReadOnly": !writable,
                "BindOptions": {"Propagation": "rprivate"},
            }));
        }
        let mut tmpfs_mounts = json!({
            "/tmp": format!("rw,nosuid,nodev,size={tmpfs},mode=1777"),
            // Not `uid=`: Podman refuses that tmpfs option. Only the commands' uid runs
            // anything in the container.
            SANDBOX_HOME: format!("rw,nosuid,nodev,size={tmpfs},mode=1777"),
        });
        if self.home_in_mounts() {
            tmpfs_mounts.as_object_mut().map(|t| t.remove(SANDBOX_HOME));
            mounts.push(json!({
                "Type": "tmpfs",
                "Target": SANDBOX_HOME,
                "TmpfsOptions": {"SizeBytes": tmpfs, "Mode": 0o1777},
            }));
        }
        let ulimits: Vec<Value> = self
            .rlimits()
            .into_iter()
            .map(|(name, v)| json!({"Name": name, "Soft": v, "Hard": v}))
            .collect();
        let mut host = json!({
            "NetworkMode": "none",
            "CapDrop": ["ALL"],
            "CapAdd": [],
            "SecurityOpt": ["no-new-privileges"],
            "ReadonlyRootfs": true,
            "Privileged": false,
            "Init": true,
            "IpcMode": "private",
            // Docker's default on cgroup v1 hosts is the host's cgroup namespace.
            "CgroupnsMode": "private",
            "PidMode": "",
            "Runtime": self.runtime.name(),
            "Mounts": mounts,
            "Tmpfs": tmpfs_mounts,
            "Ulimits": ulimits,
            "LogConfig": {"Type": "none", "Config": {}},
            "RestartPolicy": {"Name": "no"},
            "Devices": [],
            "Dns": [],
        });
        if let Some(bytes) = self.limits.session_memory_bytes {
            host["Memory"] = json!(bytes);
            // Equal to Memory: no swap on top.
            host["MemorySwap"] = json!(bytes);
        }
        if let Some(n) = self.limits.max_processes {
            host["PidsLimit"] = json!(n);
        }
        if let Some(millis) = self.limits.cpu_millis {
            host["NanoCpus"] = json!(millis.saturating_mul(1_000_000));
        }
        json!({
            "Image": self.image_id,
            "User": self.init_user_spec(),
            // PID 1 only waits; every command is an exec. `Init` reaps what commands leave.
            "Entrypoint": ["sleep"],
            "Cmd": ["2147483647"],
            "Env": env_list(self.env),
            "WorkingDir": self.repo,
            "Hostname": "agp-sandbox",
            "NetworkDisabled": true,
            "AttachStdin": false,
            "AttachStdout": false,
            "AttachStderr": false,
            "OpenStdin": false,
            "Tty": false,
            "Labels": {MANAGED_LABEL: "1", SESSION_LABEL: self.session, OWNER_LABEL: self.owner},
            "HostConfig": host,
        })
    }

    /// Compare what the engine reports (`GET /containers/{id}/json`) with what was asked;
    /// every difference is named. `podman`: Podman's own facts (see `engine_kind`), which
    /// replace the compatible inspect's runtime, capability and masked-path fields.
    pub(crate) fn verify(&self, inspect: &Value, podman: Option<&Value>) -> Vec<String> {
        // Only Docker's create was asked for HOME as a mount (Podman's own create takes every
        // tmpfs as a mount, and its compatible inspect reports them all as `Tmpfs`).
        let home_as_mount = self.home_in_mounts() && podman.is_none();
        let mut wrong = Vec::new();
        let host = &inspect["HostConfig"];
        let mut expect = |what: &str, ok: bool| {
            if !ok {
                wrong.push(what.to_string());
            }
        };
        expect("image id", inspect["Image"] == self.image_id);
        expect("running", inspect["State"]["Running"] == true);
        expect("network mode none", host["NetworkMode"] == "none");
        if podman.is_none() {
            expect(
                "all capabilities dropped",
                host["CapDrop"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|x| x.as_str().is_some_and(|s| s.eq_ignore_ascii_case("all")))
                }),
            );
        }
        expect(
            "no capability added",
            host["CapAdd"].as_array().is_none_or(Vec::is_empty),
        );
        expect(
            "no-new-privileges",
            host["SecurityOpt"].as_array().is_some_and(|o| {
                o.iter().any(|x| {
                    x.as_str()
                        .is_some_and(|s| s == "no-new-privileges" || s == "no-new-privileges:true")
                })
            }),
        );
        expect(
            "engine seccomp profile kept",
            host["SecurityOpt"].as_array().is_none_or(|o| {
                !o.iter()
                    .any(|x| x.as_str().is_some_and(|s| s.contains("unconfined")))
            }),
        );
        expect("read-only root filesystem", host["ReadonlyRootfs"] == true);
        expect("not privileged", host["Privileged"] == false);
        match podman {
            None => expect("runtime", host["Runtime"] == self.runtime.name()),
            // Podman's compatible inspect always says "oci"; its own names the runtime.
            Some(facts) => {
                expect("runtime", host["Runtime"] == "oci");
                for (what, ok) in podman_checks(facts, self.runtime.name()) {
                    expect(&what, ok);
                }
            }
        }
        expect(
            "init user",
            inspect["Config"]["User"] == self.init_user_spec(),
        );
        // Mounted, and of the size asked (the request as the engine kept it: `Mounts` of the
        // inspect does not carry tmpfs options).
        let home_size = self.limits.tmpfs_bytes.unwrap_or(DEFAULT_TMPFS_BYTES);
        let home_mount = inspect["Mounts"].as_array().is_some_and(|m| {
            m.iter()
                .any(|m| m["Type"] == "tmpfs" && m["Destination"] == SANDBOX_HOME)
        }) && host["Mounts"].as_array().is_some_and(|m| {
            m.iter().any(|m| {
                m["Type"] == "tmpfs"
                    && m["Target"] == SANDBOX_HOME
                    && m["TmpfsOptions"]["SizeBytes"].as_u64() == Some(home_size)
            })
        });
        expect(
            "tmpfs /tmp and HOME",
            host["Tmpfs"].get("/tmp").is_some()
                && if home_as_mount {
                    home_mount
                } else {
                    host["Tmpfs"].get(SANDBOX_HOME).is_some()
                },
        );
        expect(
            "only the tmpfs asked for",
            host["Tmpfs"].as_object().is_none_or(|t| {
                t.iter().all(|(dest, opts)| {
                    tmpfs_as_asked(
                        dest,
                        opts,
                        self.limits.tmpfs_bytes.unwrap_or(DEFAULT_TMPFS_BYTES),
                    )
                })
            }),
        );
        if let Some(bytes) = self.limits.session_memory_bytes {
            expect("memory limit", host["Memory"] == bytes);
        }
        if let Some(n) = self.limits.max_processes {
            expect("pids limit", host["PidsLimit"] == n);
        }
        if let Some(millis) = self.limits.cpu_millis {
            expect(
                "cpu limit",
                host["NanoCpus"] == millis.saturating_mul(1_000_000),
            );
        }
        for (name, bound) in self.rlimits() {
            expect(
                &format!("{name} ulimit of {bound}"),
                ulimit_held(&host["Ulimits"], name, bound),
            );
        }
        for mode in [
            "PidMode",
            "IpcMode",
            "UTSMode",
            "UsernsMode",
            "CgroupnsMode",
        ] {
            expect(
                "no host namespace shared",
                host[mode].as_str().is_none_or(|m| m != "host"),
            );
        }
        expect(
            "no device",
            host["Devices"].as_array().is_none_or(Vec::is_empty),
        );
        if podman.is_none() {
            expect(
                "the engine's masked /proc paths",
                host["MaskedPaths"]
                    .as_array()
                    .is_some_and(|p| !p.is_empty()),
            );
        }
        // Tmpfs mounts are not listed in `Mounts`; each listed one must be a bind asked for,
        // with the access asked for (a volume of the image's would be one agp did not ask for).
        let mut wanted: Vec<(String, bool)> = vec![(self.repo.display().to_string(), true)];
        if home_as_mount {
            wanted.push((SANDBOX_HOME.to_string(), true));
        }
        wanted.extend(
            self.binds
                .iter()
                .map(|(_, dest, rw)| (dest.display().to_string(), *rw)),
        );
        wanted.sort();
        wanted.dedup();
        let mut got: Vec<(String, bool)> = inspect["Mounts"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|m| {
                (
                    m["Destination"].as_str().unwrap_or_default().to_string(),
                    m["RW"] == true || m["Type"] != "bind",
                )
            })
            .collect();
        got.sort();
        expect("only the repository and the binds asked for", got == wanted);
        wrong
    }
}

/// The engine lists the rlimit `name` (Docker: `as`; Podman: `RLIMIT_AS`) and every entry of
/// that name has soft and hard equal to `bound`.
fn ulimit_held(reported: &Value, name: &str, bound: u64) -> bool {
    let named: Vec<&Value> = reported
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|u| {
            u["Name"].as_str().is_some_and(|n| {
                let n = n.to_ascii_lowercase();
                n.strip_prefix("rlimit_").unwrap_or(&n) == name
            })
        })
        .collect();
    !named.is_empty()
        && named
            .iter()
            .all(|u| u["Soft"] == bound && u["Hard"] == bound)
}

/// Only `/tmp` and HOME are tmpfs, each nosuid, nodev and of the size asked (their pages
/// count against the container's memory limit). Podman's compatible create added `/run` and
/// `/var/tmp` without a size; its own create is asked for none (`read_only_tmpfs: false`).
fn tmpfs_as_asked(dest: &str, opts: &Value, size: u64) -> bool {
    let opts: Vec<&str> = opts.as_str().unwrap_or_default().split(',').collect();
    let size = format!("size={size}");
    (dest == "/tmp" || dest == SANDBOX_HOME)
        && opts.contains(&"nosuid")
        && opts.contains(&"nodev")
        && opts.contains(&size.as_str())
}

pub(crate) fn env_list(env: &[(String, String)]) -> Vec<String> {
    env.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use agp_contracts::sandbox::ResourceLimits;

    #[test]
    fn hardening_is_in_the_request_and_a_weakened_reply_is_named() {
        let limits = ResourceLimits {
            max_processes: Some(64),
            session_memory_bytes: Some(1 << 28),
            ..ResourceLimits::default()
        };
        let plan = Plan {
            session: "s1",
            owner: "",
            image_id: "sha256:00",
            runtime: Runtime::Runc,
            user: (1000, 1000),
            repo: Path::new("/r"),
            env: &[],
            binds: Vec::new(),
            limits: &limits,
        };
        let body = plan.create_body();
        let host = &body["HostConfig"];
        assert_eq!(host["NetworkMode"], "none");
        assert_eq!(host["CapDrop"], json!(["ALL"]));
        assert_eq!(host["ReadonlyRootfs"], true);
        assert_eq!(host["PidsLimit"], 64);
        assert_eq!(host["MemorySwap"], host["Memory"]);
        assert_eq!(body["User"], "65533:65533");
        // What an honest engine reports back passes.
        let mut reported = json!({
            "Image": "sha256:00",
            "State": {"Running": true},
            "Config": {"User": "65533:65533"},
            "HostConfig": host.clone(),
            "Mounts": [{"Type": "bind", "Destination": "/r", "RW": true}],
        });
        reported["HostConfig"]["MaskedPaths"] = json!(["/proc/kcore"]);
        assert_eq!(plan.verify(&reported, None), Vec::<String>::new());
        reported["HostConfig"]["NetworkMode"] = json!("host");
        reported["HostConfig"]["SecurityOpt"] = json!(["seccomp=unconfined"]);
        reported["Mounts"] = json!([
            {"Type": "bind", "Destination": "/r", "RW": true},
            {"Type": "volume", "Destination": "/data", "RW": true},
        ]);
        reported["HostConfig"]["PidMode"] = json!("host");
        let wrong = plan.verify(&reported, None);
        assert!(
            wrong.contains(&"network mode none".to_string()),
            "{wrong:?}"
        );
        assert!(
            wrong.contains(&"no-new-privileges".to_string()),
            "{wrong:?}"
        );
        assert!(
            wrong.contains(&"engine seccomp profile kept".to_string()),
            "{wrong:?}"
        );
        assert!(
            wrong.contains(&"only the repository and the binds asked for".to_string()),
            "{wrong:?}"
        );
        assert!(
            wrong.contains(&"no host namespace shared".to_string()),
            "{wrong:?}"
        );
    }

    #[test]
    fn rlimits_cpu_and_tmpfs_sizes_are_read_back() {
        let limits = ResourceLimits {
            max_memory_bytes: Some(1 << 30),
            max_cpu_seconds: Some(600),
            cpu_millis: Some(1500),
            tmpfs_bytes: Some(1 << 20),
            ..ResourceLimits::default()
        };
        let plan = Plan {
            session: "s1",
            owner: "",
            image_id: "sha256:00",
            runtime: Runtime::Runc,
            user: (1000, 1000),
            repo: Path::new("/r"),
            env: &[],
            binds: Vec::new(),
            limits: &limits,
        };
        let body = plan.create_body();
        assert_eq!(body["HostConfig"]["NanoCpus"], 1_500_000_000_u64);
        let mut honest = json!({
            "Image": "sha256:00",
            "State": {"Running": true},
            "Config": {"User": "65533:65533"},
            "HostConfig": body["HostConfig"].clone(),
            "Mounts": [{"Type": "bind", "Destination": "/r", "RW": true}],
        });
        honest["HostConfig"]["MaskedPaths"] = json!(["/proc/kcore"]);
        assert_eq!(plan.verify(&honest, None), Vec::<String>::new());
        // Podman names them RLIMIT_*, and adds its own nofile/nproc: still as asked.
        let mut podman_names = honest.clone();
        podman_names["HostConfig"]["Ulimits"] = json!([
            {"Name": "RLIMIT_NOFILE", "Soft": 1024, "Hard": 1024},
            {"Name": "RLIMIT_AS", "Soft": 1u64 << 30, "Hard": 1u64 << 30},
            {"Name": "RLIMIT_CPU", "Soft": 600, "Hard": 600},
        ]);
        assert_eq!(plan.verify(&podman_names, None), Vec::<String>::new());
        let named = |reported: &Value| plan.verify(reported, None);
        let mut r = honest.clone();
        r["HostConfig"]["Ulimits"] = json!([{"Name": "cpu", "Soft": 600, "Hard": 600}]);
        assert_eq!(named(&r), [format!("as ulimit of {}", 1u64 << 30)]);
        // A raised hard limit lets a process lift its own soft one.
        let mut r = honest.clone();
        r["HostConfig"]["Ulimits"] = json!([
            {"Name": "as", "Soft": 1u64 << 30, "Hard": u64::MAX},
            {"Name": "cpu", "Soft": 600, "Hard": 600},
        ]);
        assert_eq!(named(&r), [format!("as ulimit of {}", 1u64 << 30)]);
        // The right entry plus a contradicting duplicate.
        let mut r = honest.clone();
        r["HostConfig"]["Ulimits"]
            .as_array_mut()
            .unwrap()
            .push(json!({"Name": "RLIMIT_CPU", "Soft": 6000, "Hard": 6000}));
        assert_eq!(named(&r), ["cpu ulimit of 600"]);
        let mut r = honest.clone();
        r["HostConfig"].as_object_mut().unwrap().remove("NanoCpus");
        assert_eq!(named(&r), ["cpu limit"]);
        for opts in [
            "rw,nosuid,nodev,mode=1777",
            "rw,nodev,size=1048576",
            "rw,nosuid,nodev,size=10485760",
        ] {
            let mut r = honest.clone();
            r["HostConfig"]["Tmpfs"]["/tmp"] = json!(opts);
            assert_eq!(named(&r), ["only the tmpfs asked for"], "{opts}");
        }
        let mut r = honest.clone();
        r["HostConfig"]["Tmpfs"]["/run"] = json!("rw,nosuid,nodev,size=1048576");
        assert_eq!(named(&r), ["only the tmpfs asked for"]);
    }

    #[test]
    fn a_bind_in_home_makes_home_a_mount_ordered_before_it() {
        let limits = ResourceLimits::default();
        let file = PathBuf::from(format!("{SANDBOX_HOME}/.codex/config.toml"));
        let plan = Plan {
            session: "s1",
            owner: "",
            image_id: "sha256:00",
            runtime: Runtime::Runc,
            user: (1000, 1000),
            repo: Path::new("/r"),
            env: &[],
            binds: vec![(PathBuf::from("/host/c.toml"), file.clone(), false)],
            limits: &limits,
        };
        let body = plan.create_body();
        let host = &body["HostConfig"];
        assert!(host["Tmpfs"].get("/tmp").is_some());
        assert!(host["Tmpfs"].get(SANDBOX_HOME).is_none(), "{host:#}");
        let home = host["Mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["Target"] == SANDBOX_HOME)
            .expect("HOME among the mounts");
        assert_eq!(home["Type"], "tmpfs");
        let mut reported = json!({
            "Image": "sha256:00",
            "State": {"Running": true},
            "Config": {"User": "65533:65533"},
            "HostConfig": host.clone(),
            "Mounts": [
                {"Type": "bind", "Destination": "/r", "RW": true},
                {"Type": "tmpfs", "Destination": SANDBOX_HOME, "RW": true},
                {"Type": "bind", "Destination": file, "RW": false},
            ],
        });
        reported["HostConfig"]["MaskedPaths"] = json!(["/proc/kcore"]);
        assert_eq!(plan.verify(&reported, None), Vec::<String>::new());
        // A HOME tmpfs without its size bound.
        let mut unbounded = reported.clone();
        unbounded["HostConfig"]["Mounts"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .filter(|m| m["Target"] == SANDBOX_HOME)
            .for_each(|m| m["TmpfsOptions"] = json!({"Mode": 0o1777}));
        assert!(plan
            .verify(&unbounded, None)
            .contains(&"tmpfs /tmp and HOME".to_string()));
        // An engine that dropped the HOME tmpfs (the bind would then be on the read-only root).
        reported["Mounts"].as_array_mut().unwrap().remove(1);
        let wrong = plan.verify(&reported, None);
        assert!(
            wrong.contains(&"tmpfs /tmp and HOME".to_string()),
            "{wrong:?}"
        );
    }
}
