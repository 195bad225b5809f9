//! Per-session cgroups: a pids cgroup, so `max_processes` holds even for root (whom the kernel
//! exempts from RLIMIT_NPROC), and a memory cgroup, so `session_memory_bytes` bounds every
//! command of the session together, tmpfs pages included (they are charged to the cgroup of
//! the process that writes them). Used where this process may create a child cgroup with the
//! controller: cgroup v2 with it enabled in our cgroup's `cgroup.subtree_control`, or a
//! writable cgroup v1 hierarchy of it (both controllers may live in separate hierarchies).
//! Where one cannot be made, the provider falls back to per-process rlimits and says so in
//! its caveats.
//!
//! Every command of the session is moved into the cgroups before bwrap starts, so the limits
//! span commands. What a command ran into is read back from the cgroup's event counters
//! (`oom_kill`, pids `max`) before and after it, for a clear message and a journal entry.

use agp_contracts::sandbox::LimitExceeded;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Knobs that exist only with swap accounting; without it there is no swap to bound.
const OPTIONAL_KNOBS: &[&str] = &["memory.swap.max", "memory.memsw.limit_in_bytes"];

/// One controller's directory for one session.
#[derive(Debug)]
struct Group {
    dir: PathBuf,
    procs: File,
}

impl Group {
    fn create(base: &Path, name: &str, settings: &[(&str, String)]) -> io::Result<Option<Self>> {
        let dir = base.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            // v2 puts the controllers of both kinds in one directory.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
        let made = (|| {
            for (file, value) in settings {
                let path = dir.join(file);
                if path.exists() || !OPTIONAL_KNOBS.contains(file) {
                    std::fs::write(path, value)?;
                }
            }
            std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))
        })();
        match made {
            Ok(procs) => Ok(Some(Self { dir, procs })),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(e)
            }
        }
    }

    fn members(&self) -> Vec<libc::pid_t> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// A `key value` counter from a flat-keyed cgroup file.
    fn counter(&self, file: &str, key: &str) -> Option<u64> {
        let text = std::fs::read_to_string(self.dir.join(file)).ok()?;
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok())?
        })
    }

    fn value(&self, file: &str) -> Option<u64> {
        std::fs::read_to_string(self.dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // Nothing of the session outlives it; then the empty cgroup can go.
        for _ in 0..50 {
            let members = self.members();
            for pid in &members {
                // SAFETY: kill only sends a signal; these pids are members of our cgroup.
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
            if !self.dir.exists() || std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Which cgroup version a controller lives in (their knobs and counters differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// A session's cgroups. Removed (after killing anything left in them) when dropped.
#[derive(Debug)]
pub(crate) struct SessionCgroup {
    pids: Option<(Group, u64)>,
    memory: Option<(Group, Version, u64)>,
}

/// Counters read before a command, to tell what it ran into.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    oom_kills: u64,
    pids_refused: u64,
}

/// A bound a command hit, as `(limit, bound, observed)`.
pub(crate) type Hit = (&'static str, u64, u64);

impl SessionCgroup {
    /// Make the session's cgroups for the limits asked for. A controller that cannot be used
    /// here is left out (the caller falls back to rlimits); `None` when neither was made.
    pub(crate) fn create(
        name: &str,
        max_pids: Option<u64>,
        max_memory: Option<u64>,
    ) -> io::Result<Option<Self>> {
        let pids = match (max_pids, base("pids")) {
            (Some(max), Some((base, _))) => {
                Group::create(&base, name, &[("pids.max", max.to_string())])?.map(|g| (g, max))
            }
            _ => None,
        };
        let memory = match (max_memory, base("memory")) {
            (Some(max), Some((base, version))) => {
                let settings: Vec<(&str, String)> = match version {
                    // No swap either: the bound is on memory, not on memory plus swap.
                    Version::V2 => vec![
                        ("memory.max", max.to_string()),
                        ("memory.swap.max", "0".into()),
                    ],
                    Version::V1 => vec![
                        ("memory.limit_in_bytes", max.to_string()),
                        ("memory.memsw.limit_in_bytes", max.to_string()),
                    ],
                };
                Group::create(&base, name, &settings)?.map(|g| (g, version, max))
            }
            _ => None,
        };
        if pids.is_none() && memory.is_none() {
            return Ok(None);
        }
        Ok(Some(Self { pids, memory }))
    }

    pub(crate) fn limits_processes(&self) -> bool {
        self.pids.is_some()
    }

    pub(crate) fn limits_memory(&self) -> bool {
        self.memory.is_some()
    }

    /// The `cgroup.procs` descriptors the pre-exec hook writes "0" to (moves the writer).
    /// One per hierarchy: on cgroup v2 both controllers share a directory.
    pub(crate) fn procs_fds(&self) -> Vec<RawFd> {
        let mut fds = Vec::new();
        if let Some((g, _)) = &self.pids {
            fds.push((g.dir.clone(), g.procs.as_raw_fd()));
        }
        if let Some((g, _, _)) = &self.memory {
            if !fds.iter().any(|(d, _)| *d == g.dir) {
                fds.push((g.dir.clone(), g.procs.as_raw_fd()));
            }
        }
        fds.into_iter().map(|(_, fd)| fd).collect()
    }

    pub(crate) fn counters(&self) -> Counters {
        Counters {
            oom_kills: self.oom_kills(),
            pids_refused: self
                .pids
                .as_ref()
                .and_then(|(g, _)| g.counter("pids.events", "max"))
                .unwrap_or(0),
        }
    }

    fn oom_kills(&self) -> u64 {
        match &self.memory {
            Some((g, Version::V2, _)) => g.counter("memory.events", "oom_kill"),
            Some((g, Version::V1, _)) => g.counter("memory.oom_control", "oom_kill"),
            None => None,
        }
        .unwrap_or(0)
    }

    /// What the session ran into since `before`.
    pub(crate) fn hits_since(&self, before: Counters) -> Vec<Hit> {
        let now = self.counters();
        let mut hits = Vec::new();
        if let Some((g, version, max)) = &self.memory {
            if now.oom_kills > before.oom_kills {
                let peak = match version {
                    Version::V2 => g.value("memory.peak"),
                    Version::V1 => g.value("memory.max_usage_in_bytes"),
                };
                hits.push(("session_memory", *max, peak.unwrap_or(*max)));
            }
        }
        if let Some((_, max)) = &self.pids {
            if now.pids_refused > before.pids_refused {
                hits.push(("processes", *max, now.pids_refused - before.pids_refused));
            }
        }
        hits
    }
}

/// The session's memory bound was reached and the kernel killed a process of the command
/// (`observed`: the peak, or the bound when no peak is kept): reported alike by every
/// provider that holds the bound in a memory cgroup.
pub(crate) fn session_memory_exceeded(bound: u64, observed: u64) -> LimitExceeded {
    LimitExceeded {
        limit: "session_memory".to_string(),
        bound,
        observed,
        message: format!(
            "the session's memory bound of {bound} bytes (config.toml [sandbox.limits] \
             session_memory_bytes) was reached (peak {observed} bytes): the kernel killed \
             the largest process of the command"
        ),
    }
}

/// Which controllers can be used here (probed by making and removing a cgroup). Also removes
/// empty session cgroups left by agp processes that no longer exist (a daemon that was killed
/// cannot run its teardown).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Available {
    pub pids: bool,
    pub memory: bool,
}

pub(crate) fn available() -> Available {
    let name = format!("agp-sandbox-probe-{}", std::process::id());
    let probe = |controller: &str| {
        let Some((base, _)) = base(controller) else {
            return false;
        };
        let ok = matches!(Group::create(&base, &name, &[]), Ok(Some(_)));
        if ok {
            sweep_stale(&base);
        }
        ok
    };
    Available {
        pids: probe("pids"),
        memory: probe("memory"),
    }
}

fn sweep_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(owner) = name
            .strip_prefix("agp-sandbox-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new("/proc").join(owner.to_string()).exists() {
            // Fails harmlessly (EBUSY) if something still runs in it.
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

struct Mount {
    root: String,
    point: PathBuf,
    fstype: String,
    super_opts: String,
}

fn mounts() -> Vec<Mount> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            Some(Mount {
                root: (*left.get(3)?).to_string(),
                point: PathBuf::from(left.get(4)?),
                fstype: (*right.first()?).to_string(),
                super_opts: (*right.get(2)?).to_string(),
            })
        })
        .collect()
}

fn join_under(mount: &Mount, path: &str) -> Option<PathBuf> {
    let rel = if mount.root == "/" {
        path
    } else {
        path.strip_prefix(mount.root.as_str())?
    };
    let dir = mount.point.join(rel.trim_start_matches('/'));
    dir.is_dir().then_some(dir)
}

/// Our own cgroup directory in a hierarchy whose children get `controller`.
fn base(controller: &str) -> Option<(PathBuf, Version)> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mounts = mounts();
    // cgroup v1 first: on a hybrid host the controller lives there, not in the unified tree.
    let v1 = own.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let _id = parts.next()?;
        let controllers = parts.next()?;
        let path = parts.next()?;
        controllers
            .split(',')
            .any(|c| c == controller)
            .then_some(path)
    });
    if let Some(path) = v1 {
        return mounts
            .iter()
            .filter(|m| m.fstype == "cgroup" && m.super_opts.split(',').any(|o| o == controller))
            .find_map(|m| join_under(m, path))
            .map(|d| (d, Version::V1));
    }
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    for m in mounts.iter().filter(|m| m.fstype == "cgroup2") {
        if let Some(dir) = join_under(m, path) {
            let delegated =
                std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
            if delegated.split_whitespace().any(|c| c == controller) {
                return Some((dir, Version::V2));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_session_cgroups_of_dead_processes_are_swept() {
        let Some((base, _)) = base("pids") else {
            eprintln!("SKIPPED: no pids cgroup hierarchy here");
            return;
        };
        // A pid above the kernel's maximum cannot be alive.
        let stale = base.join("agp-sandbox-99999999-deadbeef");
        if std::fs::create_dir(&stale).is_err() {
            eprintln!("SKIPPED: cgroup hierarchy not writable");
            return;
        }
        let live = base.join(format!("agp-sandbox-{}-cafebabe", std::process::id()));
        std::fs::create_dir(&live).unwrap();
        sweep_stale(&base);
        let (stale_gone, live_kept) = (!stale.exists(), live.exists());
        let _ = std::fs::remove_dir(&stale);
        let _ = std::fs::remove_dir(&live);
        assert!(stale_gone, "{} was not swept", stale.display());
        assert!(live_kept, "a live process's cgroup was removed");
    }

    #[test]
    fn a_session_cgroup_holds_its_limits_and_goes_away() {
        let name = format!("agp-sandbox-{}-unit", std::process::id());
        let Some(cg) = SessionCgroup::create(&name, Some(7), Some(64 << 20)).unwrap() else {
            eprintln!("SKIPPED: no writable pids or memory cgroup here");
            return;
        };
        let mut dirs = Vec::new();
        if let Some((g, _)) = &cg.pids {
            assert_eq!(
                std::fs::read_to_string(g.dir.join("pids.max"))
                    .unwrap()
                    .trim(),
                "7"
            );
            dirs.push(g.dir.clone());
        }
        if let Some((g, version, _)) = &cg.memory {
            let file = match version {
                Version::V2 => "memory.max",
                Version::V1 => "memory.limit_in_bytes",
            };
            assert_eq!(g.value(file), Some(64 << 20));
            dirs.push(g.dir.clone());
        }
        assert!(!cg.procs_fds().is_empty());
        drop(cg);
        for d in dirs {
            assert!(!d.exists(), "{}", d.display());
        }
    }
}
