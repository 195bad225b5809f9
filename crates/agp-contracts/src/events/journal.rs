//! The journal's own entries: its genesis, key rotations and crash recoveries.

use super::{nullable, Event, JOURNAL_CREATED, JOURNAL_RECOVERED, KEY_ROTATED};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Entry 0: names the journal's origin and its first verifier key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct JournalCreated {
    /// The journal's name (the checkpoint origin), which is the key's name.
    pub origin: String,
    /// The C2SP verifier key in force from entry 0.
    pub key: String,
}

impl Event for JournalCreated {
    const KIND: &'static str = JOURNAL_CREATED;
}

/// The signing key changed hands: signed by the old key, it names the new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KeyRotated {
    pub old_key: String,
    pub new_key: String,
    /// Base64 signature by the old key over the rotation statement (origin, seq, new key).
    pub signature: String,
}

impl Event for KeyRotated {
    const KIND: &'static str = KEY_ROTATED;
}

/// Opening found a torn or unsealed tail and recorded it.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct JournalRecovered {
    /// Size of the tree the last checkpoint sealed.
    pub unsealed_from: u64,
    pub unsealed_entries: u64,
    pub torn_bytes: u64,
    /// Torn tails an earlier open moved aside without journaling them.
    pub earlier_torn: Option<Vec<TornTail>>,
    /// Where this open moved the torn tail (a file name in the journal folder).
    #[serde(default, with = "nullable")]
    #[schemars(with = "Option<String>")]
    pub torn_file: Option<Option<String>>,
    pub torn_sha256: Option<String>,
}

/// A torn tail kept in a file of the journal folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TornTail {
    pub file: Option<String>,
    pub bytes: u64,
    pub sha256: String,
}

impl Event for JournalRecovered {
    const KIND: &'static str = JOURNAL_RECOVERED;
}
