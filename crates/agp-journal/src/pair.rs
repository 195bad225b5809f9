//! Publishing the latest checkpoint and its SSHSIG as one pair.
//!
//! `checkpoint` and `checkpoint.sig` must stay two plain-looking files side by side so
//! `ssh-keygen -Y verify -s checkpoint.sig < checkpoint` works, yet replacing two files takes two
//! renames, and a crash between them leaves a torn pair. So each pair is written complete into
//! its own generation directory, `checkpoint.d/<n>/`, and one rename of the directory symlink
//! `checkpoint.latest -> checkpoint.d/<n>` publishes both at once; `checkpoint` and
//! `checkpoint.sig` are fixed symlinks through it. A crash leaves either the old pair or the
//! new one published, plus at most an unpublished generation that the next write removes.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use agp_contracts::JournalError;

use crate::writer::io_err;
use crate::{CHECKPOINT_FILE, SSHSIG_FILE};

/// The directory symlink that publishes the latest pair.
pub const LATEST_LINK: &str = "checkpoint.latest";
/// Where generations live.
pub const GENERATIONS_DIR: &str = "checkpoint.d";
/// Largest `checkpoint` or `checkpoint.sig` the verifier reads (agp writes well under 4 KiB).
const MAX_PAIR_FILE: u64 = 1 << 20;

/// Points where a test makes `publish` stop as if the process had been killed there.
#[cfg(test)]
pub(crate) mod crash {
    use std::cell::Cell;
    thread_local! {
        pub(crate) static AFTER: Cell<Option<u8>> = const { Cell::new(None) };
    }
    /// Crash points are numbered 1 to this; 7 and 8 are only reached while migrating the
    /// plain files of the earlier layout.
    pub(crate) const POINTS: u8 = 8;
}

#[cfg(test)]
fn crash_point(n: u8) -> Result<(), JournalError> {
    if crash::AFTER.get() == Some(n) {
        return Err(JournalError::Io(std::io::Error::other(format!(
            "simulated crash at point {n}"
        ))));
    }
    Ok(())
}

// Fails only in tests (above), which stop `publish` at each point in turn.
#[cfg(not(test))]
#[allow(clippy::unnecessary_wraps)]
fn crash_point(_: u8) -> Result<(), JournalError> {
    Ok(())
}

/// The generation numbers present in `checkpoint.d` (names that are canonical decimals).
fn generations(dir: &Path) -> Result<Vec<(u64, PathBuf)>, std::io::Error> {
    let gens = dir.join(GENERATIONS_DIR);
    let list = match std::fs::read_dir(&gens) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for e in list {
        let e = e?;
        let n = e.file_name().to_str().and_then(parse_generation);
        if let Some(n) = n {
            out.push((n, e.path()));
        }
    }
    Ok(out)
}

