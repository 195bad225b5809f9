//! Neutralizing what a session left: bits cleared in place, the rest moved to the quarantine.
//!
//! Every action re-opens the entry's parent beneath the root without following symlinks and
//! first checks the entry is still the inode the scan examined, so a swap between scan and
//! action makes the action fail (reported as not neutralized) instead of hitting another file.

// `struct stat` field types differ between architectures; the casts are no-ops only on some.
#![allow(clippy::unnecessary_cast)]

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rustix::fs::{statat, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::walk::{fd_path, open_beneath, open_dir_at};
use crate::{text, Action, Finding, Fingerprint, Item, Kind, Origin};

pub(crate) fn apply(root: &Path, quarantine: &Path, items: &[Item], findings: &mut [Finding]) {
    let root_fd = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    );
    let ctx = match &root_fd {
        Ok(fd) => Ctx {
            root: fd.as_fd(),
            quarantine,
        },
        Err(e) => {
            let error = format!("cannot open the repository: {e}");
            for f in findings
                .iter_mut()
                .filter(|f| f.origin != Origin::PreExisting)
            {
                f.action = Action::NotNeutralized {
                    error: error.clone(),
                };
            }
            return;
        }
    };
    let ours = |f: &Finding| f.origin != Origin::PreExisting;
    // Bits first: a setuid file inside planted git metadata is cleared before it is moved.
    for (item, f) in items.iter().zip(findings.iter_mut()) {
        if !ours(f) {
            continue;
        }
        f.action = match item.kind {
            Kind::Setuid | Kind::Setgid | Kind::FileCapability => ctx.clear(item),
            Kind::RepoGitMetadata => Action::Reported,
            _ => continue,
        };
    }
    let mut moved: Vec<PathBuf> = Vec::new();
    for (item, f) in items.iter().zip(findings.iter_mut()) {
        if ours(f) && item.kind == Kind::NestedGitMetadata && !under(&moved, &item.rel) {
            f.action = ctx.quarantine(item);
            if matches!(f.action, Action::Quarantined { .. }) {
                moved.push(item.rel.clone());
            }
        }
    }
    for (item, f) in items.iter().zip(findings.iter_mut()) {
        if !ours(f) {
            continue;
        }
        let special = matches!(
            item.kind,
            Kind::Device | Kind::Socket | Kind::Fifo | Kind::EscapingSymlink | Kind::RepoGitHook
        );
        if under(&moved, &item.rel) && f.action == Action::Kept {
            f.action = Action::Quarantined {
                to: text(&quarantine.join(&item.rel)),
            };
        } else if special {
            f.action = ctx.quarantine(item);
        }
    }
}

/// Whether `rel` is one of `moved` or below one.
fn under(moved: &[PathBuf], rel: &Path) -> bool {
    moved.iter().any(|m| rel.starts_with(m))
}

struct Ctx<'a> {
    root: BorrowedFd<'a>,
    quarantine: &'a Path,
}

impl Ctx<'_> {
    /// The entry's parent directory, opened beneath the root without symlinks.
    fn parent(&self, rel: &Path) -> Result<(OwnedFd, PathBuf), String> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        let name = rel.file_name().ok_or("no file name")?;
        let dir = if parent.as_os_str().is_empty() {
            rustix::fs::openat(
                self.root,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
        } else {
            open_beneath(self.root, parent)
        };
        let dir = dir.map_err(|e| format!("cannot open {}: {e}", parent.display()))?;
        Ok((dir, PathBuf::from(name)))
    }

    fn same(dir: BorrowedFd<'_>, name: &Path, fp: &Fingerprint) -> Result<FileType, String> {
        let st = statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| e.to_string())?;
        if st.st_dev as u64 != fp.dev || st.st_ino as u64 != fp.ino {
            return Err("it was replaced after the scan; left for the user".into());
        }
        Ok(FileType::from_raw_mode(st.st_mode as _))
    }

    fn clear(&self, item: &Item) -> Action {
        match self.try_clear(item) {
            Ok(a) => a,
            // What cannot be defused in place is moved away.
            Err(e) => match self.quarantine(item) {
                q @ Action::Quarantined { .. } => q,
                _ => Action::NotNeutralized { error: e },
            },
        }
    }

    fn try_clear(&self, item: &Item) -> Result<Action, String> {
        let (dir, name) = self.parent(&item.rel)?;
        let fd = rustix::fs::openat(
            dir.as_fd(),
            &name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| e.to_string())?;
        let st = rustix::fs::fstat(&fd).map_err(|e| e.to_string())?;
        if st.st_dev as u64 != item.fp.dev
            || st.st_ino as u64 != item.fp.ino
            || FileType::from_raw_mode(st.st_mode as _) != FileType::RegularFile
        {
            return Err("it was replaced after the scan; left for the user".into());
        }
        // The O_PATH descriptor pins the inode; its /proc link reaches exactly that inode.
        let pinned =
            Path::new("/proc/self/fd").join(std::os::fd::AsRawFd::as_raw_fd(&fd).to_string());
        if item.kind == Kind::FileCapability {
            match rustix::fs::removexattr(&pinned, "security.capability") {
                Ok(()) | Err(Errno::NODATA) => Ok(Action::CapabilityRemoved),
                Err(e) => Err(format!("cannot remove the capabilities: {e}")),
            }
        } else {
            let mode = (st.st_mode as u32) & 0o1777 & !0o6000;
            rustix::fs::chmod(&pinned, Mode::from_raw_mode(mode as _))
                .map_err(|e| format!("cannot clear the setuid/setgid bits: {e}"))?;
            Ok(Action::BitsCleared)
        }
    }

    fn quarantine(&self, item: &Item) -> Action {
        match self.try_quarantine(item) {
            Ok(a) => a,
            Err(error) => Action::NotNeutralized { error },
        }
    }

    fn try_quarantine(&self, item: &Item) -> Result<Action, String> {
        let (dir, name) = self.parent(&item.rel)?;
        let kind = Self::same(dir.as_fd(), &name, &item.fp)?;
        let dest = free_name(&self.quarantine.join(&item.rel));
        let parent = dest.parent().unwrap_or(self.quarantine);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| format!("cannot create the quarantine {}: {e}", parent.display()))?;
        match rustix::fs::renameat(dir.as_fd(), &name, rustix::fs::CWD, &dest) {
            Ok(()) => Ok(Action::Quarantined { to: text(&dest) }),
            Err(Errno::XDEV) => move_across(dir.as_fd(), &name, kind, &dest),
            Err(e) => Err(format!("cannot move it to {}: {e}", dest.display())),
        }
    }
}

