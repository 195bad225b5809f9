//! `Option<Option<T>>` fields: `None` is an absent member, `Some(None)` a `null` one.
//!
//! Use with `#[serde(default, with = "nullable")]` in a type marked
//! `#[serde_with::skip_serializing_none]` (which skips the outer `None`).
//! Some kinds are written by more than one writer, one of which omits a member that another
//! writes as `null`; both forms must read back to what was written.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub fn serialize<T: Serialize, S: Serializer>(
    value: &Option<Option<T>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(inner) => inner.serialize(serializer),
        // Skipped by `skip_serializing_if`; written as null if a caller forgot that.
        None => serializer.serialize_none(),
    }
}

pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    // Only called when the member is present; an absent one is `default`, i.e. `None`.
    Option::<T>::deserialize(deserializer).map(Some)
}
