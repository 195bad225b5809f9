//! Layouts as npm writes them, built in a tempdir around a real native program of this
//! machine (a copy of `true`).

use super::*;
use std::os::unix::fs::PermissionsExt;

fn native() -> PathBuf {
    ["/usr/bin/true", "/bin/true"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("`true` is installed")
}

fn put(path: &Path, bytes: &[u8], mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn put_native(path: &Path) {
    put(path, &std::fs::read(native()).unwrap(), 0o755);
}

fn manifest(dir: &Path, name: &str, version: &str) {
    put(
        &dir.join("package.json"),
        format!(r#"{{"name":"{name}","version":"{version}"}}"#).as_bytes(),
        0o644,
    );
}

const LAUNCHER: &[u8] = b"#!/usr/bin/env node\nimport './x.js';\n";

/// `@openai/codex` with its launcher; returns the package root.
fn codex_package(nm: &Path) -> PathBuf {
    let root = nm.join("@openai/codex");
    manifest(&root, "@openai/codex", "0.171.0");
    put(&root.join("bin/codex.js"), LAUNCHER, 0o755);
    root
}

fn codex_platform(pkg: &Path) -> PathBuf {
    manifest(
        pkg,
        &format!("@openai/codex-{}", platform_suffix()),
        "0.171.0",
    );
    let triple = pkg.join("vendor").join(target_triple());
    put_native(&triple.join("bin/codex"));
    put_native(&triple.join("codex-path/rg"));
    put(
        &triple.join("codex-package.json"),
        br#"{"version":"0.171.0","pathDir":"codex-path"}"#,
        0o644,
    );
    triple
}

#[test]
fn codex_prefix_install_resolves_the_hoisted_platform_binary_with_its_helpers() {
    let d = tempfile::tempdir().unwrap();
    let nm = d.path().join("node_modules");
    let root = codex_package(&nm);
    let triple = codex_platform(&nm.join(format!("@openai/codex-{}", platform_suffix())));
    std::fs::create_dir_all(nm.join(".bin")).unwrap();
    std::os::unix::fs::symlink("../@openai/codex/bin/codex.js", nm.join(".bin/codex")).unwrap();
    let got = resolve(AgentKind::Codex, &nm.join(".bin/codex")).unwrap();
    let triple = std::fs::canonicalize(triple).unwrap();
    assert_eq!(got.exe, triple.join("bin/codex"));
    assert_eq!(got.bundle.as_deref(), Some(triple.as_path()));
    assert_eq!(got.path_dirs, [PathBuf::from("codex-path")]);
    assert_eq!(got.package_version.as_deref(), Some("0.171.0"));
    drop(root);
}

#[test]
fn codex_global_install_resolves_the_nested_platform_binary() {
    let d = tempfile::tempdir().unwrap();
    let root = codex_package(&d.path().join("lib/node_modules"));
    let triple = codex_platform(
        &root
            .join("node_modules")
            .join(format!("@openai/codex-{}", platform_suffix())),
    );
    let got = resolve(AgentKind::Codex, &root.join("bin/codex.js")).unwrap();
    assert_eq!(
        got.exe,
        std::fs::canonicalize(triple.join("bin/codex")).unwrap()
    );
}

#[test]
fn codex_older_vendor_layout_inside_the_main_package() {
    let d = tempfile::tempdir().unwrap();
    let root = codex_package(&d.path().join("node_modules"));
    let triple = root.join("vendor").join(target_triple());
    put_native(&triple.join("codex/codex"));
    put_native(&triple.join("path/rg"));
    let got = resolve(AgentKind::Codex, &root.join("bin/codex.js")).unwrap();
    assert_eq!(
        got.exe,
        std::fs::canonicalize(triple.join("codex/codex")).unwrap()
    );
    assert_eq!(got.path_dirs, [PathBuf::from("path")]);
    assert_eq!(got.package_version.as_deref(), Some("0.171.0"));
}

#[test]
fn codex_launcher_without_its_platform_package_says_what_is_missing() {
    let d = tempfile::tempdir().unwrap();
    let root = codex_package(&d.path().join("node_modules"));
    let err = resolve(AgentKind::Codex, &root.join("bin/codex.js"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("runs `node`"), "{err}");
    assert!(
        err.contains(&format!("@openai/codex-{} is missing", platform_suffix())),
        "{err}"
    );
}

#[test]
fn claude_stub_resolves_to_the_platform_package_binary() {
    let d = tempfile::tempdir().unwrap();
    let nm = d.path().join("node_modules");
    let root = nm.join("@anthropic-ai/claude-code");
    manifest(&root, "@anthropic-ai/claude-code", "2.1.332");
    let stub = b"#!/bin/sh\necho 'claude native binary not installed' >&2\nexit 1\n".repeat(8);
    put(&root.join("bin/claude.exe"), &stub, 0o755);
    // A stub that is not even a script (what some versions leave) is refused the same way.
    let plat = nm.join(format!("@anthropic-ai/claude-code-{}", platform_suffix()));
    manifest(&plat, "@anthropic-ai/claude-code-linux", "2.1.332");
    put_native(&plat.join("claude"));
    let got = resolve(AgentKind::ClaudeCode, &root.join("bin/claude.exe")).unwrap();
    assert_eq!(got.exe, std::fs::canonicalize(plat.join("claude")).unwrap());
    assert_eq!(got.bundle, None);
    assert_eq!(got.package_version.as_deref(), Some("2.1.332"));
}

#[test]
fn claude_stub_without_a_platform_binary_names_the_fix() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("node_modules/@anthropic-ai/claude-code");
    manifest(&root, "@anthropic-ai/claude-code", "2.1.197");
    put(&root.join("bin/claude.exe"), &[b'x'; 500], 0o755);
    let err = resolve(AgentKind::ClaudeCode, &root.join("bin/claude.exe"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("500 bytes"), "{err}");
    assert!(err.contains("--ignore-scripts"), "{err}");
}

#[test]
fn a_postinstalled_claude_exe_is_run_as_it_is() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("node_modules/@anthropic-ai/claude-code");
    manifest(&root, "@anthropic-ai/claude-code", "2.1.331");
    put_native(&root.join("bin/claude.exe"));
    let got = resolve(AgentKind::ClaudeCode, &root.join("bin/claude.exe")).unwrap();
    assert_eq!(
        got.exe,
        std::fs::canonicalize(root.join("bin/claude.exe")).unwrap()
    );
    assert_eq!(got.package_version.as_deref(), Some("2.1.331"));
}

#[test]
fn a_plain_native_binary_anywhere() {
    let d = tempfile::tempdir().unwrap();
    let exe = d.path().join("tools/claude");
    put_native(&exe);
    let got = resolve(AgentKind::ClaudeCode, &exe).unwrap();
    assert_eq!(got.layout, "native binary");
    assert_eq!(got.package_version, None);
}

#[test]
fn binaries_for_another_machine_or_loader_are_refused_precisely() {
    let d = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(native()).unwrap();
    let other: u16 = if cfg!(target_arch = "aarch64") {
        62
    } else {
        183
    };
    bytes[18..20].copy_from_slice(&other.to_le_bytes());
    let foreign = d.path().join("foreign");
    put(&foreign, &bytes, 0o755);
    let err = check_executable(&foreign).unwrap_err();
    assert!(err.starts_with("is a binary for"), "{err}");

    let mut bytes = std::fs::read(native()).unwrap();
    if let Some(at) = bytes.windows(4).position(|w| w == b"/lib") {
        // Rename the loader (same length) to one that does not exist.
        bytes[at + 1..at + 4].copy_from_slice(b"nxx");
        let wrong_libc = d.path().join("wrong-libc");
        put(&wrong_libc, &bytes, 0o755);
        let err = check_executable(&wrong_libc).unwrap_err();
        assert!(err.contains("needs the program loader /nxx"), "{err}");
    }

    let truncated = d.path().join("truncated");
    put(&truncated, &std::fs::read(native()).unwrap()[..200], 0o755);
    assert!(check_executable(&truncated).is_err());
}

#[test]
fn non_programs_are_refused_precisely() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("f");
    put(&p, b"hello", 0o644);
    assert!(check_executable(&p).unwrap_err().contains("not executable"));
    put(&p, b"hello", 0o755);
    assert!(check_executable(&p).unwrap_err().contains("5 bytes"));
    put(&p, b"#!/nonexistent/sh\n", 0o755);
    assert!(check_executable(&p)
        .unwrap_err()
        .contains("/nonexistent/sh, which does not exist"));
    put(&p, b"#!/bin/sh\nexit 0\n", 0o755);
    check_executable(&p).unwrap();
    assert!(check_executable(d.path()).is_err());
}
