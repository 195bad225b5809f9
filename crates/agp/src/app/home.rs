//! The agp home: where keys, policy, journal and state live. Every file and folder of the home
//! is named here and nowhere else in the binary (the daemon gets its paths from here too).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The home's files and folders: each is an accessor giving its path, below the path another
/// accessor gives (the root, or a folder of the home).
macro_rules! layout {
    ($($(#[$doc:meta])* $name:ident = $base:ident / $file:expr;)*) => {
        impl Home {
            $(
                $(#[$doc])*
                pub fn $name(&self) -> PathBuf {
                    self.$base().join($file)
                }
            )*
        }
    };
}

layout! {
    config = root / "config.toml";
    policy = root / "policy.toml";
    keys_dir = root / "keys";
    journal_dir = root / "journal";
    state_db = root / "state.db";
    run_dir = root / "run";
    /// The journal's signing key (secret, mode 0600).
    signer_key = keys_dir / agp_journal::keys::SIGNER_FILE;
    /// The journal's verifier (public) key.
    verifier_key = keys_dir / agp_journal::keys::VERIFIER_FILE;
    /// The socket of the `agp daemon` serving this home.
    gateway_socket = run_dir / agp_daemon::GATEWAY_SOCKET_FILE;
    /// The admin token of the `agp daemon` serving this home.
    admin_token = run_dir / agp_daemon::ADMIN_TOKEN_FILE;
    /// Start-of-session snapshots of the repositories, for the end-of-session integrity check.
    integrity_dir = root / "integrity";
    /// Where the integrity check moves what it neutralizes, one folder per session.
    quarantine_dir = root / "quarantine";
}

/// Layout of an agp home directory (`$AGP_HOME`, default `~/.agp`).
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
    /// Named with `--home` (not AGP_HOME or the default): the commands agp suggests must name
    /// it too, or they would act on another home.
    by_flag: bool,
}

impl Home {
    /// Resolve the home from `--home`, then `$AGP_HOME` (`cmd::dispatch` fills both into `explicit`), then
    /// `~/.agp`.
    pub fn resolve(explicit: Option<&Path>) -> Result<Self> {
        let root = if let Some(p) = explicit {
            p.to_path_buf()
        } else {
            let Some(user_home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) else {
                bail!("cannot find the agp home: neither --home, AGP_HOME nor HOME is set");
            };
            PathBuf::from(user_home).join(".agp")
        };
        Ok(Self {
            root,
            by_flag: false,
        })
    }

    /// Marks the home as named with `--home`.
    pub fn named_by_flag(mut self, by_flag: bool) -> Self {
        self.by_flag = by_flag;
        self
    }

    /// How to call agp on this home in a printed hint: `agp`, or `agp --home 'DIR'` when the
    /// home was named with `--home`.
    pub fn agp(&self) -> String {
        if !self.by_flag {
            return "agp".to_owned();
        }
        let dir = std::path::absolute(&self.root).unwrap_or_else(|_| self.root.clone());
        format!(
            "agp --home '{}'",
            dir.display().to_string().replace('\'', "'\\''")
        )
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Slack's settings (tokens: mode 0600).
    pub fn slack_settings(&self) -> PathBuf {
        agp_slack::settings_path(&self.root)
    }

    /// Fails with a fix when the home has not been created yet.
    pub fn require_initialized(&self) -> Result<()> {
        if !self.config().is_file() {
            bail!(
                "no agp home at {} (run `agp init` first, or pass --home / set AGP_HOME)",
                self.root.display()
            );
        }
        Ok(())
    }

    /// Creates `dir` (and parents) and forces mode 0700 on it.
    pub fn create_private_dir(dir: &Path) -> Result<()> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot set mode 0700 on {}", dir.display()))?;
        Ok(())
    }
}
