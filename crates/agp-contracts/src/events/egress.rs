//! `egress.*` bodies.

use super::{Event, EGRESS_ALLOWED, EGRESS_DENIED, EGRESS_REQUEST, EGRESS_UPSTREAM_FAILED};
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

/// One request through an inspected host, as decided and relayed (or a burst of identical ones,
/// `count` > 1, the bytes summed and the last status kept). The path is without its query:
/// queries carry tokens and personal data, and the rules never look at them.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EgressRequest {
    pub host: String,
    pub port: u16,
    pub method: String,
    pub path: String,
    pub allowed: bool,
    /// What decided: a rule, the default, the approval (a human), or a check (fronting,
    /// framing, address).
    pub rule: String,
    pub reason: String,
    /// The upstream's HTTP status.
    pub status: Option<u16>,
    /// Why the upstream could not be reached or answered.
    pub upstream_error: Option<String>,
    /// Request bytes sent upstream (head and body).
    pub bytes_up: u64,
    /// Response bytes relayed back to the client.
    pub bytes_down: u64,
    /// Names of the credentials injected into the request, never their values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<String>,
    /// How many requests this record stands for.
    pub count: u64,
    pub peer_pid: Option<i32>,
}

impl Event for EgressRequest {
    const KIND: &'static str = EGRESS_REQUEST;
}
