//! `agp keygen`: create (or rotate) the Ed25519 journal signing key.

use std::path::{Path, PathBuf};

use agp_journal::keys::{self, ALLOWED_SIGNERS_FILE, PEM_FILE, SIGNER_FILE, VERIFIER_FILE};
use agp_journal::{JournalOptions, JournalWriter, SignerKey, VerifierKey};
use anyhow::{bail, Context, Result};
use clap::Args;

use crate::exit::Exit;
use crate::home::Home;

/// Shown by `--help` (the doc line in cli.rs is the short form).
pub const LONG_ABOUT: &str =
    "Create the Ed25519 journal signing key from the OS random number generator \
    (keys/journal.key, mode 0600, never overwritten without --force), write its public forms \
    (keys/journal.pub: C2SP verifier key; keys/journal.pub.pem: PEM SPKI; keys/allowed_signers: \
    for ssh-keygen -Y verify), and start the journal with a signed journal.created entry and \
    checkpoint.\n\nWith --rotate, a new key replaces the current one: the journal records a \
    key.rotated entry signed by the current key naming the new verifier key, and checkpoints \
    from then on are signed by the new key.";

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Replace an existing key. Refused when the journal already has entries (use --rotate).
    #[arg(long, conflicts_with = "rotate")]
    pub force: bool,
    /// Rotate the key of an existing journal (journaled as key.rotated, signed by the old key).
    #[arg(long)]
    pub rotate: bool,
    /// Name of the journal: the checkpoint origin and key name
    /// [default: config.toml [journal] origin, else agp.local/journal/<random>]
    #[arg(long, value_name = "NAME")]
    pub origin: Option<String>,
    /// Rebuild the public key files (keys/journal.pub, .pem, allowed_signers) from
    /// keys/journal.key, after checking that the journal verifies with it.
    #[arg(long, conflicts_with_all = ["force", "rotate", "origin"])]
    pub repair_pub: bool,
    /// Print what was created as one JSON document
    #[arg(long)]
    pub json: bool,
}

/// Path of the signer key in `home`.
pub fn signer_path(home: &Home) -> PathBuf {
    home.signer_key()
}

/// The verifier key configured in `home` (keys/journal.pub). `key_option`: the command has a
/// `--key` option the hint may name.
pub fn home_verifier(home: &Home, key_option: bool) -> Result<VerifierKey> {
    let path = home.verifier_key();
    let or_key = if key_option { ", or pass --key" } else { "" };
    if !path.exists() {
        if signer_path(home).exists() {
            bail!(
                "no public key at {}: rebuild it from {} with `{} keygen --repair-pub`{or_key}",
                path.display(),
                signer_path(home).display(),
                home.agp()
            );
        }
        bail!(
            "no journal key in {}: create one with `{} keygen`{or_key}",
            home.keys_dir().display(),
            home.agp()
        );
    }
    keys::load_verifier_key(&path.to_string_lossy()).with_context(|| {
        format!(
            "cannot load the public key {} (`{} keygen --repair-pub` rebuilds it from {}{or_key})",
            path.display(),
            home.agp(),
            signer_path(home).display()
        )
    })
}

/// The key given with `--key` (a key string or a file), else the home's.
pub fn resolve_verifier(home: &Home, arg: Option<&str>) -> Result<VerifierKey> {
    match arg {
        Some(a) => keys::load_verifier_key(a).with_context(|| format!("cannot use --key {a}")),
        None => home_verifier(home, true),
    }
}

