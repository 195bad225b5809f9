//! No privilege leaves the sandbox: whatever a sandboxed command does, the host finds no
//! setuid/setgid file, no file capability and no device node in the repository afterwards.
//! The interesting case is agp running as root (CI, containers), where the sandboxed process
//! keeps kernel uid 0; as another user the bits would not grant root, and the test says so.
//! Bubblewrap only: the container provider never runs a command as root (it refuses a
//! root-owned repository and runs as its owner, without capabilities), so there is no root
//! case to plant from.

use super::support as common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use common::*;

/// Everything under `dir` that would carry privilege or a device onto the host.
fn privileged_entries(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let ft = meta.file_type();
            if ft.is_dir() {
                stack.push(path.clone());
            }
            if meta.mode() & (libc::S_ISUID | libc::S_ISGID) != 0 && !ft.is_symlink() {
                found.push(format!("{} mode {:o}", path.display(), meta.mode()));
            }
            if ft.is_block_device() || ft.is_char_device() {
                found.push(format!("{} is a device", path.display()));
            }
            if !ft.is_symlink() && has_capability_xattr(&path) {
                found.push(format!("{} has security.capability", path.display()));
            }
        }
    }
    found
}

fn has_capability_xattr(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let name = c"security.capability";
    // SAFETY: a size query (null buffer, size 0) of a NUL-terminated path and name we own.
    let n = unsafe { libc::lgetxattr(c.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
    n >= 0
}

#[test]
fn setuid_setgid_capabilities_and_devices_cannot_be_planted() {
    if !is_root() {
        eprintln!(
            "SKIPPED LOUDLY: not running as root; a setuid file planted by a non-root agp \
             would not grant root, and this test proves the root case only"
        );
        return;
    }
    let fx = Fixture::new();
    // A tar archive holding a setuid-root and a setgid entry, made on the host.
    let made = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import tarfile, io, sys\n\
             t = tarfile.open(sys.argv[1], 'w')\n\
             for name, mode in (('tsuid', 0o4755), ('tsgid', 0o2755)):\n\
             \x20   i = tarfile.TarInfo(name); i.mode = mode; d = b'#!/bin/sh\\n'; i.size = len(d)\n\
             \x20   t.addfile(i, io.BytesIO(d))\n\
             t.close()\n",
        )
        .arg(fx.repo.join("evil.tar"))
        .status()
        .unwrap();
    assert!(made.success());
    let out = fx.sh(
        "export LC_ALL=C\n\
         cp /bin/bash b1; chmod 4755 b1 && echo CHMOD-NUMERIC\n\
         cp /bin/bash b2; chmod u+s b2 && echo CHMOD-SYMBOLIC\n\
         cp /bin/bash b3; chmod g+s b3 && echo CHMOD-SGID\n\
         install -m 4755 /bin/bash b4 && echo INSTALL\n\
         cp -p /usr/bin/su b5 && echo CP-P\n\
         cp -a /usr/bin/su b6 && echo CP-A\n\
         tar -xpf evil.tar && echo TAR\n\
         python3 -c 'import os; os.close(os.open(\"b7\", os.O_CREAT | os.O_WRONLY, 0o4755)); print(\"OPEN\")'\n\
         python3 -c 'import os; os.mknod(\"b8\", 0o104755); print(\"MKNOD-REG\")'\n\
         python3 -c 'import os; os.mknod(\"dev1\", 0o20666, os.makedev(1, 3)); print(\"MKNOD-CHR\")'\n\
         python3 -c 'import os; os.mknod(\"dev2\", 0o60666, os.makedev(7, 0)); print(\"MKNOD-BLK\")'\n\
         mkdir -m 2755 d1 && echo MKDIR-SGID\n\
         touch cap; python3 -c 'import os; os.setxattr(\"cap\", \"security.capability\", bytes.fromhex(\"0100000200200000000000000000000000000000\")); print(\"SETCAP\")'\n\
         python3 -c 'import os; fd = os.open(\".\", os.O_TMPFILE | os.O_WRONLY, 0o4755); print(\"TMPFILE\")'\n\
         perl -e 'chmod 04755, \"b1\" and print \"PERL\\n\"'\n\
         # Ordinary modes still work.\n\
         cp /bin/bash ok1 && chmod 755 ok1 && chmod +x ok1 && mkdir -m 700 okd && install -m 644 /etc/hosts ok2 && cp -p /etc/hosts ok3 && echo BENIGN-OK\n\
         mkfifo fifo && echo FIFO-OK\n\
         true",
    );
    let s = stdout(&out);
    let dump = format!("stdout:\n{s}\nstderr:\n{}", stderr(&out));
    for planted in [
        "CHMOD-NUMERIC",
        "CHMOD-SYMBOLIC",
        "CHMOD-SGID",
        "INSTALL",
        "CP-P",
        "CP-A",
        "OPEN",
        "MKNOD",
        "MKDIR-SGID",
        "SETCAP",
        "TMPFILE",
        "PERL",
    ] {
        assert!(!s.contains(planted), "{planted} succeeded: {dump}");
    }
    assert!(s.contains("BENIGN-OK"), "{dump}");
    assert!(s.contains("FIFO-OK"), "{dump}");
    let found = privileged_entries(&fx.repo);
    assert!(
        found.is_empty(),
        "privilege left the sandbox: {found:?}\n{dump}"
    );
    // The copies that did land are plain executables.
    let mode = std::fs::metadata(fx.repo.join("ok1")).unwrap().mode();
    assert_eq!(mode & 0o7777, 0o755);
}
