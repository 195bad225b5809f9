//! The one-round-trip path of a command under runc: after the command's exec has ended, the
//! container's pids cgroup, read on the host, holding exactly its two own processes (the
//! init and the waiting `sleep`, both single-threaded, by host PID as recorded when the
//! container started) proves the command left nothing, so the reaper's exec is skipped. Any
//! other reading (more tasks, other PIDs, an unreadable file) runs the reaper as before.
//!
//! Why this is exact: `pids.current` counts every task (each thread) of the cgroup and its
//! descendants, including zombies until they are reaped, and a process is charged there
//! before its parent's fork returns; commands cannot leave the cgroup (the cgroup
//! filesystem is not writable inside and they have no capabilities). Only runc's containers
//! are host processes in that cgroup: under gVisor the cgroup holds the user-space kernel,
//! so the probe is never set up there. Nor when the engine's PIDs are not this host's (an
//! engine in a VM): the init PID's cgroup must name the container's id.

use std::path::{Path, PathBuf};

/// Where to look, and what a clean container holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Probe {
    dir: PathBuf,
    /// Host PIDs of the init and the waiting process, sorted.
    own: Vec<u32>,
}

impl Probe {
    /// Set up from the container's init (host PID, as the engine reports it) right after
    /// start, when only the init and the waiting process run. `None`: no fast path.
    pub(crate) fn new(container: &str, init_pid: u32) -> Option<Self> {
        let cgroup = std::fs::read_to_string(format!("/proc/{init_pid}/cgroup")).ok()?;
        let dir = pids_dir(&cgroup, container, Path::new("/sys/fs/cgroup"))?;
        let own = procs(&dir)?;
        let probe = Self { dir, own };
        (probe.own.len() == 2 && probe.own.contains(&init_pid) && probe.clean()).then_some(probe)
    }

    /// Only the container's own two processes are left (each single-threaded).
    pub(crate) fn clean(&self) -> bool {
        let count = std::fs::read_to_string(self.dir.join("pids.current"))
            .ok()
            .and_then(|c| c.trim().parse::<usize>().ok());
        count == Some(self.own.len()) && procs(&self.dir).as_ref() == Some(&self.own)
    }
}

/// Sorted PIDs in the cgroup's `cgroup.procs`.
fn procs(dir: &Path) -> Option<Vec<u32>> {
    let text = std::fs::read_to_string(dir.join("cgroup.procs")).ok()?;
    let mut pids = text
        .lines()
        .map(|l| l.trim().parse().ok())
        .collect::<Option<Vec<u32>>>()?;
    pids.sort_unstable();
    Some(pids)
}

/// The directory of the pids controller's cgroup in `/proc/PID/cgroup` text: the v1 `pids`
/// hierarchy, else the unified one. The path must name the container (full id) and stay
/// below `root`.
fn pids_dir(cgroup: &str, container: &str, root: &Path) -> Option<PathBuf> {
    if container.len() < 12 || !container.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut v1 = None;
    let mut v2 = None;
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.split(',').any(|c| c == "pids") {
            v1 = Some(root.join("pids").join(path.trim_start_matches('/')));
        } else if controllers.is_empty() {
            v2 = Some((path, root.join(path.trim_start_matches('/'))));
        }
    }
    let (path, dir) = match (v1, v2) {
        (Some(dir), _) => (dir.to_string_lossy().into_owned(), dir),
        // Unified only: mounted at the root (pure v2), or under `unified` (hybrid) without
        // the pids controller, which then has no pids.current: no fast path.
        (None, Some((path, dir))) => (path.to_string(), dir),
        (None, None) => return None,
    };
    let named = path.contains(container) && !path.split('/').any(|c| c == "..");
    named.then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "87d977fb4bfdbb4c5f57ccdd4eae31804843a965e7f645f4694a0f0b3a8551ba";

    #[test]
    fn v1_uses_the_pids_hierarchy() {
        let text = format!("9:name=systemd:/docker/{ID}\n8:pids:/docker/{ID}\n0::/docker/{ID}\n");
        assert_eq!(
            pids_dir(&text, ID, Path::new("/sys/fs/cgroup")),
            Some(PathBuf::from(format!("/sys/fs/cgroup/pids/docker/{ID}")))
        );
    }

    #[test]
    fn v2_uses_the_unified_path() {
        let text = format!("0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(
            pids_dir(&text, ID, Path::new("/sys/fs/cgroup")),
            Some(PathBuf::from(format!(
                "/sys/fs/cgroup/system.slice/docker-{ID}.scope"
            )))
        );
    }

    #[test]
    fn a_cgroup_not_naming_the_container_or_climbing_out_is_refused() {
        let root = Path::new("/sys/fs/cgroup");
        assert_eq!(pids_dir("8:pids:/user.slice\n", ID, root), None);
        let other = "0123456789abcdef".repeat(4);
        assert_eq!(
            pids_dir(&format!("8:pids:/docker/{other}\n"), ID, root),
            None
        );
        assert_eq!(
            pids_dir(&format!("8:pids:/../docker/{ID}\n"), ID, root),
            None
        );
        assert_eq!(pids_dir(&format!("8:pids:/docker/{ID}\n"), "", root), None);
        assert_eq!(pids_dir("garbage", ID, root), None);
    }

    #[test]
    fn clean_only_with_exactly_the_own_processes() {
        let dir = tempfile::tempdir().unwrap();
        let probe = Probe {
            dir: dir.path().to_path_buf(),
            own: vec![10, 20],
        };
        let set = |count: &str, procs: &str| {
            std::fs::write(dir.path().join("pids.current"), count).unwrap();
            std::fs::write(dir.path().join("cgroup.procs"), procs).unwrap();
        };
        set("2\n", "20\n10\n");
        assert!(probe.clean());
        // A leftover, or a thread of one, in the cgroup or a child cgroup.
        set("3\n", "20\n10\n");
        assert!(!probe.clean());
        set("3\n", "10\n20\n30\n");
        assert!(!probe.clean());
        // One of the own processes gone and a stranger in its place.
        set("2\n", "10\n30\n");
        assert!(!probe.clean());
        set("2\n", "10\nx\n");
        assert!(!probe.clean());
        std::fs::remove_file(dir.path().join("pids.current")).unwrap();
        assert!(!probe.clean());
    }
}
