//! Reading a process and its ancestors from /proc.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Longest chain followed: deeper trees are not hooks anyway.
const MAX_DEPTH: usize = 64;

/// A file by device and inode: a file bound into a sandbox at another path is still the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of(path: &Path) -> std::io::Result<Self> {
        let m = std::fs::metadata(path)?;
        Ok(Self {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// One process as /proc shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    /// Start time in clock ticks since boot: with the pid, names the process.
    pub start: u64,
    /// The executable; `None` when this daemon may not look (another user's process).
    pub exe: Option<FileId>,
    pub argv: Vec<String>,
}

impl Proc {
    /// `None` when the process is gone (or /proc does not show it).
    pub fn read(pid: u32) -> Option<Self> {
        let dir = Path::new("/proc").join(pid.to_string());
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        let (ppid, start) = parse_stat(&stat)?;
        let exe = FileId::of(&dir.join("exe")).ok();
        let argv = std::fs::read(dir.join("cmdline"))
            .ok()
            .map(|raw| {
                raw.split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        Some(Self {
            pid,
            ppid,
            start,
            exe,
            argv,
        })
    }
}

/// The parent pid and start time from `/proc/PID/stat`. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) … starttime(22).
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((ppid, start))
}

/// `pid` and its ancestors, nearest first, up to (not including) pid 0. Empty when `pid` is
/// gone. A parent that vanished while being read ends the chain there.
pub fn chain(pid: u32) -> Vec<Proc> {
    let mut out: Vec<Proc> = Vec::new();
    let mut next = pid;
    while next != 0 && out.len() < MAX_DEPTH {
        let Some(p) = Proc::read(next) else { break };
        // A parent that started after its child is a recycled pid: the real one is gone.
        if let Some(child) = out.last() {
            if p.start > child.start {
                break;
            }
        }
        next = p.ppid;
        out.push(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let stat =
            "4242 (a) b (c)) S 17 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1 2";
        assert_eq!(parse_stat(stat), Some((17, 987654)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_chain_reaches_its_parent() {
        let me = std::process::id();
        let chain = chain(me);
        assert_eq!(chain[0].pid, me);
        assert_eq!(chain[1].pid, std::os::unix::process::parent_id());
        assert_eq!(
            chain[0].exe,
            Some(FileId::of(&std::env::current_exe().unwrap()).unwrap())
        );
        assert!(chain.windows(2).all(|w| w[0].ppid == w[1].pid));
    }
}
