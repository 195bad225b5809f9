use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use super::*;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
}

/// A git directory as `git init` makes it, plus `extra` files.
fn git_dir(dir: &Path, extra: &[(&str, &str)]) {
    write(&dir.join("HEAD"), "ref: refs/heads/main\n");
    write(
        &dir.join("config"),
        "[core]\n\trepositoryformatversion = 0\n\tbare = false\n",
    );
    write(&dir.join("hooks/pre-commit.sample"), "#!/bin/sh\n");
    std::fs::create_dir_all(dir.join("objects/pack")).unwrap();
    std::fs::create_dir_all(dir.join("refs/heads")).unwrap();
    for (p, t) in extra {
        write(&dir.join(p), t);
    }
}

fn find<'a>(r: &'a Report, path: &str, kind: Kind) -> &'a Finding {
    r.findings
        .iter()
        .find(|f| f.path == path && f.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} finding for {path}: {:#?}", r.findings))
}

/// A finding that was there before the session and is left alone.
fn assert_kept(f: &Finding) {
    assert_eq!(
        (f.origin, &f.action),
        (Origin::PreExisting, &Action::Kept),
        "{f:?}"
    );
}

fn quarantined(f: &Finding) -> &Path {
    match &f.action {
        Action::Quarantined { to } => Path::new(to),
        other => panic!("{} not quarantined: {other:?}", f.path),
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    quarantine: PathBuf,
}

impl Fixture {
    /// The session-start snapshot of the repository, with the default limits.
    fn snapshot(&self) -> Baseline {
        snapshot(&self.root, &Limits::default())
    }

    /// The end-of-session check against `base`, with the default limits.
    fn check(&self, base: Option<&Baseline>) -> Report {
        check(&self.root, base, &self.quarantine, &Limits::default())
    }
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    let quarantine = tmp.path().join("quarantine");
    std::fs::create_dir(&root).unwrap();
    git_dir(&root.join(".git"), &[]);
    write(&root.join("src/main.rs"), "fn main() {}\n");
    Fixture {
        root: std::fs::canonicalize(&root).unwrap(),
        quarantine,
        _tmp: tmp,
    }
}

#[test]
fn a_clean_repository_has_no_findings() {
    let f = fixture();
    symlink("src/main.rs", f.root.join("inside")).unwrap();
    symlink("../src", f.root.join("src/up-and-back")).unwrap();
    git_dir(&f.root.join("vendor/lib/.git"), &[]);
    let base = f.snapshot();
    let r = f.check(Some(&base));
    assert!(r.complete, "{:?}", r.incomplete);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert!(r.entries_scanned.unwrap() >= 10);
}

#[test]
fn special_files_and_escaping_symlinks_are_quarantined() {
    let f = fixture();
    let base = f.snapshot();
    mkfifo(&f.root.join("src/pipe"));
    let _sock = std::os::unix::net::UnixListener::bind(f.root.join("agent.sock")).unwrap();
    symlink("/root/.bashrc", f.root.join("bashrc")).unwrap();
    symlink("../../../etc/passwd", f.root.join("src/passwd")).unwrap();
    // Lexically inside, but through another symlink it lands outside.
    symlink("/", f.root.join("src/slash")).unwrap();
    symlink("slash/etc", f.root.join("src/etc")).unwrap();
    // An absolute path that starts inside the repository and climbs out.
    symlink(f.root.join("../outside"), f.root.join("abs-climb")).unwrap();

    let r = f.check(Some(&base));
    assert!(r.complete, "{:?}", r.incomplete);
    for (path, kind) in [
        ("src/pipe", Kind::Fifo),
        ("agent.sock", Kind::Socket),
        ("bashrc", Kind::EscapingSymlink),
        ("src/passwd", Kind::EscapingSymlink),
        ("src/slash", Kind::EscapingSymlink),
        ("src/etc", Kind::EscapingSymlink),
        ("abs-climb", Kind::EscapingSymlink),
    ] {
        let found = find(&r, path, kind);
        assert_eq!(found.origin, Origin::New);
        let to = quarantined(found);
        assert_eq!(to, f.quarantine.join(path));
        // Moved, not followed: the quarantine holds the entry itself.
        assert!(to.symlink_metadata().is_ok(), "{}", to.display());
        assert!(
            f.root.join(path).symlink_metadata().is_err(),
            "{path} still there"
        );
    }
    assert_eq!(
        std::fs::read_link(f.quarantine.join("bashrc")).unwrap(),
        Path::new("/root/.bashrc")
    );
    assert_eq!(r.not_neutralized(), 0);
    assert_eq!(r.by_session(), 7);
}

#[test]
fn setuid_and_setgid_bits_are_cleared_in_place() {
    let f = fixture();
    let base = f.snapshot();
    let bin = f.root.join("bin/sh");
    write(&bin, "#!/bin/sh\n");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o6755)).unwrap();
    let r = f.check(Some(&base));
    assert_eq!(find(&r, "bin/sh", Kind::Setuid).action, Action::BitsCleared);
    assert_eq!(find(&r, "bin/sh", Kind::Setgid).action, Action::BitsCleared);
    let mode = std::fs::metadata(&bin).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o755);
}