pub fn run(home: &Home, args: KeygenArgs) -> Result<Exit> {
    home.require_initialized()?;
    Home::create_private_dir(&home.keys_dir())?;
    Home::create_private_dir(&home.journal_dir())?;
    if args.rotate {
        return rotate(home, args.json);
    }
    if args.repair_pub {
        return repair_pub(home, args.json);
    }
    let key_path = signer_path(home);
    if !key_path.exists() && journal_has_entries(&home.journal_dir())? {
        bail!(
            "the journal in {} was started with a key that is no longer at {}: restore that key \
             (a new one could not extend the journal), or move the journal away to start a new one",
            home.journal_dir().display(),
            key_path.display()
        );
    }
    if key_path.exists() {
        if !args.force {
            let repair = if home.verifier_key().exists() {
                String::new()
            } else {
                format!(
                    "; its public key {} is missing: `{} keygen --repair-pub` rebuilds it",
                    home.verifier_key().display(),
                    home.agp()
                )
            };
            bail!(
                "{} already exists (use --rotate to rotate it; --force replaces it only while the journal is empty){repair}",
                key_path.display()
            );
        }
        if journal_has_entries(&home.journal_dir())? {
            bail!(
                "the journal in {} is signed by the current key: replacing the key would make it \
                 impossible to extend; use `agp keygen --rotate`",
                home.journal_dir().display()
            );
        }
        std::fs::remove_file(&key_path)
            .with_context(|| format!("cannot remove {}", key_path.display()))?;
    }
    let origin = match args.origin {
        Some(o) => o,
        None => match configured_origin(home)? {
            Some(o) => o,
            None => random_origin()?,
        },
    };
    let key = SignerKey::generate(&origin).context("cannot create the key")?;
    keys::write_signer_key_new(&key_path, &key)?;
    write_public_forms(home, key.verifier())?;
    let writer = JournalWriter::open(&home.journal_dir(), key.clone(), JournalOptions::default())
        .context("cannot start the journal")?;
    let created = writer.open_summary().created;
    writer.close().context("cannot close the journal")?;
    if args.json {
        let mut out = public_json(key.verifier());
        out["created"] = serde_json::json!(key_path);
        out["journal_started"] = serde_json::json!(created);
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(Exit::Ok);
    }
    println!("created journal key {}", key_path.display());
    print_public(key.verifier());
    if created {
        println!(
            "started the journal in {} with a signed journal.created entry",
            home.journal_dir().display()
        );
    }
    let agp = home.agp();
    println!(
        "next: `{agp} run` runs the embedded demo; `{agp} verify` checks the journal offline with this public key"
    );
    Ok(Exit::Ok)
}

/// The public forms of `key` as JSON (shared with `agp key show --json`).
pub fn public_json(key: &VerifierKey) -> serde_json::Value {
    serde_json::json!({
        "name": key.name(),
        "key_id": key.id_hex(),
        "verifier_key": key.to_string(),
        "pem": keys::public_key_pem(key),
        "allowed_signers": keys::allowed_signers_line(key),
        "ssh_identity": keys::ssh_identity(key),
        "ssh_namespace": agp_journal::sshsig::CHECKPOINT_NAMESPACE,
    })
}

/// Rebuilds the public key files from the private key. The journal must verify with the rebuilt
/// key first: a swapped private key must not become the key auditors trust.
fn repair_pub(home: &Home, json: bool) -> Result<Exit> {
    let key_path = signer_path(home);
    if !key_path.exists() {
        bail!(
            "no private key at {} to rebuild the public key from: restore it from your backup, \
             or run `agp keygen` for a new journal",
            key_path.display()
        );
    }
    let key = keys::load_signer_key(&key_path)
        .with_context(|| format!("cannot load the journal key {}", key_path.display()))?;
    let pub_path = home.verifier_key();
    if let Ok(existing) = keys::load_verifier_key(&pub_path.to_string_lossy()) {
        if &existing != key.verifier() {
            bail!(
                "{} (key id {}) does not belong to {} (key id {}): restore the right one from \
                 your records; agp does not guess which of them is trusted",
                pub_path.display(),
                existing.id_hex(),
                key_path.display(),
                key.verifier().id_hex()
            );
        }
    }
    if journal_has_entries(&home.journal_dir())? {
        let report = agp_journal::verify_dir(
            &home.journal_dir(),
            &agp_journal::VerifyOptions {
                trusted_key: key.verifier().clone(),
                trusted_checkpoint: None,
            },
        )
        .context("cannot verify the journal")?;
        if !report.intact {
            bail!(
                "the journal in {} does not verify with {} (key id {}): the public key is not \
                 rebuilt from a key that did not sign it; restore keys/journal.pub from your records",
                home.journal_dir().display(),
                key_path.display(),
                key.verifier().id_hex()
            );
        }
    }
    write_public_forms(home, key.verifier())?;
    if json {
        let mut out = public_json(key.verifier());
        out["repaired"] = serde_json::json!(pub_path);
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(Exit::Ok);
    }
    println!(
        "rebuilt {} (and .pem, allowed_signers) from {}",
        pub_path.display(),
        key_path.display()
    );
    print_public(key.verifier());
    println!(
        "next: `{} verify` checks the journal offline with this public key",
        home.agp()
    );
    Ok(Exit::Ok)
}

