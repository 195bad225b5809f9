//! The session's memory bound as the container's memory cgroup holds it: when the kernel
//! killed a process of a command for it (the cgroup's `oom_kill` counter rose over the
//! command), the command's output says so as the bubblewrap provider's does
//! (`session_memory`, see `crate::cgroup::session_memory_exceeded`).
//!
//! Read on the host, from the cgroup of the container's init (host PID as the engine reports
//! it, the path naming the container's id): only under runc, where the container's processes
//! are host processes in that cgroup. Under gVisor the cgroup holds the user-space kernel,
//! whose own death takes the container; no watch is set up there.

use std::path::{Path, PathBuf};

use agp_contracts::sandbox::LimitExceeded;

/// The container's memory cgroup and its bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemoryWatch {
    dir: PathBuf,
    v2: bool,
    bound: u64,
}

impl MemoryWatch {
    /// From the container's init right after start. `None`: no such cgroup to read here.
    pub(crate) fn new(container: &str, init_pid: u32, bound: u64) -> Option<Self> {
        let cgroup = std::fs::read_to_string(format!("/proc/{init_pid}/cgroup")).ok()?;
        let (dir, v2) = memory_dir(&cgroup, container, Path::new("/sys/fs/cgroup"))?;
        let watch = Self { dir, v2, bound };
        watch.oom_kills().is_some().then_some(watch)
    }

    /// Processes the kernel killed for the cgroup's limit so far.
    pub(crate) fn oom_kills(&self) -> Option<u64> {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        let text = std::fs::read_to_string(self.dir.join(file)).ok()?;
        text.lines().find_map(|l| {
            l.strip_prefix("oom_kill ")
                .and_then(|n| n.trim().parse().ok())
        })
    }

    /// The bound was hit since the count `before`: the report, with the cgroup's peak.
    pub(crate) fn hit_since(&self, before: Option<u64>) -> Option<LimitExceeded> {
        let now = self.oom_kills()?;
        if now <= before? {
            return None;
        }
        let peak = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        let observed = std::fs::read_to_string(self.dir.join(peak))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(self.bound);
        Some(crate::cgroup::session_memory_exceeded(self.bound, observed))
    }
}

/// The memory controller's cgroup directory in `/proc/PID/cgroup` text (the v1 `memory`
/// hierarchy, else the unified one), and whether it is v2. The path must name the container
/// (full id) and stay below `root`.
fn memory_dir(cgroup: &str, container: &str, root: &Path) -> Option<(PathBuf, bool)> {
    if container.len() < 12 || !container.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut v1 = None;
    let mut v2 = None;
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(path);
        } else if controllers.is_empty() {
            v2 = Some(path);
        }
    }
    let (path, dir, is_v2) = match (v1, v2) {
        (Some(p), _) => (
            p,
            root.join("memory").join(p.trim_start_matches('/')),
            false,
        ),
        (None, Some(p)) => (p, root.join(p.trim_start_matches('/')), true),
        (None, None) => return None,
    };
    let named = path.contains(container) && !path.split('/').any(|c| c == "..");
    named.then_some((dir, is_v2))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "87d977fb4bfdbb4c5f57ccdd4eae31804843a965e7f645f4694a0f0b3a8551ba";

    #[test]
    fn the_memory_hierarchy_is_found_and_must_name_the_container() {
        let root = Path::new("/sys/fs/cgroup");
        let v1 = format!("8:pids:/docker/{ID}\n4:memory:/libpod_parent/libpod-{ID}\n0::/x\n");
        assert_eq!(
            memory_dir(&v1, ID, root),
            Some((
                PathBuf::from(format!("/sys/fs/cgroup/memory/libpod_parent/libpod-{ID}")),
                false
            ))
        );
        let v2 = format!("0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(memory_dir(&v2, ID, root).map(|(_, v2)| v2), Some(true));
        assert_eq!(memory_dir("4:memory:/user.slice\n", ID, root), None);
        assert_eq!(memory_dir(&format!("4:memory:/../{ID}\n"), ID, root), None);
        assert_eq!(memory_dir(&v1, "", root), None);
    }

    #[test]
    fn a_rising_oom_kill_count_is_a_session_memory_hit() {
        let dir = tempfile::tempdir().unwrap();
        let watch = MemoryWatch {
            dir: dir.path().to_path_buf(),
            v2: false,
            bound: 64 << 20,
        };
        std::fs::write(
            dir.path().join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("memory.max_usage_in_bytes"), "67108864\n").unwrap();
        assert_eq!(watch.oom_kills(), Some(2));
        assert_eq!(watch.hit_since(Some(2)), None);
        assert_eq!(watch.hit_since(None), None);
        let hit = watch.hit_since(Some(1)).unwrap();
        assert_eq!(
            (hit.limit.as_str(), hit.bound, hit.observed),
            ("session_memory", 64 << 20, 64 << 20)
        );
        assert!(hit.message.contains("session_memory_bytes"), "{hit:?}");
    }
}