#[test]
fn file_capabilities_are_removed_when_they_can_be_set() {
    let f = fixture();
    let base = f.snapshot();
    let bin = f.root.join("ping");
    write(&bin, "x");
    // VFS_CAP_REVISION_2 with CAP_NET_RAW (13) permitted and effective.
    let mut cap = [0u8; 20];
    cap[..4].copy_from_slice(&0x0200_0001u32.to_le_bytes());
    cap[4..8].copy_from_slice(&(1u32 << 13).to_le_bytes());
    let set = rustix::fs::setxattr(
        &bin,
        "security.capability",
        &cap,
        rustix::fs::XattrFlags::empty(),
    );
    let r = f.check(Some(&base));
    match set {
        Ok(()) => {
            let found = find(&r, "ping", Kind::FileCapability);
            assert_eq!(found.action, Action::CapabilityRemoved);
            assert!(rustix::fs::lgetxattr_query(&bin, "security.capability").is_err());
        }
        // Without CAP_SETFCAP nobody (the agent included) can plant one: nothing to find.
        Err(_) => assert!(r.findings.is_empty(), "{:#?}", r.findings),
    }
}

#[test]
fn planted_git_metadata_is_quarantined_and_benign_nested_repos_kept() {
    let f = fixture();
    let base = f.snapshot();
    git_dir(
        &f.root.join("nested/.git"),
        &[("hooks/pre-commit", "#!/bin/sh\nid\n")],
    );
    git_dir(
        &f.root.join("evilgit"),
        &[("config", "[core]\n\tfsmonitor = touch /tmp/pwned\n")],
    );
    git_dir(&f.root.join("plain/.git"), &[]);
    write(&f.root.join("wt/.git"), "gitdir: /tmp/elsewhere\n");
    write(&f.root.join("wt2/.git"), "gitdir: ../evilgit\n");
    std::fs::create_dir_all(f.root.join("linked")).unwrap();
    symlink("../nested/.git", f.root.join("linked/.git")).unwrap();
    mkfifo(&f.root.join("nested/.git/fifo"));

    let r = f.check(Some(&base));
    for path in [
        "nested/.git",
        "evilgit",
        "wt/.git",
        "wt2/.git",
        "linked/.git",
    ] {
        let found = find(&r, path, Kind::NestedGitMetadata);
        quarantined(found);
        assert!(f.root.join(path).symlink_metadata().is_err(), "{path} kept");
    }
    assert!(find(&r, "nested/.git", Kind::NestedGitMetadata)
        .detail
        .contains("hooks/pre-commit"));
    // Examined once as a nested .git directory, never again as a bare-repository shape.
    let nested: Vec<_> = r
        .findings
        .iter()
        .filter(|x| x.path == "nested/.git")
        .collect();
    assert_eq!(nested.len(), 1, "{nested:#?}");
    assert!(find(&r, "evilgit", Kind::NestedGitMetadata)
        .detail
        .contains("core.fsmonitor"));
    // Inside moved metadata: reported, and moved with it.
    let fifo = find(&r, "nested/.git/fifo", Kind::Fifo);
    assert_eq!(quarantined(fifo), f.quarantine.join("nested/.git/fifo"));
    assert!(f
        .quarantine
        .join("nested/.git/fifo")
        .symlink_metadata()
        .is_ok());
    assert!(f.quarantine.join("nested/.git/hooks/pre-commit").exists());
    // A nested repository with default config and sample hooks only is not a finding.
    assert!(f.root.join("plain/.git/HEAD").exists());
    assert!(!r.findings.iter().any(|x| x.path.starts_with("plain")));
}