fn rotate(home: &Home, json: bool) -> Result<Exit> {
    let key_path = signer_path(home);
    let next_path = home.keys_dir().join(format!("{SIGNER_FILE}.next"));
    let old = keys::load_signer_key(&key_path)
        .with_context(|| format!("cannot load the current key {}", key_path.display()))?;
    // The new key is on disk before the journal names it, so a crash can be finished later.
    let pending = if next_path.exists() {
        Some(
            keys::load_signer_key(&next_path)
                .with_context(|| format!("cannot load the pending key {}", next_path.display()))?,
        )
    } else {
        None
    };
    let report = agp_journal::verify_dir(
        &home.journal_dir(),
        &agp_journal::VerifyOptions {
            trusted_key: old.verifier().clone(),
            trusted_checkpoint: None,
        },
    );
    if let (Some(next), Ok(report)) = (&pending, &report) {
        if report.active_key() == Some(next.verifier()) {
            // An earlier rotation was journaled but the key files were not swapped yet.
            finish_rotation(home, &old, next, &next_path)?;
            if json {
                let mut out = public_json(next.verifier());
                out["rotated_from"] = serde_json::json!(old.verifier().id_hex());
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(Exit::Ok);
            }
            println!(
                "finished an interrupted rotation to key id {}",
                next.verifier().id_hex()
            );
            return Ok(Exit::Ok);
        }
    }
    if pending.is_some() {
        std::fs::remove_file(&next_path)
            .with_context(|| format!("cannot remove {}", next_path.display()))?;
    }
    let new = SignerKey::generate(old.name()).context("cannot create the key")?;
    keys::write_signer_key_new(&next_path, &new)?;
    let writer = JournalWriter::open(&home.journal_dir(), old.clone(), JournalOptions::default())
        .context("cannot open the journal to rotate its key")?;
    let receipt = writer
        .rotate(new.clone())
        .context("cannot journal the key rotation")?;
    writer.close().context("cannot close the journal")?;
    drop(writer);
    finish_rotation(home, &old, &new, &next_path)?;
    if json {
        let mut out = public_json(new.verifier());
        out["rotated_from"] = serde_json::json!(old.verifier().id_hex());
        out["rotated_at_seq"] = serde_json::json!(receipt.seq);
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(Exit::Ok);
    }
    println!(
        "rotated the journal key: {} -> {} (key.rotated at seq {})",
        old.verifier().id_hex(),
        new.verifier().id_hex(),
        receipt.seq
    );
    print_public(new.verifier());
    println!("auditors who hold the old key can keep verifying; the journal proves the hand-over");
    Ok(Exit::Ok)
}

fn finish_rotation(home: &Home, old: &SignerKey, new: &SignerKey, next_path: &Path) -> Result<()> {
    let key_path = signer_path(home);
    let retired = home
        .keys_dir()
        .join(format!("{SIGNER_FILE}.retired-{}", old.verifier().id_hex()));
    std::fs::rename(&key_path, &retired)
        .with_context(|| format!("cannot retire {}", key_path.display()))?;
    std::fs::rename(next_path, &key_path)
        .with_context(|| format!("cannot install {}", key_path.display()))?;
    write_public_forms(home, new.verifier())
}

fn journal_has_entries(dir: &Path) -> Result<bool> {
    let path = dir.join(agp_journal::ENTRIES_FILE);
    match std::fs::metadata(&path) {
        Ok(m) => Ok(m.len() > 0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn configured_origin(home: &Home) -> Result<Option<String>> {
    use crate::app::config::Config;
    let config = Config::parse(&Config::read(home)?)
        .with_context(|| format!("cannot parse {}", home.config().display()))?;
    Ok(config.origin())
}

fn random_origin() -> Result<String> {
    // A throwaway key only to draw random bytes from the OS RNG the same way keys are made.
    let k = SignerKey::generate("x").context("cannot draw a random journal origin")?;
    Ok(format!("agp.local/journal/{}", &k.verifier().id_hex()))
}

fn write_public_forms(home: &Home, key: &VerifierKey) -> Result<()> {
    let dir = home.keys_dir();
    let forms = [
        (VERIFIER_FILE, format!("{key}\n")),
        (PEM_FILE, keys::public_key_pem(key)),
        (
            ALLOWED_SIGNERS_FILE,
            format!("{}\n", keys::allowed_signers_line(key)),
        ),
    ];
    for (name, text) in forms {
        crate::cmd::init::write_file(&dir.join(name), &text, true)?;
    }
    Ok(())
}

/// Prints the public forms of `key`.
pub fn print_public(key: &VerifierKey) {
    println!("key id:           {}", key.id_hex());
    println!("verifier key:     {key}");
    println!("allowed_signers:  {}", keys::allowed_signers_line(key));
    print!("PEM (SPKI):\n{}", keys::public_key_pem(key));
}
