//! A small seccomp filter (classic BPF, handed to bubblewrap with `--seccomp FD`) that refuses
//! with EPERM the system calls a coding agent never needs and that widen the kernel surface or
//! reach state namespaces do not isolate: keyrings, kernel modules and kexec, BPF and perf,
//! userfaultfd, mounts and namespace changes, file handles (the "shocker" escape), the kernel
//! log, swap, quotas, reboot. Calls from another ABI (i386 or x32 on x86_64) are refused as a
//! whole, so the list cannot be bypassed through a second system call table.
//!
//! # No privilege leaves the sandbox
//!
//! When agp runs as root the sandboxed process keeps kernel uid 0 (a user namespace maps 0 to
//! 0), so a file it makes setuid would be setuid-root on the host: a later `nobody` running
//! it gets euid 0. Every system call that sets a file mode from an argument is filtered here:
//! `chmod`, `fchmod`, `fchmodat`, `fchmodat2`, `mkdir`/`mkdirat`, `mknod`/`mknodat`, `creat`,
//! and `open`/`openat` when they create (`O_CREAT`, `O_TMPFILE`) fail with EPERM when the
//! mode carries S_ISUID or S_ISGID; `mknod`/`mknodat` also fail for character and block
//! devices. This covers `chmod u+s`, `install -m 4755`, `cp -p`/`cp -a`, `tar -x`/`unzip`/`rsync`
//! of setuid entries and `open(O_CREAT, 04755)` alike, whatever the program: they all end in
//! these calls. The kernel reads the mode as a 16-bit `umode_t`, and the filter tests the low
//! 32 bits of the argument, so no high bits can hide the request. Calls whose mode lives in
//! memory the filter cannot read are refused with ENOSYS so callers fall back to the filtered
//! ones: `openat2` (its `open_how` struct) and io_uring, which would run opens, mkdirs and
//! xattr writes without passing through seccomp at all.
//!
//! Other routes are closed by the kernel itself and proven by the escape tests: writing to an
//! existing setuid file clears the bit (no CAP_FSETID), `chown` needs CAP_CHOWN, file
//! capabilities (`security.capability`) need CAP_SETFCAP, device nodes need CAP_MKNOD, and
//! hard links to the host's setuid binaries cross a mount (EXDEV): every capability is dropped.
//! seccomp cannot read the xattr name, so `setxattr` itself stays allowed for `user.*`.
//! The price: nothing inside can make a setgid directory either (`mkdir -m 2775`, git with
//! `core.sharedRepository = group` adding object directories), which fails with EPERM.
//!
//! Why seccomp and not the alternatives: `nosuid` on the repository bind changes only what
//! the sandbox sees, not the bits the host later honours; running the agent under another
//! uid inside the user namespace still creates files as the outer uid (0); and a real
//! unprivileged host uid could not write a root-owned repository.

use std::io::Write;
use std::os::fd::OwnedFd;

use agp_contracts::sandbox::SandboxError;

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;
/// Never matches: architectures without a filter do not use it (see [`SUPPORTED`]).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const AUDIT_ARCH: u32 = 0;
const BPF_JSET_K: u16 = 0x45;
const BPF_ALU_AND_K: u16 = 0x54;
/// x32 system calls on x86_64 carry this bit in the number.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Refused with EPERM.
const DENIED: &[libc::c_long] = &[
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_syslog,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_name_to_handle_at,
    libc::SYS_open_by_handle_at,
    libc::SYS_lookup_dcookie,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
];

/// Offset of the low 32 bits of system call argument `i` in `struct seccomp_data`
/// (little-endian: x86_64 and aarch64).
const fn arg_low(i: usize) -> u32 {
    16 + 8 * i as u32
}

/// `fchmodat2` (Linux 6.6), the same number on every architecture; not in libc for all.
const SYS_FCHMODAT2: libc::c_long = 452;

/// Refused with ENOSYS, so that callers fall back to calls the filter can inspect.
const UNINSPECTABLE: &[libc::c_long] = &[
    libc::SYS_openat2,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
];