fn parse_generation(s: &str) -> Option<u64> {
    let canonical = !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s.len() == 1 || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

/// The generation a new writer continues from: one past every generation present.
pub(crate) fn next_generation(dir: &Path) -> Result<u64, JournalError> {
    let gens =
        generations(dir).map_err(|e| io_err("cannot list", &dir.join(GENERATIONS_DIR), &e))?;
    Ok(gens.iter().map(|(n, _)| n + 1).max().unwrap_or(1))
}

/// Writes `note` and `sig` as generation `gen` and publishes them as `checkpoint` and
/// `checkpoint.sig` in one rename; then removes every other generation. With `sync`, all of it
/// is durable when this returns.
pub(crate) fn publish(
    dir: &Path,
    gen: u64,
    note: &[u8],
    sig: &[u8],
    sync: bool,
) -> Result<(), JournalError> {
    let gens = dir.join(GENERATIONS_DIR);
    // Old generations are deleted in there: it must be this folder's own directory, never a
    // link to somewhere else.
    if std::fs::symlink_metadata(&gens).is_ok_and(|m| !m.is_dir()) {
        remove_entry(&gens).map_err(|e| io_err("cannot remove", &gens, &e))?;
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&gens)
        .map_err(|e| io_err("cannot create", &gens, &e))?;
    let name = gen.to_string();
    let gdir = gens.join(&name);
    // A directory under this number is an unpublished leftover (never the published one: every
    // write takes a number past all present), so it can go.
    fresh_private_dir(&gdir)?;
    write_new(&gdir.join(SSHSIG_FILE), sig, sync)?;
    crash_point(1)?;
    write_new(&gdir.join(CHECKPOINT_FILE), note, sync)?;
    crash_point(2)?;
    if sync {
        sync_dir(&gdir)?;
        sync_dir(&gens)?;
    }
    // A verifier beside a live writer reads the pair under a shared lock on the folder, so the
    // generation it resolved is not removed under it.
    let dir_handle = File::open(dir).map_err(|e| io_err("cannot open", dir, &e))?;
    dir_handle
        .lock()
        .map_err(|e| io_err("cannot lock", dir, &e))?;
    migrate_plain_files(dir, &gens, &name, sync)?;
    crash_point(3)?;
    replace_symlink(dir, LATEST_LINK, &format!("{GENERATIONS_DIR}/{name}"))?;
    crash_point(4)?;
    if sync {
        dir_handle
            .sync_all()
            .map_err(|e| io_err("cannot sync", dir, &e))?;
    }
    remove_unpublished(dir, Some(gen))?;
    crash_point(5)?;
    // Temporary files an older writer's interrupted replacement left behind.
    for tmp in [SSHSIG_FILE, CHECKPOINT_FILE] {
        let p = dir.join(format!(".{tmp}.tmp"));
        remove_entry(&p).map_err(|e| io_err("cannot remove", &p, &e))?;
    }
    crash_point(6)?;
    Ok(())
}

/// Once per journal: turns the plain `checkpoint` and `checkpoint.sig` of the earlier layout
/// into links through `checkpoint.latest`. Their current content is first published as a
/// generation of its own, so each of the two renames keeps both names showing the same pair.
fn migrate_plain_files(
    dir: &Path,
    gens: &Path,
    name: &str,
    sync: bool,
) -> Result<(), JournalError> {
    let linked = |file: &str| {
        std::fs::read_link(dir.join(file)).ok().as_deref()
            == Some(Path::new(&format!("{LATEST_LINK}/{file}")))
    };
    if linked(SSHSIG_FILE) && linked(CHECKPOINT_FILE) {
        return Ok(());
    }
    let earlier = format!("{name}-earlier");
    let edir = gens.join(&earlier);
    fresh_private_dir(&edir)?;
    for file in [SSHSIG_FILE, CHECKPOINT_FILE] {
        let from = dir.join(file);
        // What cannot be read (absent, or not a file agp writes) is not carried over.
        if let Ok(Some(data)) = read_small(&from) {
            write_new(&edir.join(file), &data, sync)?;
        }
    }
    if sync {
        sync_dir(&edir)?;
        sync_dir(gens)?;
    }
    replace_symlink(dir, LATEST_LINK, &format!("{GENERATIONS_DIR}/{earlier}"))?;
    crash_point(7)?;
    for file in [SSHSIG_FILE, CHECKPOINT_FILE] {
        if !linked(file) {
            replace_symlink(dir, file, &format!("{LATEST_LINK}/{file}"))?;
        }
        crash_point(8)?;
    }
    Ok(())
}

/// Removes every entry of `checkpoint.d` but generation `keep`.
fn remove_unpublished(dir: &Path, keep: Option<u64>) -> Result<(), JournalError> {
    let gens = dir.join(GENERATIONS_DIR);
    let list = std::fs::read_dir(&gens).map_err(|e| io_err("cannot list", &gens, &e))?;
    for e in list {
        let e = e.map_err(|e| io_err("cannot list", &gens, &e))?;
        let keep_it = keep.is_some() && e.file_name().to_str().and_then(parse_generation) == keep;
        if !keep_it {
            let p = e.path();
            remove_entry(&p).map_err(|e| io_err("cannot remove", &p, &e))?;
        }
    }
    Ok(())
}

/// Removes a file, symlink (not what it points to) or directory tree; absent is fine.
fn remove_entry(p: &Path) -> std::io::Result<()> {
    let res = match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) => Err(e),
    };
    match res {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// An empty directory at `p`, readable by its owner only, in place of whatever was there.
fn fresh_private_dir(p: &Path) -> Result<(), JournalError> {
    remove_entry(p).map_err(|e| io_err("cannot remove", p, &e))?;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(p)
        .map_err(|e| io_err("cannot create", p, &e))
}

fn write_new(path: &Path, data: &[u8], sync: bool) -> Result<(), JournalError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err("cannot write", path, &e))?;
    f.write_all(data)
        .and_then(|()| if sync { f.sync_data() } else { Ok(()) })
        .map_err(|e| io_err("cannot write", path, &e))
}