#[test]
fn names_that_are_not_utf8_or_hold_controls_are_reported_and_neutralized() {
    use std::os::unix::ffi::OsStrExt;
    let f = fixture();
    let odd = f
        .root
        .join(std::ffi::OsStr::from_bytes(b"bad\xff\x1b[2Jname"));
    mkfifo(&odd);
    let r = f.check(None);
    assert_eq!(r.findings.len(), 1);
    quarantined(&r.findings[0]);
    assert!(odd.symlink_metadata().is_err());
    let v = r.to_json();
    assert_eq!(v["findings"][0]["kind"], "fifo");
    assert!(v["findings"][0]["path"]
        .as_str()
        .unwrap()
        .starts_with("bad"));
}

#[test]
fn pre_existing_items_are_reported_but_kept_unless_changed() {
    let f = fixture();
    mkfifo(&f.root.join("old-pipe"));
    symlink("/usr/share", f.root.join("share")).unwrap();
    git_dir(
        &f.root.join("sub/.git"),
        &[("hooks/post-checkout", "#!/bin/sh\n")],
    );
    write(&f.root.join("old-pipe2"), "");
    let base = f.snapshot();
    // Changed during the session: the symlink is re-pointed, a hook added.
    std::fs::remove_file(f.root.join("share")).unwrap();
    symlink("/root", f.root.join("share")).unwrap();
    write(&f.root.join("sub/.git/hooks/pre-commit"), "#!/bin/sh\nid\n");

    let r = f.check(Some(&base));
    let old = find(&r, "old-pipe", Kind::Fifo);
    assert_kept(old);
    assert!(f.root.join("old-pipe").symlink_metadata().is_ok());
    let share = find(&r, "share", Kind::EscapingSymlink);
    assert_eq!(share.origin, Origin::Changed);
    quarantined(share);
    let sub = find(&r, "sub/.git", Kind::NestedGitMetadata);
    assert_eq!(sub.origin, Origin::Changed);
    quarantined(sub);
}

#[test]
fn without_a_baseline_everything_is_the_sessions() {
    let f = fixture();
    mkfifo(&f.root.join("p"));
    let r = f.check(None);
    let p = find(&r, "p", Kind::Fifo);
    assert_eq!(p.origin, Origin::Unknown);
    quarantined(p);
    assert_eq!(r.baseline, Some(false));
}

#[test]
fn the_repository_own_git_config_is_reported_when_it_changes() {
    let f = fixture();
    let base = f.snapshot();
    write(&f.root.join(".git/commondir"), "../evilgit\n");
    let r = f.check(Some(&base));
    let g = find(&r, ".git", Kind::RepoGitMetadata);
    assert_eq!((g.origin, &g.action), (Origin::New, &Action::Reported));
    assert!(g.detail.contains("commondir"), "{}", g.detail);
    // The redirect itself is moved out; the directory and its config stay.
    let c = find(&r, ".git/commondir", Kind::RepoGitHook);
    quarantined(c);
    assert!(!f.root.join(".git/commondir").exists());
    assert!(f.root.join(".git/config").exists());
}

#[test]
fn hooks_added_to_the_repository_own_git_directory_are_quarantined_and_old_ones_kept() {
    let f = fixture();
    write(&f.root.join(".git/hooks/pre-push"), "#!/bin/sh\n");
    let base = f.snapshot();
    write(&f.root.join(".git/hooks/post-checkout"), "#!/bin/sh\nid\n");
    let r = f.check(Some(&base));
    let old = find(&r, ".git/hooks/pre-push", Kind::RepoGitHook);
    assert_kept(old);
    let new = find(&r, ".git/hooks/post-checkout", Kind::RepoGitHook);
    assert_eq!(new.origin, Origin::New);
    quarantined(new);
    assert!(f.root.join(".git/hooks/pre-push").exists());
    assert!(!f.root.join(".git/hooks/post-checkout").exists());
    assert!(f.root.join(".git/hooks/pre-commit.sample").exists());
}

