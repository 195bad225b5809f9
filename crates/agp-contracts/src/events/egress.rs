//! `egress.*` bodies.

use super::{Event, EGRESS_ALLOWED, EGRESS_DENIED, EGRESS_UPSTREAM_FAILED};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

macro_rules! egress_decision {
    ($(#[$doc:meta])* $name:ident, $kind:ident) => {
        $(#[$doc])*
        #[serde_with::skip_serializing_none]
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
        pub struct $name {
            /// `CONNECT` or the plain-HTTP method.
            pub method: String,
            pub reason: String,
            pub host: Option<String>,
            pub port: Option<u16>,
            /// The connecting process, when the proxy could tell.
            pub peer_pid: Option<i32>,
        }

        impl Event for $name {
            const KIND: &'static str = $kind;
        }
    };
}

egress_decision!(
    /// The egress proxy let a connection through.
    EgressAllowed,
    EGRESS_ALLOWED
);
egress_decision!(
    /// The egress proxy refused a connection.
    EgressDenied,
    EGRESS_DENIED
);

/// An allowed connection whose upstream could not be reached.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EgressUpstreamFailed {
    pub host: String,
    pub port: u16,
    pub error: String,
    pub peer_pid: Option<i32>,
}

impl Event for EgressUpstreamFailed {
    const KIND: &'static str = EGRESS_UPSTREAM_FAILED;
}
