//! Where `{{secret:NAME}}` values come from: `AGP_SECRET_<NAME>` in the environment of `agp
//! run` / `agp daemon`, and `<home>/secrets.toml` (`NAME = "value"`, mode 0600, the user's
//! own), the environment winning. Only variables with the prefix are secrets: a placeholder in
//! an agent's input must not reach whatever else agp's environment holds.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use agp_daemon::secrets::Secrets;
use anyhow::{bail, Context, Result};

use crate::app::home::Home;

/// Prefix of the environment variables that are secrets.
pub const ENV_PREFIX: &str = "AGP_SECRET_";

pub fn file(home: &Home) -> PathBuf {
    home.root().join("secrets.toml")
}

/// The secrets of this process: the file's, then the environment's.
pub fn load(home: &Home) -> Result<Secrets> {
    load_from(&file(home), std::env::vars_os())
}

fn load_from(
    path: &Path,
    env: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<Secrets> {
    let mut secrets = Secrets::new();
    if let Some(text) = read_private(path)? {
        let table: toml::Table =
            toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
        for (name, value) in table {
            let Some(value) = value.as_str() else {
                bail!(
                    "{}: {name} must be a string (NAME = \"value\")",
                    path.display()
                );
            };
            secrets
                .insert(&name, value.to_owned())
                .with_context(|| format!("{}", path.display()))?;
        }
    }
    for (k, v) in env {
        let Some(name) = k.to_str().and_then(|k| k.strip_prefix(ENV_PREFIX)) else {
            continue;
        };
        let Some(value) = v.to_str() else {
            bail!("{ENV_PREFIX}{name} is not UTF-8 text");
        };
        secrets
            .insert(name, value.to_owned())
            .with_context(|| format!("environment variable {ENV_PREFIX}{name}"))?;
    }
    Ok(secrets)
}

/// The file's text, or `None` when there is none. Refused unless it is a regular file of this
/// user that nobody else can read or write. Opened without following a link and checked on the
/// opened file, so a rename between the check and the read cannot swap in another one.
fn read_private(path: &Path) -> Result<Option<String>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // O_NOFOLLOW on a link.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            bail!("{} must be a regular file (not a link)", path.display())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.file_type().is_file() {
        bail!("{} must be a regular file (not a link)", path.display());
    }
    if meta.uid() != rustix::process::geteuid().as_raw() {
        bail!("{} must belong to the user running agp", path.display());
    }
    if meta.mode() & 0o077 != 0 {
        bail!(
            "{} is readable by others (mode {:o}): run `chmod 600 {}`",
            path.display(),
            meta.mode() & 0o777,
            path.display()
        );
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::fs::PermissionsExt;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn file_then_prefixed_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.toml");
        std::fs::write(
            &path,
            "GITHUB_TOKEN = \"from-file\"\nOTHER = \"other-value\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = load_from(
            &path,
            env(&[
                ("AGP_SECRET_GITHUB_TOKEN", "from-env"),
                ("HOME", "/not/a/secret"),
                ("ANTHROPIC_API_KEY", "sk-not-a-secret-here"),
            ]),
        )
        .unwrap();
        assert_eq!(s.get("GITHUB_TOKEN").unwrap(), "from-env");
        assert_eq!(s.get("OTHER").unwrap(), "other-value");
        assert!(s.get("HOME").is_err() && s.get("ANTHROPIC_API_KEY").is_err());
    }

    #[test]
    fn a_file_others_can_read_or_a_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.toml");
        std::fs::write(&path, "A = \"value\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_from(&path, env(&[])).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(load_from(&link, env(&[])).is_err());
        // No file: the environment alone.
        let none = load_from(&dir.path().join("missing.toml"), env(&[])).unwrap();
        assert!(none.is_empty());
        // A malformed value or name is one error naming where.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "A = 3\n").unwrap();
        assert!(load_from(&path, env(&[])).is_err());
        let bad = load_from(
            &dir.path().join("missing.toml"),
            env(&[("AGP_SECRET_A-B", "xxxx")]),
        );
        assert!(bad.unwrap_err().to_string().contains("AGP_SECRET_A-B"));
    }
}
