//! Images: pinned references, their check against the engine, and a local build.
//!
//! What the digest pins: `NAME@sha256:HEX` names the image whose **image ID** is
//! `sha256:HEX`. The image ID is the SHA-256 of the image's configuration, which names every
//! layer by the digest of its content, so it is content-addressed like a registry digest and
//! exists for images imported locally, which have no registry digest. A registry manifest
//! digest is accepted too when the engine lists it among the image's `RepoDigests`. Either
//! way the container is then created from the image ID itself, not from the name, so a name
//! retagged between the check and the create cannot slip another image in.

use std::io::Read;
use std::path::Path;

use agp_contracts::sandbox::SandboxError;

use super::api::{query, Engine};
use super::tar::TarBuilder;

/// The tag `agp sandbox image build` gives by default.
pub const DEFAULT_TAG: &str = "localhost/agp-sandbox:busybox";

/// The non-root account of the default image (its uid and gid).
pub const DEFAULT_IMAGE_UID: u32 = 65534;

/// An image reference pinned by digest: `NAME@sha256:HEX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub name: String,
    /// 64 lowercase hex digits.
    pub digest: String,
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@sha256:{}", self.name, self.digest)
    }
}

impl std::str::FromStr for ImageRef {
    type Err = SandboxError;

    fn from_str(s: &str) -> Result<Self, SandboxError> {
        let fix = "set [sandbox.docker] image = \"NAME@sha256:<image id>\" (`agp sandbox image \
                   build` prints one; for an existing image, `docker image inspect --format \
                   '{{.Id}}' NAME` gives the id)";
        let Some((name, digest)) = s.split_once("@sha256:") else {
            return Err(SandboxError::Refused(format!(
                "image `{s}` is not pinned by digest (a tag can be moved to another image); {fix}"
            )));
        };
        let hex_ok = digest.len() == 64
            && digest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/:".contains(&b));
        if !hex_ok || !name_ok {
            return Err(SandboxError::Refused(format!(
                "image `{s}` is not a valid NAME@sha256:<64 hex digits> reference; {fix}"
            )));
        }
        Ok(Self {
            name: name.to_string(),
            digest: digest.to_string(),
        })
    }
}

impl ImageRef {
    /// The image ID to create containers from, once the engine shows that `name` is the
    /// pinned image; refused otherwise.
    pub fn resolve(&self, engine: &Engine) -> Result<String, SandboxError> {
        let reply = engine.call("GET", &format!("/images/{}/json", query(&self.name)), None)?;
        if reply.status == 404 {
            return Err(SandboxError::Missing(format!(
                "image {} is not in the container engine; build it with `agp sandbox image \
                 build` and put the reference it prints in config.toml",
                self.name
            )));
        }
        if !reply.ok() {
            return Err(SandboxError::Refused(format!(
                "container engine cannot inspect image {}: {}",
                self.name,
                reply.message()
            )));
        }
        let info = reply.json()?;
        let id = info.get("Id").and_then(|v| v.as_str()).unwrap_or_default();
        let pinned = format!("sha256:{}", self.digest);
        let repo = self
            .name
            .rsplit_once(':')
            .filter(|(_, tag)| !tag.contains('/'))
            .map_or(self.name.as_str(), |(repo, _)| repo);
        let by_repo_digest = info
            .get("RepoDigests")
            .and_then(|v| v.as_array())
            .is_some_and(|all| {
                all.iter()
                    .filter_map(|d| d.as_str())
                    .any(|d| d == format!("{repo}@{pinned}"))
            });
        if id != pinned && !by_repo_digest {
            return Err(SandboxError::Refused(format!(
                "image {} is {id} in the container engine, not the pinned {pinned}: it was \
                 rebuilt or retagged; check it and pin the new id in [sandbox.docker] image",
                self.name
            )));
        }
        if id.len() != 71 || !id.starts_with("sha256:") {
            return Err(SandboxError::Refused(format!(
                "container engine reports image {} with an id `{id}` that is not a sha256 digest",
                self.name
            )));
        }
        Ok(id.to_string())
    }
}

/// Import a root filesystem tar as image `tag` and return its pinned reference.
pub fn import(engine: &Engine, tag: &str, rootfs: impl Read) -> Result<ImageRef, SandboxError> {
    let (repo, version) = split_tag(tag)?;
    let path = format!(
        "/images/create?fromSrc=-&repo={}&tag={}",
        query(repo),
        query(version)
    );
    let reply = engine.upload(&path, "application/x-tar", rootfs)?;
    reply.refuse_unless_ok(|| "container engine refused the image import".to_owned())?;
    // A stream of JSON progress messages; a failure arrives as {"error": ...} with 200, the
    // new image's ID as a status `sha256:...`.
    let mut imported = None;
    for message in
        serde_json::Deserializer::from_slice(&reply.body).into_iter::<serde_json::Value>()
    {
        let message = message.map_err(|e| {
            SandboxError::Refused(format!("container engine import reply is not JSON: {e}"))
        })?;
        if let Some(error) = message.get("error").and_then(|e| e.as_str()) {
            return Err(SandboxError::Refused(format!(
                "container engine could not import the image: {error}"
            )));
        }
        if let Some(id) = message
            .get("status")
            .and_then(|s| s.as_str())
            .map(str::trim)
            .filter(|s| s.starts_with("sha256:"))
        {
            imported = Some(id.to_string());
        }
    }
    let id = imported.ok_or_else(|| {
        SandboxError::Refused("container engine did not say which image it imported".into())
    })?;
    // Podman's import ignores the tag it is given: tag the ID explicitly (Docker too).
    let tagged = engine.call(
        "POST",
        &format!(
            "/images/{}/tag?repo={}&tag={}",
            query(&id),
            query(repo),
            query(version)
        ),
        None,
    )?;
    tagged.refuse_unless_ok(|| {
        format!("container engine could not tag the imported image {id} as {tag}")
    })?;
    let pinned: ImageRef = format!("{tag}@{id}").parse()?;
    // The name must now lead to exactly what was imported.
    pinned.resolve(engine)?;
    Ok(pinned)
}

