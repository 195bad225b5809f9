//! Finding the native executable of an agent CLI the way package managers install it.
//!
//! `npm install -g` (or `--prefix`) puts a LAUNCHER on PATH, not the program agp must run:
//! - Codex: `@openai/codex/bin/codex.js`, a Node script that runs the native binary of the
//!   platform package `@openai/codex-linux-<arch>` (nested under `@openai/codex/node_modules/`
//!   for global installs, hoisted beside it for `--prefix` ones; older releases shipped it
//!   under `@openai/codex/vendor/`). The binary expects its bundled helpers (`rg`, the
//!   `codex-*` programs) beside it, so the whole `vendor/<triple>` directory goes into the
//!   sandbox.
//! - Claude Code: `@anthropic-ai/claude-code/bin/claude.exe`, which the postinstall replaces
//!   with the native binary; installed with `--ignore-scripts` it stays a ~500-byte stub, and
//!   the binary lives in `@anthropic-ai/claude-code-linux-<arch>[-musl]/claude`.
//!
//! Whatever is found is checked to be runnable here ([`check_executable`]) before any launch.

use std::path::{Path, PathBuf};

/// Which agent CLI is being resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentKind {
    ClaudeCode,
    Codex,
}

impl AgentKind {
    fn package(self) -> &'static str {
        match self {
            AgentKind::ClaudeCode => "@anthropic-ai/claude-code",
            AgentKind::Codex => "@openai/codex",
        }
    }
}

/// What agp runs for an agent CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInstall {
    /// The native executable (canonical host path).
    pub exe: PathBuf,
    /// A directory bound whole into the sandbox because the executable needs what lies beside
    /// it (`exe` is inside it).
    pub bundle: Option<PathBuf>,
    /// Directories inside `bundle` (relative) holding bundled helpers to put on PATH.
    pub path_dirs: Vec<PathBuf>,
    /// The version the package manifest declares, when there is one.
    pub package_version: Option<String>,
    /// How agp got from what the user has to `exe` (for messages and the journal).
    pub layout: &'static str,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("{path}: {why}")]
    NotRunnable { path: PathBuf, why: String },
    #[error("{path} cannot be read: {error}")]
    Unreadable { path: PathBuf, error: String },
}

/// Resolves `found` (what PATH or the user named) to the native program to run.
pub fn resolve(kind: AgentKind, found: &Path) -> Result<AgentInstall, LayoutError> {
    let real = std::fs::canonicalize(found).map_err(|e| LayoutError::Unreadable {
        path: found.to_path_buf(),
        error: e.to_string(),
    })?;
    let native = check_executable(&real);
    let package_root = npm_package_root(kind, &real);
    if let Some(root) = &package_root {
        // Launcher or stub inside the npm package (anything but a native binary): go to the
        // platform package's binary.
        if native.is_err() || !is_elf(&real) {
            if let Some(install) = platform_binary(kind, root)? {
                return Ok(install);
            }
        }
    }
    if kind == AgentKind::Codex {
        if let Some(install) = codex_vendor_dir(&real)? {
            return Ok(install);
        }
    }
    match native {
        Ok(()) => Ok(AgentInstall {
            package_version: package_root
                .as_deref()
                .and_then(manifest_version)
                .or_else(|| real.parent().and_then(manifest_version)),
            exe: real,
            bundle: None,
            path_dirs: Vec::new(),
            layout: "native binary",
        }),
        Err(why) => {
            let hint = match (kind, package_root.is_some()) {
                (AgentKind::ClaudeCode, true) => format!(
                    "; no {}-{} platform package holds the native binary either \
                     (reinstall without --ignore-scripts: `npm install -g @anthropic-ai/claude-code`)",
                    kind.package(),
                    platform_suffix()
                ),
                (AgentKind::Codex, true) => format!(
                    "; the platform package @openai/codex-{} is missing \
                     (reinstall: `npm install -g @openai/codex`)",
                    platform_suffix()
                ),
                _ => String::new(),
            };
            Err(LayoutError::NotRunnable {
                path: real,
                why: format!("{why}{hint}"),
            })
        }
    }
}

/// `linux-x64` / `linux-arm64`: npm's name for this machine.
fn platform_suffix() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "linux-arm64"
    } else {
        "linux-x64"
    }
}

fn target_triple() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "aarch64-unknown-linux-musl"
    } else {
        "x86_64-unknown-linux-musl"
    }
}