const S_ISUID_GID: u32 = libc::S_ISUID | libc::S_ISGID;
const S_IFMT: u32 = libc::S_IFMT;
const S_IFCHR: u32 = libc::S_IFCHR;
const S_IFBLK: u32 = libc::S_IFBLK;
/// `__O_TMPFILE` (O_TMPFILE without O_DIRECTORY).
const O_TMPFILE_BIT: u32 = (libc::O_TMPFILE & !libc::O_DIRECTORY) as u32;
const O_CREATES: u32 = libc::O_CREAT as u32 | O_TMPFILE_BIT;

/// A call that sets a mode from argument `mode`.
enum ModeRule {
    /// Refused when the mode has S_ISUID or S_ISGID.
    Always { nr: libc::c_long, mode: usize },
    /// Same, but only when argument `flags` asks to create (open, openat).
    Creating {
        nr: libc::c_long,
        flags: usize,
        mode: usize,
    },
    /// mknod: also refused for character and block devices.
    Node { nr: libc::c_long, mode: usize },
}

fn mode_rules() -> Vec<ModeRule> {
    use ModeRule::*;
    let mut rules = vec![
        Always {
            nr: libc::SYS_fchmod,
            mode: 1,
        },
        Always {
            nr: libc::SYS_fchmodat,
            mode: 2,
        },
        Always {
            nr: SYS_FCHMODAT2,
            mode: 2,
        },
        Always {
            nr: libc::SYS_mkdirat,
            mode: 2,
        },
        Node {
            nr: libc::SYS_mknodat,
            mode: 2,
        },
        Creating {
            nr: libc::SYS_openat,
            flags: 2,
            mode: 3,
        },
    ];
    #[cfg(target_arch = "x86_64")]
    rules.extend([
        Always {
            nr: libc::SYS_chmod,
            mode: 1,
        },
        Always {
            nr: libc::SYS_mkdir,
            mode: 1,
        },
        Always {
            nr: libc::SYS_creat,
            mode: 1,
        },
        Node {
            nr: libc::SYS_mknod,
            mode: 1,
        },
        Creating {
            nr: libc::SYS_open,
            flags: 1,
            mode: 2,
        },
    ]);
    rules
}

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0..2].copy_from_slice(&code.to_ne_bytes());
    b[2] = jt;
    b[3] = jf;
    b[4..8].copy_from_slice(&k.to_ne_bytes());
    b
}

/// The compiled filter, as the `struct sock_filter` array bubblewrap reads.
pub(crate) fn program() -> Vec<u8> {
    let deny = SECCOMP_RET_ERRNO | libc::EPERM as u32;
    let mut p: Vec<[u8; 8]> = vec![
        insn(BPF_LD_W_ABS, 0, 0, OFFSET_ARCH),
        // Native ABI: skip the next instruction; otherwise refuse.
        insn(BPF_JEQ_K, 1, 0, AUDIT_ARCH),
        insn(BPF_RET_K, 0, 0, deny),
        insn(BPF_LD_W_ABS, 0, 0, OFFSET_NR),
    ];
    #[cfg(target_arch = "x86_64")]
    {
        p.push(insn(BPF_JGE_K, 0, 1, X32_SYSCALL_BIT));
        p.push(insn(BPF_RET_K, 0, 0, deny));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = BPF_JGE_K;
    for nr in DENIED {
        p.push(insn(BPF_JEQ_K, 0, 1, *nr as u32));
        p.push(insn(BPF_RET_K, 0, 0, deny));
    }
    let nosys = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    for nr in UNINSPECTABLE {
        p.push(insn(BPF_JEQ_K, 0, 1, *nr as u32));
        p.push(insn(BPF_RET_K, 0, 0, nosys));
    }
    // Each block leaves the accumulator holding the system call number again.
    for rule in mode_rules() {
        match rule {
            ModeRule::Always { nr, mode } => {
                p.push(insn(BPF_JEQ_K, 0, 4, nr as u32));
                p.push(insn(BPF_LD_W_ABS, 0, 0, arg_low(mode)));
                p.push(insn(BPF_JSET_K, 0, 1, S_ISUID_GID));
                p.push(insn(BPF_RET_K, 0, 0, deny));
                p.push(insn(BPF_LD_W_ABS, 0, 0, OFFSET_NR));
            }
            ModeRule::Creating { nr, flags, mode } => {
                p.push(insn(BPF_JEQ_K, 0, 6, nr as u32));
                p.push(insn(BPF_LD_W_ABS, 0, 0, arg_low(flags)));
                p.push(insn(BPF_JSET_K, 0, 3, O_CREATES));
                p.push(insn(BPF_LD_W_ABS, 0, 0, arg_low(mode)));
                p.push(insn(BPF_JSET_K, 0, 1, S_ISUID_GID));
                p.push(insn(BPF_RET_K, 0, 0, deny));
                p.push(insn(BPF_LD_W_ABS, 0, 0, OFFSET_NR));
            }
            ModeRule::Node { nr, mode } => {
                p.push(insn(BPF_JEQ_K, 0, 7, nr as u32));
                p.push(insn(BPF_LD_W_ABS, 0, 0, arg_low(mode)));
                p.push(insn(BPF_JSET_K, 3, 0, S_ISUID_GID));
                p.push(insn(BPF_ALU_AND_K, 0, 0, S_IFMT));
                p.push(insn(BPF_JEQ_K, 1, 0, S_IFCHR));
                p.push(insn(BPF_JEQ_K, 0, 1, S_IFBLK));
                p.push(insn(BPF_RET_K, 0, 0, deny));
                p.push(insn(BPF_LD_W_ABS, 0, 0, OFFSET_NR));
            }
        }
    }
    p.push(insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW));
    p.concat()
}

