//! What the sandbox's filesystem is made of, as bubblewrap arguments, and the path checks that
//! keep a spec from exposing what must stay hidden.
//!
//! The root is bubblewrap's empty tmpfs, remounted read-only at the end: only what is listed
//! here exists inside. The invoking user's HOME, `/root`, `/home`, `/run`, `/var`, the host's
//! `/tmp` (with its sockets), `/sys` and agp's own home are simply never mounted.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use agp_contracts::sandbox::{BindMount, SandboxError, SandboxSpec, SANDBOX_HOME};

/// System directories bound read-only (or recreated as the same symlink on merged-/usr hosts).
const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

/// `/etc` entries programs need: users and groups, name resolution, the dynamic linker cache,
/// certificates, time zone, shell start-up, git. An allowlist, so shadow files, sudoers, ssh
/// host keys, private TLS keys and configs that often carry credentials (npmrc, pip.conf,
/// environment) never appear. Each entry is one mount (~0.1 ms per spawn): keep it short.
const ETC_ENTRIES: &[&str] = &[
    "passwd",
    "group",
    "hosts",
    "nsswitch.conf",
    "resolv.conf",
    "protocols",
    "services",
    "ld.so.cache",
    "alternatives",
    "ssl/certs",
    "ssl/openssl.cnf",
    "pki/tls/certs",
    "pki/ca-trust",
    "crypto-policies",
    "localtime",
    "locale.conf",
    "bash.bashrc",
    "profile",
    "profile.d",
    "gitconfig",
    "os-release",
    "lsb-release",
    "shells",
    "mtab",
];

/// `/proc` files hidden behind /dev/null (kernel internals a sandbox has no use for; the same
/// list container runtimes mask).
const PROC_MASKED_FILES: &[&str] = &[
    "kcore",
    "keys",
    "timer_list",
    "timer_stats",
    "sched_debug",
    "latency_stats",
    "kpageflags",
    "kpagecount",
    "kpagecgroup",
    "sysrq-trigger",
];
const PROC_MASKED_DIRS: &[&str] = &["acpi", "scsi"];

/// Directories the repository must not be, or contain: binding such a repo read-write would
/// expose the host.
const NEVER_REPO: &[&str] = &[
    "/",
    "/tmp",
    "/home",
    "/root",
    "/etc",
    "/usr",
    "/var",
    "/run",
    "/boot",
    "/opt",
    "/srv",
    "/mnt",
    "/media",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    SANDBOX_HOME,
];
const NEVER_UNDER: &[&str] = &["/proc", "/sys", "/dev"];

fn push(args: &mut Vec<OsString>, parts: &[&dyn AsRef<std::ffi::OsStr>]) {
    args.extend(parts.iter().map(|p| p.as_ref().to_os_string()));
}

/// Lexically absolute, with no `.` or `..` components.
fn is_clean_absolute(p: &Path) -> bool {
    p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// The repository, canonical, checked against everything it must not expose.
pub(crate) fn check_repo(repo: &Path, protected: &[PathBuf]) -> Result<PathBuf, SandboxError> {
    let canonical = std::fs::canonicalize(repo).map_err(|e| {
        SandboxError::Refused(format!(
            "repository {} is not accessible: {e}",
            repo.display()
        ))
    })?;
    if !canonical.is_dir() {
        return Err(SandboxError::Refused(format!(
            "repository {} is not a directory",
            canonical.display()
        )));
    }
    for under in NEVER_UNDER {
        if canonical.starts_with(under) {
            return Err(SandboxError::Refused(format!(
                "repository {} lies under {under}",
                canonical.display()
            )));
        }
    }
    let mut guarded: Vec<PathBuf> = NEVER_REPO.iter().map(PathBuf::from).collect();
    if let Some(home) = std::env::var_os("HOME") {
        let home = PathBuf::from(home);
        guarded.push(std::fs::canonicalize(&home).unwrap_or(home));
    }
    for p in protected {
        guarded.push(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()));
    }
    if let Some(hit) = guarded.iter().find(|g| g.starts_with(&canonical)) {
        return Err(SandboxError::Refused(format!(
            "repository {} would expose {} read-write; choose the project directory itself",
            canonical.display(),
            hit.display()
        )));
    }
    Ok(canonical)
}