/// The root of the npm package `kind` that `file` lies in (its `package.json` names it).
fn npm_package_root(kind: AgentKind, file: &Path) -> Option<PathBuf> {
    file.ancestors().skip(1).take(4).find_map(|dir| {
        let text = std::fs::read_to_string(dir.join("package.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        (v["name"] == kind.package()).then(|| dir.to_path_buf())
    })
}

fn manifest_version(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("package.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["version"].as_str().map(str::to_owned)
}

/// The platform package beside (hoisted) or under (nested) the main package.
fn platform_package_dirs(root: &Path, name: &str) -> Vec<PathBuf> {
    let scoped = name.split_once('/').map_or(name, |(_, n)| n);
    let mut dirs = vec![root.join("node_modules").join(name)];
    if let Some(scope_dir) = root.parent() {
        dirs.push(scope_dir.join(scoped));
    }
    dirs
}

fn platform_binary(kind: AgentKind, root: &Path) -> Result<Option<AgentInstall>, LayoutError> {
    match kind {
        AgentKind::ClaudeCode => {
            let mut last_err = None;
            for variant in ["", "-musl"] {
                let name = format!("{}-{}{variant}", kind.package(), platform_suffix());
                for dir in platform_package_dirs(root, &name) {
                    let exe = dir.join("claude");
                    if !exe.is_file() {
                        continue;
                    }
                    match check_executable(&exe) {
                        Ok(()) => {
                            return Ok(Some(AgentInstall {
                                exe: canonical(&exe)?,
                                bundle: None,
                                path_dirs: Vec::new(),
                                package_version: manifest_version(&dir)
                                    .or_else(|| manifest_version(root)),
                                layout: "npm platform package",
                            }))
                        }
                        Err(why) => last_err = Some((exe, why)),
                    }
                }
            }
            match last_err {
                Some((path, why)) => Err(LayoutError::NotRunnable { path, why }),
                None => Ok(None),
            }
        }
        AgentKind::Codex => {
            let name = format!("{}-{}", kind.package(), platform_suffix());
            let mut vendors: Vec<PathBuf> = platform_package_dirs(root, &name)
                .into_iter()
                .map(|d| d.join("vendor"))
                .collect();
            // Older releases: the binaries inside the main package.
            vendors.push(root.join("vendor"));
            for vendor in vendors {
                let triple = vendor.join(target_triple());
                for rel in ["bin/codex", "codex/codex"] {
                    if triple.join(rel).is_file() {
                        return codex_vendor_dir(&triple.join(rel));
                    }
                }
            }
            Ok(None)
        }
    }
}

/// The Codex native binary inside its `vendor/<triple>` directory, with the helpers beside it.
fn codex_vendor_dir(exe: &Path) -> Result<Option<AgentInstall>, LayoutError> {
    let Some(triple) = exe.parent().and_then(Path::parent) else {
        return Ok(None);
    };
    let is_vendor = triple
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|n| n == "vendor");
    if !is_vendor || exe.file_name().is_none_or(|n| n != "codex") {
        return Ok(None);
    }
    check_executable(exe).map_err(|why| LayoutError::NotRunnable {
        path: exe.to_path_buf(),
        why,
    })?;
    let triple = canonical(triple)?;
    let exe = canonical(exe)?;
    let manifest: Option<serde_json::Value> =
        std::fs::read_to_string(triple.join("codex-package.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
    let declared = manifest
        .as_ref()
        .and_then(|m| m["pathDir"].as_str())
        .map(PathBuf::from);
    let path_dirs = declared
        .into_iter()
        .chain([PathBuf::from("codex-path"), PathBuf::from("path")])
        .filter(|d| d.is_relative() && !d.components().any(|c| c.as_os_str() == ".."))
        .filter(|d| triple.join(d).is_dir())
        .fold(Vec::new(), |mut acc, d| {
            if !acc.contains(&d) {
                acc.push(d);
            }
            acc
        });
    let package_version = manifest
        .as_ref()
        .and_then(|m| m["version"].as_str().map(str::to_owned))
        .or_else(|| triple.parent()?.parent().and_then(manifest_version));
    Ok(Some(AgentInstall {
        exe,
        bundle: Some(triple),
        path_dirs,
        package_version,
        layout: "npm platform package (vendor directory)",
    }))
}

fn canonical(p: &Path) -> Result<PathBuf, LayoutError> {
    std::fs::canonicalize(p).map_err(|e| LayoutError::Unreadable {
        path: p.to_path_buf(),
        error: e.to_string(),
    })
}

fn is_elf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// ELF `e_machine` of this build's target.
const fn host_machine() -> (u16, &'static str) {
    if cfg!(target_arch = "aarch64") {
        (183, "aarch64")
    } else {
        (62, "x86_64")
    }
}

fn machine_name(m: u16) -> String {
    match m {
        3 => "x86 (32-bit)".into(),
        40 => "ARM (32-bit)".into(),
        62 => "x86_64".into(),
        183 => "aarch64".into(),
        243 => "RISC-V".into(),
        other => format!("machine type {other}"),
    }
}

/// Whether `path` can run on this machine: an executable regular file that is an ELF binary
/// for this architecture (whose program interpreter exists), or a script whose interpreter
/// exists. The error says precisely what is wrong.
pub fn check_executable(path: &Path) -> Result<(), String> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err("is not executable (no x permission)".into());
    }
    let mut head = Vec::with_capacity(4096);
    std::fs::File::open(path)
        .and_then(|f| f.take(4096).read_to_end(&mut head))
        .map_err(|e| format!("cannot be read: {e}"))?;
    if head.starts_with(b"\x7fELF") {
        return check_elf(path, &head, meta.len());
    }
    if let Some(rest) = head.strip_prefix(b"#!") {
        let line = rest.split(|b| *b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        let mut words = line.split_whitespace();
        let interp = words.next().unwrap_or_default();
        if interp.is_empty() {
            return Err("is a script with an empty #! line".into());
        }
        let prog = match (Path::new(interp).file_name(), words.next()) {
            (Some(n), Some(p)) if n == "env" => Some(p.to_owned()),
            _ => None,
        };
        if !Path::new(interp).is_file() {
            return Err(format!("is a script for {interp}, which does not exist"));
        }
        if let Some(prog) = prog {
            return Err(format!(
                "is a {}-byte script that runs `{prog}` (a launcher or an install stub, not the agent itself)",
                meta.len()
            ));
        }
        return Ok(());
    }
    Err(format!(
        "is not a program for this machine ({} bytes, neither an ELF binary nor a #! script{})",
        meta.len(),
        if meta.len() < 4096 {
            ": an install stub?"
        } else {
            ""
        }
    ))
}

fn check_elf(path: &Path, head: &[u8], len: u64) -> Result<(), String> {
    let (want, want_name) = host_machine();
    if head.len() < 64 || head[4] != 2 || head[5] != 1 {
        return Err("is an ELF file but not a 64-bit little-endian one".into());
    }
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]);
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&head[o..o + 8]);
        u64::from_le_bytes(b)
    };
    let machine = u16_at(18);
    if machine != want {
        return Err(format!(
            "is a binary for {}, this machine is {want_name}",
            machine_name(machine)
        ));
    }
    if !matches!(u16_at(16), 2 | 3) {
        return Err("is an ELF file but not an executable".into());
    }
    // PT_INTERP: a dynamically linked binary needs its loader (glibc vs musl builds).
    let (phoff, phentsize, phnum) = (u64_at(32), u64::from(u16_at(54)), u64::from(u16_at(56)));
    if phentsize < 56 || phoff.saturating_add(phentsize.saturating_mul(phnum)) > len {
        return Err("is a truncated or malformed ELF file".into());
    }
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot be read: {e}"))?;
    for i in 0..phnum.min(64) {
        let ph = read_at(&mut f, phoff + i * phentsize, 56)?;
        let p_type = u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]);
        if p_type == 3 {
            let off = u64::from_le_bytes(ph[8..16].try_into().unwrap_or_default());
            let size = u64::from_le_bytes(ph[32..40].try_into().unwrap_or_default());
            if size == 0 || size > 4096 || off.saturating_add(size) > len {
                return Err("has a malformed program interpreter entry".into());
            }
            let raw = read_at(&mut f, off, size as usize)?;
            let interp = String::from_utf8_lossy(raw.split(|b| *b == 0).next().unwrap_or_default())
                .into_owned();
            if !Path::new(&interp).exists() {
                return Err(format!(
                    "needs the program loader {interp}, which this machine does not have \
                     (a build for another C library?)"
                ));
            }
        }
    }
    Ok(())
}

fn read_at(f: &mut std::fs::File, offset: u64, n: usize) -> Result<Vec<u8>, String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut buf = vec![0u8; n];
    f.seek(SeekFrom::Start(offset))
        .and_then(|_| f.read_exact(&mut buf))
        .map_err(|e| format!("cannot be read: {e}"))?;
    Ok(buf)
}

#[cfg(test)]
#[path = "install_layout_tests.rs"]
mod tests;