/// Whether this architecture has a filter (x86_64, aarch64).
pub(crate) const SUPPORTED: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// A pipe whose read end holds the program (it fits the pipe buffer), for `--seccomp FD`.
/// `None` on architectures without a filter.
pub(crate) fn program_fd() -> Result<Option<OwnedFd>, SandboxError> {
    if !SUPPORTED {
        return Ok(None);
    }
    let bytes = program();
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: both descriptors were just created and are owned by nothing else.
    let (read, write) = unsafe {
        use std::os::fd::FromRawFd;
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    };
    let mut writer = std::fs::File::from(write);
    writer.write_all(&bytes)?;
    drop(writer);
    Ok(Some(read))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the filter on one system call, as the kernel would: the action it returns.
    fn verdict(nr: libc::c_long, args: [u64; 6]) -> u32 {
        let p = program();
        let mut data = Vec::new();
        data.extend_from_slice(&(nr as u32).to_ne_bytes());
        data.extend_from_slice(&AUDIT_ARCH.to_ne_bytes());
        data.extend_from_slice(&0u64.to_ne_bytes());
        for a in args {
            data.extend_from_slice(&a.to_ne_bytes());
        }
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let i = &p[pc * 8..pc * 8 + 8];
            let code = u16::from_ne_bytes([i[0], i[1]]);
            let (jt, jf) = (i[2] as usize, i[3] as usize);
            let k = u32::from_ne_bytes(i[4..8].try_into().unwrap());
            pc += 1;
            match code {
                BPF_LD_W_ABS => {
                    let at = k as usize;
                    a = u32::from_ne_bytes(data[at..at + 4].try_into().unwrap());
                }
                BPF_ALU_AND_K => a &= k,
                BPF_JEQ_K => pc += if a == k { jt } else { jf },
                BPF_JGE_K => pc += if a >= k { jt } else { jf },
                BPF_JSET_K => pc += if a & k != 0 { jt } else { jf },
                BPF_RET_K => return k,
                other => panic!("unknown instruction {other:#x}"),
            }
        }
    }

    #[test]
    fn setuid_modes_and_devices_are_refused_and_the_rest_allowed() {
        let eperm = SECCOMP_RET_ERRNO | libc::EPERM as u32;
        let enosys = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
        let creat = libc::O_CREAT as u64 | libc::O_WRONLY as u64;
        let cases: Vec<(libc::c_long, [u64; 6], u32)> = vec![
            (libc::SYS_fchmod, [3, 0o4755, 0, 0, 0, 0], eperm),
            (libc::SYS_fchmod, [3, 0o2755, 0, 0, 0, 0], eperm),
            (libc::SYS_fchmod, [3, 0o755, 0, 0, 0, 0], SECCOMP_RET_ALLOW),
            // High bits the kernel ignores cannot hide the request, nor trigger it.
            (
                libc::SYS_fchmod,
                [3, 0xffff_0000_0000_4755, 0, 0, 0, 0],
                eperm,
            ),
            (libc::SYS_fchmodat, [3, 0, 0o6755, 0, 0, 0], eperm),
            (
                libc::SYS_fchmodat,
                [3, 0, 0o1777, 0, 0, 0],
                SECCOMP_RET_ALLOW,
            ),
            (SYS_FCHMODAT2, [3, 0, 0o4755, 0, 0, 0], eperm),
            (libc::SYS_mkdirat, [3, 0, 0o2775, 0, 0, 0], eperm),
            (libc::SYS_mkdirat, [3, 0, 0o775, 0, 0, 0], SECCOMP_RET_ALLOW),
            (libc::SYS_openat, [3, 0, creat, 0o4755, 0, 0], eperm),
            (
                libc::SYS_openat,
                [3, 0, u64::from(O_TMPFILE_BIT), 0o2755, 0, 0],
                eperm,
            ),
            (
                libc::SYS_openat,
                [3, 0, creat, 0o755, 0, 0],
                SECCOMP_RET_ALLOW,
            ),
            // Without O_CREAT the mode is not used: no refusal for stray bits.
            (libc::SYS_openat, [3, 0, 0, 0o4755, 0, 0], SECCOMP_RET_ALLOW),
            (
                libc::SYS_mknodat,
                [3, 0, u64::from(libc::S_IFCHR | 0o666), 0, 0, 0],
                eperm,
            ),
            (
                libc::SYS_mknodat,
                [3, 0, u64::from(libc::S_IFBLK | 0o666), 0, 0, 0],
                eperm,
            ),
            (
                libc::SYS_mknodat,
                [3, 0, u64::from(libc::S_IFREG | 0o4755), 0, 0, 0],
                eperm,
            ),
            (
                libc::SYS_mknodat,
                [3, 0, u64::from(libc::S_IFIFO | 0o644), 0, 0, 0],
                SECCOMP_RET_ALLOW,
            ),
            (libc::SYS_openat2, [3, 0, 0, 0, 0, 0], enosys),
            (libc::SYS_io_uring_setup, [8, 0, 0, 0, 0, 0], enosys),
            (libc::SYS_keyctl, [0; 6], eperm),
            (
                libc::SYS_write,
                [1, 0, 0o4755, 0o4755, 0o4755, 0],
                SECCOMP_RET_ALLOW,
            ),
        ];
        for (nr, args, want) in cases {
            assert_eq!(verdict(nr, args), want, "syscall {nr} {args:?}");
        }
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(verdict(libc::SYS_chmod, [0, 0o4755, 0, 0, 0, 0]), eperm);
            assert_eq!(verdict(libc::SYS_creat, [0, 0o4755, 0, 0, 0, 0]), eperm);
            assert_eq!(verdict(libc::SYS_open, [0, creat, 0o2755, 0, 0, 0]), eperm);
            assert_eq!(
                verdict(
                    libc::SYS_mknod,
                    [0, u64::from(libc::S_IFCHR | 0o600), 0, 0, 0, 0]
                ),
                eperm
            );
            assert_eq!(
                verdict(libc::SYS_mkdir, [0, 0o755, 0, 0, 0, 0]),
                SECCOMP_RET_ALLOW
            );
        }
    }

    #[test]
    fn program_is_well_formed() {
        let p = program();
        assert_eq!(p.len() % 8, 0);
        let n = p.len() / 8;
        assert!(n < 4096, "BPF_MAXINSNS");
        // Ends in ALLOW; every denied number appears once.
        let last = &p[p.len() - 8..];
        assert_eq!(u16::from_ne_bytes([last[0], last[1]]), BPF_RET_K);
        assert_eq!(
            u32::from_ne_bytes(last[4..8].try_into().unwrap()),
            SECCOMP_RET_ALLOW
        );
        for nr in DENIED {
            let hits = p
                .chunks(8)
                .filter(|i| {
                    u16::from_ne_bytes([i[0], i[1]]) == BPF_JEQ_K
                        && u32::from_ne_bytes(i[4..8].try_into().unwrap()) == *nr as u32
                })
                .count();
            assert_eq!(hits, 1, "syscall {nr}");
        }
    }
}