/// A working directory for a command: inside the repository, no `..`.
pub(crate) fn check_cwd(cwd: &Path, repo: &Path) -> Result<(), SandboxError> {
    if !is_clean_absolute(cwd) || !cwd.starts_with(repo) {
        return Err(SandboxError::Refused(format!(
            "working directory {} is not inside the repository {}",
            cwd.display(),
            repo.display()
        )));
    }
    Ok(())
}

pub(crate) fn check_dest(dest: &Path) -> Result<(), SandboxError> {
    let bad = !is_clean_absolute(dest)
        || dest == Path::new("/")
        || NEVER_UNDER.iter().any(|u| dest.starts_with(u));
    if bad {
        return Err(SandboxError::Refused(format!(
            "bind destination {} is not allowed",
            dest.display()
        )));
    }
    Ok(())
}

/// A bind source: absolute, existing, and not inside the repository. bubblewrap resolves the
/// path again for every command, and a sandboxed command could have replaced a path inside
/// the (writable) repository with a symlink to anywhere on the host.
pub(crate) fn check_source(source: &Path, repo: &Path) -> Result<PathBuf, SandboxError> {
    if !source.is_absolute() {
        return Err(SandboxError::Refused(format!(
            "bind source {} is not absolute",
            source.display()
        )));
    }
    let canonical = std::fs::canonicalize(source).map_err(|e| {
        SandboxError::Refused(format!(
            "bind source {} is not accessible: {e}",
            source.display()
        ))
    })?;
    if canonical.starts_with(repo) || source.starts_with(repo) {
        return Err(SandboxError::Refused(format!(
            "bind source {} lies inside the repository, which the sandbox can rewrite",
            source.display()
        )));
    }
    Ok(canonical)
}

/// The bubblewrap arguments for a spec (everything before `--chdir` and the command), in
/// two halves with the `/etc` files to copy in between: those are passed as `--file FD`,
/// opened afresh for every command, because a copy into the sandbox's root tmpfs costs no
/// mount (each bind mount costs bubblewrap a mount-table scan, ~0.1-0.3 ms per spawn).
#[derive(Debug)]
pub(crate) struct Layout {
    pub head: Vec<OsString>,
    pub etc_files: Vec<PathBuf>,
    /// From /proc to the repository bind.
    pub mid: Vec<OsString>,
    /// Extra binds and the final read-only remount.
    pub tail: Vec<OsString>,
}

