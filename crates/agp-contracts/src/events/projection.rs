//! The events an approval channel is told of, typed: what a channel may show a person is
//! decided here, once, instead of by each channel guessing at a JSON body.

use serde_json::Value;

use super::{CallDenied, Event, SessionEnded, SessionStarted};

/// A journal event projected to the humans watching a channel (a session root message, a
/// thread reply, a terminal note). The daemon queues the kind and body in its outbox and
/// delivers them after a restart too, so a projection is read back from those two parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Projection {
    SessionStarted(SessionStarted),
    SessionEnded(SessionEnded),
    CallDenied(CallDenied),
}

/// A queued projection that does not read as one of the projected kinds.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("{0} is not a kind projected to approval channels")]
    UnknownKind(String),
    #[error("a {kind} body does not read as its type: {source}")]
    Body {
        kind: &'static str,
        source: serde_json::Error,
    },
}

impl Projection {
    /// The journal kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Projection::SessionStarted(_) => SessionStarted::KIND,
            Projection::SessionEnded(_) => SessionEnded::KIND,
            Projection::CallDenied(_) => CallDenied::KIND,
        }
    }

    /// The body as journaled and queued.
    pub fn body(&self) -> Value {
        match self {
            Projection::SessionStarted(e) => e.to_body(),
            Projection::SessionEnded(e) => e.to_body(),
            Projection::CallDenied(e) => e.to_body(),
        }
    }

    /// Reads a queued `(kind, body)` back.
    pub fn from_parts(kind: &str, body: &Value) -> Result<Self, ProjectionError> {
        fn typed<T: Event>(body: &Value) -> Result<T, ProjectionError> {
            T::from_body(body).map_err(|source| ProjectionError::Body {
                kind: T::KIND,
                source,
            })
        }
        Ok(match kind {
            SessionStarted::KIND => Projection::SessionStarted(typed(body)?),
            SessionEnded::KIND => Projection::SessionEnded(typed(body)?),
            CallDenied::KIND => Projection::CallDenied(typed(body)?),
            other => return Err(ProjectionError::UnknownKind(other.to_owned())),
        })
    }
}

impl From<SessionStarted> for Projection {
    fn from(e: SessionStarted) -> Self {
        Projection::SessionStarted(e)
    }
}

impl From<SessionEnded> for Projection {
    fn from(e: SessionEnded) -> Self {
        Projection::SessionEnded(e)
    }
}

impl From<CallDenied> for Projection {
    fn from(e: CallDenied) -> Self {
        Projection::CallDenied(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_back_from_its_parts_and_refuses_what_is_not_projected() {
        let started: Projection = SessionStarted::new("scripted", "/r").into();
        let again = Projection::from_parts(started.kind(), &started.body()).unwrap();
        assert_eq!(again, started);

        let odd = Projection::from_parts("session.ended", &json!({"status": "completed"}));
        assert!(
            matches!(
                odd,
                Err(ProjectionError::Body {
                    kind: "session.ended",
                    ..
                })
            ),
            "{odd:?}"
        );
        let other = Projection::from_parts("policy.decided", &json!({}));
        assert!(matches!(other, Err(ProjectionError::UnknownKind(k)) if k == "policy.decided"));
    }
}