fn sync_dir(p: &Path) -> Result<(), JournalError> {
    File::open(p)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("cannot sync", p, &e))
}

/// Atomically makes `dir/name` a symlink to `target` (relative), whatever was there.
fn replace_symlink(dir: &Path, name: &str, target: &str) -> Result<(), JournalError> {
    let tmp = dir.join(format!(".{name}.link"));
    remove_entry(&tmp).map_err(|e| io_err("cannot remove", &tmp, &e))?;
    std::os::unix::fs::symlink(target, &tmp).map_err(|e| io_err("cannot create", &tmp, &e))?;
    let path = dir.join(name);
    std::fs::rename(&tmp, &path).map_err(|e| io_err("cannot replace", &path, &e))
}

/// The published pair as a verifier reads it, and what a crash left unpublished.
#[derive(Debug, Default)]
pub(crate) struct Published {
    pub checkpoint: Option<Vec<u8>>,
    pub sig: Option<Vec<u8>>,
    /// Entries of `checkpoint.d` other than the published generation, sorted.
    pub unpublished: Vec<String>,
}

/// The published latest checkpoint note, read as the verifier reads it (see
/// [`read_published`]); `None` when there is none.
pub fn read_latest(dir: &Path) -> std::io::Result<Option<Vec<u8>>> {
    Ok(read_published(dir)?.checkpoint)
}

