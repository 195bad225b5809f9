//! The host files a dynamically linked executable needs to start in an image that lacks them:
//! its ELF interpreter (the dynamic loader) and every library it names (`DT_NEEDED`), found
//! the way the host's loader would, recursively. They are bound read-only at the paths the
//! loader looks at, so agp (glibc-linked) and Claude Code's native binary run on a minimal
//! image such as the default static busybox root. A static executable needs nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agp_contracts::sandbox::SandboxError;
use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};
use object::Endianness;

/// Where the loader looks when neither `/etc/ld.so.cache` nor a run path names a library
/// (glibc's trusted directories, multiarch first as Debian builds it). The image gets no
/// cache, so these are the paths that work inside.
const SEARCH: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

/// Deepest chain of libraries followed (a loop or a hostile file must end).
const MAX_FILES: usize = 256;

/// What one ELF file asks of the loader.
#[derive(Debug, Default, PartialEq, Eq)]
struct Needs {
    interpreter: Option<PathBuf>,
    needed: Vec<String>,
    run_paths: Vec<String>,
}

fn bad(path: &Path, why: impl std::fmt::Display) -> SandboxError {
    SandboxError::Refused(format!(
        "cannot read {} as an executable: {why}",
        path.display()
    ))
}

fn parse(path: &Path, data: &[u8]) -> Result<Needs, SandboxError> {
    if !data.starts_with(b"\x7fELF") {
        return Err(bad(path, "not an ELF file (a script or a launcher?)"));
    }
    if data.get(4) != Some(&elf::ELFCLASS64) {
        return Err(bad(path, "only 64-bit ELF files are supported"));
    }
    let header = elf::FileHeader64::<Endianness>::parse(data).map_err(|e| bad(path, e))?;
    let endian = header.endian().map_err(|e| bad(path, e))?;
    let mut needs = Needs::default();
    for segment in header
        .program_headers(endian, data)
        .map_err(|e| bad(path, e))?
    {
        if let Some(interp) = segment
            .interpreter(endian, data)
            .map_err(|e| bad(path, e))?
        {
            let interp = String::from_utf8_lossy(interp).into_owned();
            needs.interpreter = Some(PathBuf::from(interp));
        }
    }
    let sections = header.sections(endian, data).map_err(|e| bad(path, e))?;
    let table = sections
        .dynamic_table(endian, data)
        .map_err(|e| bad(path, e))?;
    for entry in &table {
        let text = || {
            table
                .string(entry)
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .map_err(|e| bad(path, e))
        };
        match entry.tag {
            elf::DT_NEEDED => needs.needed.push(text()?),
            elf::DT_RPATH | elf::DT_RUNPATH => {
                needs
                    .run_paths
                    .extend(text()?.split(':').map(str::to_owned));
            }
            _ => {}
        }
    }
    // A dynamic section with no section headers to find it by (a stripped-down file) would
    // hide its libraries: refuse rather than bind too little.
    if needs.interpreter.is_some() && table.is_empty() && needs.needed.is_empty() {
        let has_dynamic = header
            .program_headers(endian, data)
            .map_err(|e| bad(path, e))?
            .iter()
            .any(|p| p.p_type(endian) == elf::PT_DYNAMIC);
        if has_dynamic && sections.is_empty() {
            return Err(bad(
                path,
                "its dynamic section cannot be found (no section headers)",
            ));
        }
    }
    Ok(needs)
}

/// A library `name` as the loader would find it for a file at `origin_dir` with `run_paths`.
fn find(name: &str, run_paths: &[String], origin_dir: &Path) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_absolute().then_some(p).filter(|p| p.is_file());
    }
    let origin = origin_dir.display().to_string();
    run_paths
        .iter()
        .map(|d| d.replace("$ORIGIN", &origin).replace("${ORIGIN}", &origin))
        .filter(|d| d.starts_with('/'))
        .chain(SEARCH.iter().map(|d| (*d).to_owned()))
        .map(|d| Path::new(&d).join(name))
        .find(|p| p.is_file())
}

/// The loader and libraries `exe` needs: `(host file, path inside)` pairs, the host file
/// resolved through symlinks, the inside path the one the loader opens. Empty for a static
/// executable. A library the host lacks, or an `$ORIGIN` run path (the libraries would be
/// looked for beside the executable's new place inside), is refused.
pub fn loader_files(exe: &Path) -> Result<Vec<(PathBuf, PathBuf)>, SandboxError> {
    let mut found: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    let mut queue = vec![(exe.to_path_buf(), true)];
    while let Some((file, is_exe)) = queue.pop() {
        if found.len() > MAX_FILES {
            return Err(bad(exe, "it needs more libraries than agp binds"));
        }
        let data = std::fs::read(&file).map_err(|e| bad(&file, e))?;
        let needs = parse(&file, &data)?;
        if is_exe {
            if let Some(interp) = &needs.interpreter {
                let host = std::fs::canonicalize(interp).map_err(|e| {
                    SandboxError::Missing(format!(
                        "{} needs the loader {}, which this host lacks: {e}",
                        exe.display(),
                        interp.display()
                    ))
                })?;
                found.insert(interp.clone(), host);
            } else if needs.needed.is_empty() {
                return Ok(Vec::new());
            }
        }
        if needs.run_paths.iter().any(|p| p.contains("ORIGIN")) && is_exe {
            return Err(bad(
                exe,
                "it finds libraries relative to itself ($ORIGIN), which a bind elsewhere breaks",
            ));
        }
        let dir = file.parent().unwrap_or(Path::new("/"));
        for name in &needs.needed {
            let Some(path) = find(name, &needs.run_paths, dir) else {
                return Err(SandboxError::Missing(format!(
                    "{} needs the library {name}, which the host's loader paths do not hold",
                    exe.display()
                )));
            };
            if found.contains_key(&path) {
                continue;
            }
            let host = std::fs::canonicalize(&path).map_err(|e| bad(&path, e))?;
            found.insert(path, host.clone());
            queue.push((host, false));
        }
    }
    Ok(found.into_iter().map(|(dest, host)| (host, dest)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_executable_brings_its_loader_and_libraries() {
        // The test binary itself is linked against the host's C library.
        let me = std::env::current_exe().unwrap();
        let files = loader_files(&me).unwrap();
        let dests: Vec<_> = files.iter().map(|(_, d)| d.clone()).collect();
        assert!(
            dests
                .iter()
                .any(|d| d.to_string_lossy().contains("ld-linux")),
            "{dests:?}"
        );
        assert!(
            dests
                .iter()
                .any(|d| d.file_name().is_some_and(|n| n == "libc.so.6")),
            "{dests:?}"
        );
        for (host, dest) in &files {
            assert!(host.is_file(), "{}", host.display());
            assert!(dest.is_absolute());
        }
    }

    #[test]
    fn a_static_executable_needs_nothing_and_a_script_is_refused() {
        if let Some(busybox) = ["/bin/busybox", "/usr/bin/busybox"]
            .iter()
            .map(Path::new)
            .find(|p| p.is_file())
        {
            let data = std::fs::read(busybox).unwrap();
            if parse(busybox, &data).unwrap().interpreter.is_none() {
                assert!(loader_files(busybox).unwrap().is_empty());
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("s");
        std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
        let err = loader_files(&script).unwrap_err().to_string();
        assert!(err.contains("not an ELF file"), "{err}");
        let truncated = dir.path().join("t");
        std::fs::write(&truncated, b"\x7fELF\x02\x01\x01").unwrap();
        assert!(loader_files(&truncated).is_err());
    }
}
