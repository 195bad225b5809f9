//! Journal events: the kinds (string constants) and one typed body per kind.
//!
//! Writers build a body type and call [`Event::to_body`]; readers parse a body with
//! [`Event::from_body`]. The types serialize to exactly the JSON agp has always journaled
//! (the journal format is not versioned by these types), so an old journal still verifies and
//! reads. Three conventions carry meaning and are kept per field:
//! - `Option<T>` absent unless set: in a type marked `#[serde_with::skip_serializing_none]`,
//!   or with its own `skip_serializing_if`;
//! - `Option<T>` always written, `null` when unknown: any other, e.g. `#[serialize_always]`;
//! - `Option<Option<T>>` ([`nullable`]): some writers omit the member, others write `null`.
//!
//! The JSON Schema of each kind is generated from these types and committed under
//! `crates/agp-contracts/schemas/` (see [`schemas`]).

mod approval;
mod egress;
mod intendant;
mod journal;
mod kinds;
pub mod nullable;
mod operate;
mod path_text;
mod policy;
mod projection;
mod sandbox;
mod session;
mod tool_call;

pub use approval::*;
pub use egress::*;
pub use intendant::*;
pub use journal::*;
pub use kinds::*;
pub use operate::*;
pub use policy::*;
pub use projection::{Projection, ProjectionError};
pub use sandbox::*;
pub use session::*;
pub use tool_call::*;

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

/// A typed journal event body of one kind.
pub trait Event: Serialize + DeserializeOwned + schemars::JsonSchema {
    /// The journal kind this body is written under.
    const KIND: &'static str;

    /// The body as journaled.
    // Serializing cannot fail: event types hold only strings, integers, booleans, JSON values
    // and paths, the paths written as text even when not UTF-8 (`path_text`); the round-trip
    // tests serialize every kind. A `Result` here would put an unreachable arm at every writer.
    #[allow(clippy::expect_used)]
    fn to_body(&self) -> Value {
        serde_json::to_value(self).expect("an event body serializes to JSON")
    }

    /// Reads a journaled body of this kind.
    fn from_body(body: &Value) -> Result<Self, serde_json::Error> {
        Self::deserialize(body)
    }
}

/// Every typed kind, once: the schema generator and the round-trip tests walk this list.
macro_rules! typed_kinds {
    ($m:ident) => {
        $m!(
            SessionStarted,
            SessionEnded,
            SessionReaped,
            SessionIntegrity,
            ToolCallRequested,
            PolicyDecided,
            PolicyReloaded,
            PolicyReloadRefused,
            ToolCallResult,
            ToolCallResultMismatch,
            CallDenied,
            ApprovalRequested,
            ApprovalGranted,
            ApprovalDenied,
            ApprovalTimeout,
            ApprovalRejected,
            SandboxPreflight,
            SandboxLimitExceeded,
            SandboxGitMetadataRemoved,
            EgressAllowed,
            EgressDenied,
            EgressUpstreamFailed,
            EgressRequest,
            GatewayRejected,
            IntendantWiringVerified,
            IntendantVersionUntested,
            JournalCreated,
            KeyRotated,
            JournalRecovered,
            SessionStopped,
            ApprovalRemembered,
            ApprovalVote
        )
    };
}

/// Checks a body against its kind's type: it must parse and serialize back to the same JSON.
/// Kinds without a type here (newer ones included) pass: a reader must carry them as they are.
pub fn check_body(kind: &str, body: &Value) -> Result<(), String> {
    fn exact<T: Event>(body: &Value) -> Result<(), String> {
        let typed = T::from_body(body).map_err(|e| format!("{}: {e}", T::KIND))?;
        let again = typed.to_body();
        if &again == body {
            Ok(())
        } else {
            Err(format!("{}: {body} reads back as {again}", T::KIND))
        }
    }
    macro_rules! dispatch {
        ($($t:ty),*) => {
            $(if kind == <$t as Event>::KIND {
                return exact::<$t>(body);
            })*
        };
    }
    typed_kinds!(dispatch);
    Ok(())
}

pub mod schemas {
    //! JSON Schemas of the typed kinds, generated from the types.

    use super::*;

    /// `(kind, schema)` for every typed kind, in a fixed order.
    pub fn all() -> Vec<(&'static str, Value)> {
        macro_rules! collect {
            ($($t:ty),*) => {
                vec![$((<$t as Event>::KIND, schema_of::<$t>())),*]
            };
        }
        typed_kinds!(collect)
    }

    /// The kinds that have a type here.
    pub fn kinds() -> Vec<&'static str> {
        all().into_iter().map(|(k, _)| k).collect()
    }

    fn schema_of<T: Event>() -> Value {
        let mut schema = schemars::schema_for!(T).to_value();
        if let Some(obj) = schema.as_object_mut() {
            obj.insert(
                "$id".into(),
                Value::String(format!("agp:event:{}", T::KIND)),
            );
        }
        schema
    }
}

#[cfg(test)]
mod tests;