/// Reads `checkpoint` and `checkpoint.sig` (following the links, or the plain files of the
/// earlier layout) as one pair, under a shared lock on the folder when it can be taken: the
/// writer publishes under an exclusive one. A copy where locking is not possible (read-only
/// media, another filesystem) has no live writer, so the lock is best effort.
pub(crate) fn read_published(dir: &Path) -> std::io::Result<Published> {
    let dir_lock = File::open(dir).ok().filter(|d| d.lock_shared().is_ok());
    let checkpoint = read_small(&dir.join(CHECKPOINT_FILE))?;
    let sig = read_small(&dir.join(SSHSIG_FILE))?;
    // Which generation is published. A `checkpoint.latest` that is a real directory (a copy
    // that followed links) publishes none of `checkpoint.d`, and nothing there is unfinished.
    let latest = dir.join(LATEST_LINK);
    let published = match std::fs::symlink_metadata(&latest) {
        Ok(m) if m.file_type().is_symlink() => std::fs::read_link(&latest)?
            .strip_prefix(GENERATIONS_DIR)
            .ok()
            .and_then(|g| g.to_str())
            .map(str::to_string),
        Ok(_) => {
            drop(dir_lock);
            return Ok(Published {
                checkpoint,
                sig,
                unpublished: Vec::new(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let mut unpublished = Vec::new();
    match std::fs::read_dir(dir.join(GENERATIONS_DIR)) {
        Ok(list) => {
            for e in list {
                let name = e?.file_name().to_string_lossy().into_owned();
                if Some(&name) != published.as_ref() {
                    unpublished.push(name);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    drop(dir_lock);
    unpublished.sort();
    Ok(Published {
        checkpoint,
        sig,
        unpublished,
    })
}

/// Reads a regular file of at most `MAX_PAIR_FILE` bytes; absent is `None`. A FIFO, device or
/// huge file there (which no writer makes) is refused rather than read forever.
fn read_small(p: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let f = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(p)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    if !meta.is_file() || meta.len() > MAX_PAIR_FILE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} is not a regular file of at most {MAX_PAIR_FILE} bytes (agp never writes one like it)",
                p.display()
            ),
        ));
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    f.take(MAX_PAIR_FILE).read_to_end(&mut out)?;
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{verify_dir, Code, Report, VerifyOptions};
    use crate::writer::{JournalOptions, JournalWriter};
    use crate::{sshsig, SignerKey};
    use agp_contracts::Journal as _;
    use serde_json::json;

    fn opts(key: &SignerKey) -> VerifyOptions {
        VerifyOptions {
            trusted_key: key.verifier().clone(),
            trusted_checkpoint: None,
        }
    }

    fn append(dir: &Path, key: &SignerKey, n: u64) {
        let w = JournalWriter::open(dir, key.clone(), JournalOptions::default()).unwrap();
        for i in 0..n {
            w.append("tool_call.requested", Some("s"), json!({"i": i}))
                .unwrap();
        }
        w.close().unwrap();
    }

    fn read_pair(dir: &Path) -> (Vec<u8>, Vec<u8>) {
        (
            std::fs::read(dir.join(CHECKPOINT_FILE)).unwrap(),
            std::fs::read(dir.join(SSHSIG_FILE)).unwrap(),
        )
    }

    /// What `ssh-keygen -Y verify -s checkpoint.sig < checkpoint` checks.
    fn pair_matches(dir: &Path, key: &SignerKey) -> bool {
        let (note, sig) = read_pair(dir);
        let sig = String::from_utf8(sig).unwrap();
        sshsig::verify(&sig, key.verifier(), sshsig::CHECKPOINT_NAMESPACE, &note).is_ok()
    }

    fn errors(r: &Report) -> Vec<String> {
        r.errors().map(ToString::to_string).collect()
    }

    /// Replaces the published pair by plain files, as writers before `checkpoint.d` left it.
    fn to_plain_layout(dir: &Path, note: &[u8], sig: &[u8]) {
        for name in [CHECKPOINT_FILE, SSHSIG_FILE, LATEST_LINK, GENERATIONS_DIR] {
            remove_entry(&dir.join(name)).unwrap();
        }
        std::fs::write(dir.join(CHECKPOINT_FILE), note).unwrap();
        std::fs::write(dir.join(SSHSIG_FILE), sig).unwrap();
    }

    /// A journal whose newest stored checkpoint (B) is not published yet (A, the one before, is):
    /// the state a writer is in right before it publishes. Returns B's pair.
    fn about_to_publish(dir: &Path, key: &SignerKey, plain: bool) -> (Vec<u8>, Vec<u8>) {
        append(dir, key, 3);
        let a = read_pair(dir);
        append(dir, key, 2);
        let b = read_pair(dir);
        assert_ne!(a.0, b.0);
        let cps = std::fs::read(dir.join(crate::CHECKPOINTS_FILE)).unwrap();
        assert!(cps.ends_with(&b.0), "B is the newest stored checkpoint");
        if plain {
            to_plain_layout(dir, &a.0, &a.1);
        } else {
            publish(dir, next_generation(dir).unwrap(), &a.0, &a.1, true).unwrap();
        }
        let r = verify_dir(dir, &opts(key)).unwrap();
        assert!(r.intact && errors(&r).is_empty(), "{:?}", r.findings);
        assert!(pair_matches(dir, key));
        b
    }

    #[test]
    fn a_crash_at_any_point_of_publishing_leaves_a_consistent_pair_that_verifies() {
        for plain in [false, true] {
            for point in 1..=crash::POINTS {
                let tmp = tempfile::tempdir().unwrap();
                let dir = tmp.path();
                let key = SignerKey::generate("agp.test/log").unwrap();
                let b = about_to_publish(dir, &key, plain);
                crash::AFTER.set(Some(point));
                let res = publish(dir, next_generation(dir).unwrap(), &b.0, &b.1, false);
                crash::AFTER.set(None);
                let what = format!("plain layout {plain}, crash at point {point}");
                let crashed = res.is_err();
                // Points 7 and 8 only exist while migrating the plain layout.
                assert_eq!(crashed, plain || point < 7, "{what}: {res:?}");

                // Whatever the point, both names show one pair, and an auditor's ssh-keygen
                // agrees with it.
                assert!(pair_matches(dir, &key), "{what}");
                let r = verify_dir(dir, &opts(&key)).unwrap();
                assert!(r.intact, "{what}: {:?}", r.findings);
                assert!(!r.has(Code::SshsigInvalid), "{what}: {:?}", r.findings);
                let leftovers = std::fs::read_dir(dir.join(GENERATIONS_DIR))
                    .map_or(0, std::iter::Iterator::count);
                if leftovers > 1 {
                    assert!(
                        r.has(Code::UnfinishedCheckpoint),
                        "{what}: {:?}",
                        r.findings
                    );
                }

                // The next open (what `agp journal recover` does) finishes the job.
                let w = JournalWriter::open(dir, key.clone(), JournalOptions::default()).unwrap();
                assert_eq!(
                    w.open_summary().unfinished_checkpoint,
                    r.has(Code::UnfinishedCheckpoint),
                    "{what}"
                );
                w.close().unwrap();
                drop(w);
                let r = verify_dir(dir, &opts(&key)).unwrap();
                assert!(r.findings.is_empty(), "{what}: {:?}", r.findings);
                assert_eq!(
                    std::fs::read_dir(dir.join(GENERATIONS_DIR))
                        .unwrap()
                        .count(),
                    1,
                    "{what}"
                );
                assert!(pair_matches(dir, &key), "{what}");
            }
        }
    }

    #[test]
    fn a_plain_pair_torn_by_an_earlier_writer_is_an_unfinished_checkpoint() {
        // Writers before `checkpoint.d` replaced checkpoint.sig, then checkpoint; killed in
        // between they left B's SSHSIG beside A.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let key = SignerKey::generate("agp.test/log").unwrap();
        let b = about_to_publish(dir, &key, true);
        let a = read_pair(dir);
        std::fs::write(dir.join(SSHSIG_FILE), &b.1).unwrap();
        let r = verify_dir(dir, &opts(&key)).unwrap();
        assert!(r.intact, "{:?}", r.findings);
        assert!(r.has(Code::UnfinishedCheckpoint), "{:?}", r.findings);
        assert!(!r.has(Code::SshsigInvalid));

        // The same SSHSIG once a later checkpoint is stored is no longer the interrupted
        // replacement: it is a finding.
        let cps = dir.join(crate::CHECKPOINTS_FILE);
        let mut stored = std::fs::read(&cps).unwrap();
        let later = stored.clone();
        stored.extend_from_slice(&a.0);
        std::fs::write(&cps, &stored).unwrap();
        let r = verify_dir(dir, &opts(&key)).unwrap();
        assert!(r.has(Code::SshsigInvalid), "{:?}", r.findings);
        std::fs::write(&cps, &later).unwrap();

        // Opening repairs it for good.
        JournalWriter::open(dir, key.clone(), JournalOptions::default())
            .unwrap()
            .close()
            .unwrap();
        let r = verify_dir(dir, &opts(&key)).unwrap();
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert!(pair_matches(dir, &key));
    }

    #[test]
    fn a_sig_that_does_not_match_is_still_a_finding() {
        for plain in [false, true] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path();
            let key = SignerKey::generate("agp.test/log").unwrap();
            let b = about_to_publish(dir, &key, plain);
            let a = read_pair(dir);
            publish(dir, next_generation(dir).unwrap(), &b.0, &b.1, true).unwrap();
            let sig_path = dir.join(SSHSIG_FILE);
            let other = SignerKey::generate("agp.test/log").unwrap();
            let forged = sshsig::sign(&other, sshsig::CHECKPOINT_NAMESPACE, &b.0);
            let mut flipped = b.1.clone();
            let i = flipped.len() / 2;
            flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
            let cases: [(&str, &[u8]); 4] = [
                ("a byte changed", &flipped),
                ("signed by another key", forged.as_bytes()),
                // An authentic SSHSIG, of an older checkpoint than `checkpoint`.
                ("the previous checkpoint's", &a.1),
                ("not an SSHSIG", b"hello\n"),
            ];
            for (what, sig) in cases {
                // Through the link (into the published generation) and as a plain file.
                for replace_link in [false, true] {
                    if replace_link {
                        std::fs::remove_file(&sig_path).unwrap();
                    }
                    std::fs::write(&sig_path, sig).unwrap();
                    let r = verify_dir(dir, &opts(&key)).unwrap();
                    assert!(!r.intact, "{what}, plain {plain}: {:?}", r.findings);
                    assert!(r.has(Code::SshsigInvalid), "{what}: {:?}", r.findings);
                    assert!(
                        !r.has(Code::UnfinishedCheckpoint),
                        "{what}: {:?}",
                        r.findings
                    );
                    publish(dir, next_generation(dir).unwrap(), &b.0, &b.1, true).unwrap();
                }
            }
            // A leftover generation holding junk is not checked, and does not excuse a
            // published pair that does not match.
            let junk = dir.join(GENERATIONS_DIR).join("999");
            std::fs::create_dir(&junk).unwrap();
            std::fs::write(junk.join(SSHSIG_FILE), b"junk").unwrap();
            std::fs::write(junk.join(CHECKPOINT_FILE), &a.0).unwrap();
            let r = verify_dir(dir, &opts(&key)).unwrap();
            assert!(
                r.intact && r.has(Code::UnfinishedCheckpoint),
                "{:?}",
                r.findings
            );
            std::fs::write(&sig_path, &a.1).unwrap();
            let r = verify_dir(dir, &opts(&key)).unwrap();
            assert!(r.has(Code::SshsigInvalid), "{:?}", r.findings);
        }
    }

    #[test]
    fn a_linked_generations_folder_is_replaced_not_emptied() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let key = SignerKey::generate("agp.test/log").unwrap();
        append(&dir, &key, 1);
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("precious"), b"x").unwrap();
        remove_entry(&dir.join(GENERATIONS_DIR)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.join(GENERATIONS_DIR)).unwrap();
        append(&dir, &key, 1);
        assert_eq!(std::fs::read(elsewhere.join("precious")).unwrap(), b"x");
        assert!(std::fs::symlink_metadata(dir.join(GENERATIONS_DIR))
            .unwrap()
            .is_dir());
        let r = verify_dir(&dir, &opts(&key)).unwrap();
        assert!(r.findings.is_empty(), "{:?}", r.findings);
    }

    #[test]
    fn a_fifo_planted_as_checkpoint_is_refused_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let key = SignerKey::generate("agp.test/log").unwrap();
        append(dir, &key, 1);
        remove_entry(&dir.join(CHECKPOINT_FILE)).unwrap();
        let path = std::ffi::CString::new(
            dir.join(CHECKPOINT_FILE)
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo does not retain it.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        let err = verify_dir(dir, &opts(&key)).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}