pub(crate) fn bwrap_args(spec: &SandboxSpec, repo: &Path) -> Result<Layout, SandboxError> {
    if spec.share_network {
        return Err(SandboxError::Refused(
            "share_network is not supported: egress goes through agp's proxy socket".into(),
        ));
    }
    let mut args: Vec<OsString> = Vec::with_capacity(160);
    push(
        &mut args,
        &[
            &"--unshare-user",
            &"--unshare-pid",
            &"--unshare-ipc",
            &"--unshare-uts",
            &"--unshare-net",
            &"--unshare-cgroup-try",
            &"--disable-userns",
            &"--die-with-parent",
            &"--new-session",
            &"--cap-drop",
            &"ALL",
            &"--hostname",
            &"agp-sandbox",
        ],
    );

    for dir in SYSTEM_DIRS {
        let path = Path::new(dir);
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(path)?;
                push(&mut args, &[&"--symlink", &target, &path]);
            }
            Ok(m) if m.is_dir() => push(&mut args, &[&"--ro-bind", &path, &path]),
            _ => {}
        }
    }

    // Directories bubblewrap creates implicitly get mode 0700; /etc and /home are
    // world-readable on any host.
    push(&mut args, &[&"--perms", &"0755", &"--dir", &"/etc"]);
    push(&mut args, &[&"--perms", &"0755", &"--dir", &"/home"]);
    let mut etc_files = Vec::new();
    for entry in ETC_ENTRIES {
        let path = Path::new("/etc").join(entry);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&path)?;
                push(&mut args, &[&"--symlink", &target, &path]);
            }
            Ok(m) if m.is_file() => etc_files.push(path),
            Ok(m) if m.is_dir() => push(&mut args, &[&"--ro-bind", &path, &path]),
            _ => {}
        }
    }
    let head = std::mem::take(&mut args);

    // A fresh procfs for the new pid namespace. bubblewrap leaves /proc/sys writable when
    // the directory itself is not writable, and a caller whose kernel uid is 0 (agp run as
    // root) passes the sysctl permission check on owner bits without any capability: cover
    // it read-only ourselves. Sysctls are global or resolved through the reader's own
    // namespaces, so the host's /proc/sys shows the same values.
    push(&mut args, &[&"--proc", &"/proc"]);
    push(&mut args, &[&"--ro-bind", &"/proc/sys", &"/proc/sys"]);
    for name in PROC_MASKED_FILES {
        let path = Path::new("/proc").join(name);
        if path.exists() {
            push(&mut args, &[&"--ro-bind", &"/dev/null", &path]);
        }
    }
    for name in PROC_MASKED_DIRS {
        let path = Path::new("/proc").join(name);
        if path.is_dir() {
            push(&mut args, &[&"--tmpfs", &path, &"--remount-ro", &path]);
        }
    }
    push(&mut args, &[&"--dev", &"/dev"]);

    let tmpfs_size = spec
        .limits
        .tmpfs_bytes
        .unwrap_or(DEFAULT_TMPFS_BYTES)
        .to_string();
    push(&mut args, &[&"--size", &tmpfs_size, &"--tmpfs", &"/tmp"]);
    push(
        &mut args,
        &[
            &"--perms",
            &"0700",
            &"--size",
            &tmpfs_size,
            &"--tmpfs",
            &SANDBOX_HOME,
        ],
    );

    push(&mut args, &[&"--bind", &repo, &repo]);
    // The git protections (see gitguard) go here, per command.
    let mid = std::mem::take(&mut args);

    for source in &spec.ro_binds {
        let canonical = check_source(source, repo)?;
        check_dest(source)?;
        push(&mut args, &[&"--ro-bind", &canonical, source]);
    }
    for BindMount {
        source,
        dest,
        writable,
    } in &spec.binds
    {
        let canonical = check_source(source, repo)?;
        check_dest(dest)?;
        let flag = if *writable { "--bind" } else { "--ro-bind" };
        push(&mut args, &[&flag, &canonical, dest]);
    }

    push(&mut args, &[&"--remount-ro", &"/"]);
    Ok(Layout {
        head,
        etc_files,
        mid,
        tail: args,
    })
}

/// Size cap of each tmpfs (HOME, /tmp) when the spec sets none. RAM-backed and made afresh
/// for every command: enough for a build's scratch files, small enough that a few
/// concurrent commands cannot exhaust the host.
pub(crate) const DEFAULT_TMPFS_BYTES: u64 = 256 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_that_contains_sensitive_dirs_is_refused() {
        for repo in ["/", "/tmp", "/home", "/usr"] {
            let err = check_repo(Path::new(repo), &[]).unwrap_err();
            assert!(matches!(err, SandboxError::Refused(_)), "{repo}: {err}");
        }
        assert!(check_repo(Path::new("/proc/self"), &[]).is_err());
    }

    #[test]
    fn repo_containing_a_protected_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let agp_home = dir.path().join("agp-home");
        std::fs::create_dir(&agp_home).unwrap();
        assert!(check_repo(dir.path(), std::slice::from_ref(&agp_home)).is_err());
        assert!(check_repo(dir.path(), &[]).is_ok());
        assert!(check_repo(&dir.path().join("missing"), &[]).is_err());
    }

    #[test]
    fn cwd_must_stay_inside_the_repo() {
        let repo = Path::new("/src/project");
        assert!(check_cwd(Path::new("/src/project"), repo).is_ok());
        assert!(check_cwd(Path::new("/src/project/sub"), repo).is_ok());
        assert!(check_cwd(Path::new("/src/project/../other"), repo).is_err());
        assert!(check_cwd(Path::new("/src/projectx"), repo).is_err());
        assert!(check_cwd(Path::new("sub"), repo).is_err());
    }

    #[test]
    fn bind_destinations_are_checked() {
        assert!(check_dest(Path::new("/etc/claude-code")).is_ok());
        for bad in ["/", "/proc/1", "/dev/x", "relative", "/a/../b"] {
            assert!(check_dest(Path::new(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn network_sharing_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = SandboxSpec::new("s", dir.path());
        spec.share_network = true;
        assert!(bwrap_args(&spec, dir.path()).is_err());
    }
}