/// `path`, or `path.1`, `path.2`, ... when an earlier check already put something there.
pub(crate) fn free_name(path: &Path) -> PathBuf {
    let mut candidate = path.to_path_buf();
    let mut n = 0;
    while candidate.symlink_metadata().is_ok() {
        n += 1;
        let mut s = path.as_os_str().to_os_string();
        s.push(format!(".{n}"));
        candidate = PathBuf::from(s);
    }
    candidate
}

/// The quarantine is on another file system: copy what can be copied, then delete.
fn move_across(
    dir: BorrowedFd<'_>,
    name: &Path,
    kind: FileType,
    dest: &Path,
) -> Result<Action, String> {
    let err = |e: std::io::Error| format!("cannot copy it to {}: {e}", dest.display());
    match kind {
        FileType::Directory => {
            let src = open_dir_at(dir, name.as_os_str()).map_err(|e| e.to_string())?;
            copy_tree(src.as_fd(), dest).map_err(err)?;
            std::fs::remove_dir_all(fd_path(dir, name.as_os_str())).map_err(|e| e.to_string())?;
        }
        FileType::Symlink => {
            let target =
                rustix::fs::readlinkat(dir, name, Vec::new()).map_err(|e| e.to_string())?;
            let target = <OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(target.as_bytes());
            std::os::unix::fs::symlink(target, dest).map_err(err)?;
            rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(|e| e.to_string())?;
        }
        FileType::RegularFile => {
            copy_file(dir, name.as_os_str(), dest).map_err(err)?;
            rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(|e| e.to_string())?;
        }
        _ => {
            rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(|e| e.to_string())?;
            return Ok(Action::Removed {
                why: "the quarantine is on another file system, where it cannot be moved".into(),
            });
        }
    }
    Ok(Action::Quarantined { to: text(dest) })
}

fn copy_file(dir: BorrowedFd<'_>, name: &OsStr, dest: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let src = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)?;
    std::io::copy(&mut std::fs::File::from(src), &mut out)?;
    Ok(())
}

/// Copies a tree without following symlinks (recreated as symlinks); files lose every
/// permission bit but the owner's read/write; other kinds are left out.
fn copy_tree(src: BorrowedFd<'_>, dest: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().mode(0o700).create(dest)?;
    for entry in rustix::fs::Dir::read_from(src)? {
        let entry = entry?;
        let bytes = entry.file_name().to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        let name = <OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(bytes);
        let st = statat(src, name, AtFlags::SYMLINK_NOFOLLOW)?;
        let to = dest.join(name);
        match FileType::from_raw_mode(st.st_mode as _) {
            FileType::Directory => copy_tree(open_dir_at(src, name)?.as_fd(), &to)?,
            FileType::RegularFile => copy_file(src, name, &to)?,
            FileType::Symlink => {
                let t = rustix::fs::readlinkat(src, name, Vec::new())?;
                let t = <OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(t.as_bytes());
                std::os::unix::fs::symlink(t, &to)?;
            }
            _ => {}
        }
    }
    Ok(())
}
