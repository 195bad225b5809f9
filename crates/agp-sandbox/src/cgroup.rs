//! A per-session pids cgroup, so `max_processes` holds even for root, whom the kernel exempts
//! from RLIMIT_NPROC. Used when this process may create a child cgroup with a pids controller
//! (cgroup v2 with `pids` delegated to our cgroup's children, or a writable cgroup v1 `pids`
//! hierarchy); otherwise the provider falls back to RLIMIT_NPROC and says so in its caveats.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One session's cgroup. Every command of the session is moved into it before bwrap starts,
/// so the limit is per session, across commands. Removed (after killing anything left in it)
/// when the last handle drops.
#[derive(Debug)]
pub(crate) struct PidsCgroup {
    dir: PathBuf,
    procs: File,
}

impl PidsCgroup {
    /// The `cgroup.procs` descriptor the pre-exec hook writes "0" to (moves the writer).
    pub(crate) fn procs_fd(&self) -> RawFd {
        self.procs.as_raw_fd()
    }

    pub(crate) fn create(name: &str, max: u64) -> io::Result<Option<Self>> {
        let Some(base) = pids_base() else {
            return Ok(None);
        };
        let dir = base.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
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
            std::fs::write(dir.join("pids.max"), max.to_string())?;
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
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        // Nothing of the session outlives it; then the empty cgroup can go.
        for _ in 0..50 {
            let members = self.members();
            for pid in &members {
                // SAFETY: kill only sends a signal; these pids are members of our cgroup.
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Whether per-session pids cgroups can be made here (probed by making and removing one).
/// Also removes empty session cgroups left by agp processes that no longer exist (a daemon
/// that was killed cannot run its teardown).
pub(crate) fn available() -> bool {
    let name = format!("agp-sandbox-probe-{}", std::process::id());
    let ok = matches!(PidsCgroup::create(&name, 1), Ok(Some(_)));
    if ok {
        sweep_stale();
    }
    ok
}

fn sweep_stale() {
    let Some(base) = pids_base() else { return };
    let Ok(entries) = std::fs::read_dir(&base) else {
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

/// Our own cgroup directory in a hierarchy whose children get a `pids.max`.
fn pids_base() -> Option<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mounts = mounts();
    // cgroup v2, with pids enabled for our children.
    if let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::")) {
        for m in mounts.iter().filter(|m| m.fstype == "cgroup2") {
            if let Some(dir) = join_under(m, path) {
                let delegated =
                    std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
                if delegated.split_whitespace().any(|c| c == "pids") {
                    return Some(dir);
                }
            }
        }
    }
    // cgroup v1 pids hierarchy.
    let path = own.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let _id = parts.next()?;
        let controllers = parts.next()?;
        let path = parts.next()?;
        controllers.split(',').any(|c| c == "pids").then_some(path)
    })?;
    mounts
        .iter()
        .filter(|m| m.fstype == "cgroup" && m.super_opts.split(',').any(|o| o == "pids"))
        .find_map(|m| join_under(m, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_session_cgroups_of_dead_processes_are_swept() {
        let Some(base) = pids_base() else {
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
        sweep_stale();
        let (stale_gone, live_kept) = (!stale.exists(), live.exists());
        let _ = std::fs::remove_dir(&stale);
        let _ = std::fs::remove_dir(&live);
        assert!(stale_gone, "{} was not swept", stale.display());
        assert!(live_kept, "a live process's cgroup was removed");
    }

    #[test]
    fn a_session_cgroup_holds_its_limit_and_goes_away() {
        let name = format!("agp-sandbox-{}-unit", std::process::id());
        let Some(cg) = PidsCgroup::create(&name, 7).unwrap() else {
            eprintln!("SKIPPED: no writable pids cgroup here");
            return;
        };
        let dir = cg.dir.clone();
        assert_eq!(
            std::fs::read_to_string(dir.join("pids.max"))
                .unwrap()
                .trim(),
            "7"
        );
        drop(cg);
        assert!(!dir.exists());
    }
}