fn split_tag(tag: &str) -> Result<(&str, &str), SandboxError> {
    match tag.rsplit_once(':') {
        Some((repo, version)) if !version.contains('/') && !repo.is_empty() => Ok((repo, version)),
        _ => Err(SandboxError::Refused(format!(
            "image tag `{tag}` must be NAME:TAG (e.g. {DEFAULT_TAG})"
        ))),
    }
}

/// The default image's root filesystem as a tar: the host's static busybox as `/bin/busybox`
/// with every applet it lists as a symlink, `bash` as busybox's ash, a non-root account (uid
/// and gid [`DEFAULT_IMAGE_UID`]), `/tmp` and the sandbox HOME.
pub fn busybox_rootfs(busybox: &Path) -> Result<Vec<u8>, SandboxError> {
    let binary = std::fs::read(busybox).map_err(|e| {
        SandboxError::Missing(format!(
            "cannot read {}: {e}; install it with `apt-get install busybox-static`, or give a \
             root filesystem with --from-rootfs",
            busybox.display()
        ))
    })?;
    if !is_static_elf(&binary) {
        return Err(SandboxError::Missing(format!(
            "{} is not a statically linked executable (it would need the host's libraries); \
             install `busybox-static`, or give a root filesystem with --from-rootfs",
            busybox.display()
        )));
    }
    let listed = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|e| SandboxError::Missing(format!("cannot run {}: {e}", busybox.display())))?;
    let applets = String::from_utf8_lossy(&listed.stdout).into_owned();
    let home = agp_contracts::sandbox::SANDBOX_HOME.trim_start_matches('/');
    let uid = DEFAULT_IMAGE_UID;
    let mut tar = TarBuilder::default();
    for dir in ["bin", "etc", "home", "proc", "sys", "dev", "usr", "usr/bin"] {
        tar.dir(dir, 0o755, 0);
    }
    tar.dir("tmp", 0o1777, 0);
    // runc gives a tmpfs the mode of the directory it is mounted on (its owner is root
    // whatever the image says): HOME's tmpfs is only usable by the commands' uid, whichever
    // it is, when the image's HOME is world-writable and sticky like /tmp.
    tar.dir(home, 0o1777, 0);
    tar.file("bin/busybox", 0o755, &binary)?;
    for applet in applets
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && !["busybox", "bash", ".."].contains(a) && !a.contains('/'))
    {
        tar.symlink(&format!("bin/{applet}"), "busybox")?;
    }
    // agp's daemon runs its tools with `bash -c`; here that is busybox's ash (no `shopt`, so
    // no Glob tool). A Debian root imported with --from-rootfs has the real one.
    tar.file(
        "bin/bash",
        0o755,
        b"#!/bin/busybox sh\nexec /bin/busybox sh \"$@\"\n",
    )?;
    tar.file(
        "etc/passwd",
        0o644,
        format!("root:x:0:0:root:/root:/bin/sh\nagent:x:{uid}:{uid}:agent:/{home}:/bin/sh\n")
            .as_bytes(),
    )?;
    tar.file(
        "etc/group",
        0o644,
        format!("root:x:0:\nagent:x:{uid}:\n").as_bytes(),
    )?;
    Ok(tar.finish())
}

/// An ELF executable with no program interpreter (no dynamic loader).
fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let read = |at: usize, len: usize| bytes.get(at..at + len);
    // 64-bit little-endian ELF only (what the engines here run).
    if read(0, 6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return false;
    }
    let u16_at = |at| read(at, 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u64_at = |at| read(at, 8).and_then(|b| <[u8; 8]>::try_from(b).ok().map(u64::from_le_bytes));
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return false;
    };
    (0..usize::from(phnum)).all(|i| {
        let at = phoff + i * usize::from(phentsize);
        read(at, 4).is_some_and(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) != PT_INTERP)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_without_a_digest_is_refused_with_the_fix() {
        let err = "localhost/agp:1"
            .parse::<ImageRef>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("not pinned by digest"), "{err}");
        assert!(err.contains("agp sandbox image build"), "{err}");
        for bad in [
            "x@sha256:abc",
            &format!("x@sha256:{}", "A".repeat(64)),
            &format!("@sha256:{}", "a".repeat(64)),
            &format!("x y@sha256:{}", "a".repeat(64)),
            &format!("x@sha256:{}", "a".repeat(65)),
        ] {
            assert!(bad.parse::<ImageRef>().is_err(), "{bad}");
        }
        let good: ImageRef = format!("localhost/agp:1@sha256:{}", "ab".repeat(32))
            .parse()
            .unwrap();
        assert_eq!(good.name, "localhost/agp:1");
        assert_eq!(
            good.to_string(),
            format!("localhost/agp:1@sha256:{}", "ab".repeat(32))
        );
    }

    #[test]
    fn static_elf_is_told_from_dynamic() {
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        let sh = std::fs::read("/bin/sh").unwrap();
        assert!(
            !is_static_elf(&sh),
            "/bin/sh is dynamically linked on Debian"
        );
    }
}