#[test]
fn symlinked_directories_are_not_descended_and_bounds_are_reported() {
    let f = fixture();
    symlink("/", f.root.join("slash")).unwrap();
    let r = f.check(None);
    assert!(r.entries_scanned.unwrap() < 50, "{:?}", r.entries_scanned);

    let tight = Limits {
        max_entries: 3,
        ..Limits::default()
    };
    let g = fixture();
    let r = check(&g.root, None, &g.quarantine, &tight);
    assert!(!r.complete);
    assert!(r.incomplete[0].contains("3 entries"), "{:?}", r.incomplete);

    let shallow = Limits {
        max_depth: 1,
        ..Limits::default()
    };
    let r = check(&g.root, None, &g.quarantine, &shallow);
    assert!(!r.complete);
    assert!(r.incomplete.iter().any(|w| w.contains("deeper than 1")));
}

#[test]
fn the_report_serializes_with_its_actions() {
    let f = fixture();
    mkfifo(&f.root.join("p"));
    let r = f.check(None);
    let v = r.to_json();
    assert_eq!(v["findings"][0]["kind"], "fifo");
    assert_eq!(v["findings"][0]["action"], "quarantined");
    assert_eq!(v["findings"][0]["origin"], "unknown");
    let back: Report = serde_json::from_value(v).unwrap();
    assert_eq!(back.findings.len(), 1);
    let base = f.snapshot();
    let text = serde_json::to_string(&base).unwrap();
    let again: Baseline = serde_json::from_str(&text).unwrap();
    assert_eq!(again.items, base.items);
}

/// The quarantine on another file system (here /dev/shm when it is one): directories and
/// symlinks are copied over and removed, special files removed and said so.
#[test]
fn a_quarantine_on_another_file_system_still_takes_everything_out() {
    use std::os::unix::fs::MetadataExt;
    let f = fixture();
    let Ok(other) = tempfile::tempdir_in("/dev/shm") else {
        return assert!(Path::new("/dev/shm").metadata().is_err());
    };
    let across =
        std::fs::metadata(other.path()).unwrap().dev() != std::fs::metadata(&f.root).unwrap().dev();
    let quarantine = other.path().join("q");
    mkfifo(&f.root.join("pipe"));
    symlink("/etc/passwd", f.root.join("passwd")).unwrap();
    git_dir(
        &f.root.join("n/.git"),
        &[("hooks/pre-commit", "#!/bin/sh\nid\n")],
    );
    let r = check(&f.root, None, &quarantine, &Limits::default());
    assert_eq!(r.not_neutralized(), 0, "{:#?}", r.findings);
    for p in ["pipe", "passwd", "n/.git"] {
        assert!(f.root.join(p).symlink_metadata().is_err(), "{p} kept");
    }
    assert_eq!(
        std::fs::read_link(quarantine.join("passwd")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert!(quarantine.join("n/.git/hooks/pre-commit").is_file());
    let pipe = find(&r, "pipe", Kind::Fifo);
    if across {
        assert!(matches!(pipe.action, Action::Removed { .. }), "{pipe:?}");
    } else {
        quarantined(pipe);
    }
}

#[test]
fn active_keys_added_to_the_repository_config_are_undone() {
    let f = fixture();
    let config = f.root.join(".git/config");
    let original = std::fs::read_to_string(&config).unwrap();
    let base = f.snapshot();
    // Inert changes stay.
    std::fs::write(&config, format!("{original}[user]\n\temail = a@b\n")).unwrap();
    let r = f.check(Some(&base));
    assert!(!r.findings.iter().any(|x| x.kind == Kind::RepoGitConfig));
    // An fsmonitor command does not.
    let evil = format!("{original}[core]\n\tfsmonitor = touch /tmp/pwned\n");
    std::fs::write(&config, &evil).unwrap();
    let r = f.check(Some(&base));
    let c = find(&r, ".git/config", Kind::RepoGitConfig);
    assert!(c.detail.contains("core.fsmonitor"), "{}", c.detail);
    assert_eq!(std::fs::read_to_string(quarantined(c)).unwrap(), evil);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);
    // A config replaced by a symlink is moved, not followed, and restored too.
    std::fs::remove_file(&config).unwrap();
    symlink("/tmp/elsewhere-config", &config).unwrap();
    let r = f.check(Some(&base));
    let link = find(&r, ".git/config", Kind::EscapingSymlink);
    let to = quarantined(link);
    assert_eq!(
        std::fs::read_link(to).unwrap(),
        Path::new("/tmp/elsewhere-config")
    );
    let c = find(&r, ".git/config", Kind::RepoGitConfig);
    assert_eq!(c.action, Action::Reported);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);
}
