//! Which engine serves the API, and what Podman reports in place of Docker's fields.
//!
//! Podman's Docker-compatible inspect states some hardening in another form, or not at all:
//! `HostConfig.Runtime` is always `"oci"`, `CapDrop` lists the default capabilities it
//! dropped instead of `"ALL"`, and `MaskedPaths`/`ReadonlyPaths` are null. The same facts
//! come from Podman's own inspect (`/libpod/containers/{id}/json`: `OCIRuntime`,
//! `BoundingCaps`, `EffectiveCaps`) and from the OCI runtime configuration it names
//! (`OCIConfigPath`: `process.capabilities`, `linux.maskedPaths`, `linux.readonlyPaths`,
//! `linux.seccomp`). Only those stronger forms are accepted; a fact Podman does not report
//! refuses the session naming it.

use agp_contracts::sandbox::SandboxError;
use serde_json::{json, Value};

use super::api::Engine;

/// The engine behind the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    /// Docker Engine (`dockerd`).
    Docker,
    /// Podman's API service (`podman system service`).
    Podman,
}

impl EngineKind {
    /// Read from `GET /version`: Podman names a component "Podman Engine".
    pub(crate) fn of_version(version: &Value) -> Self {
        let podman = version["Components"].as_array().is_some_and(|c| {
            c.iter()
                .any(|x| x["Name"].as_str().is_some_and(|n| n.starts_with("Podman")))
        });
        if podman {
            EngineKind::Podman
        } else {
            EngineKind::Docker
        }
    }

    /// Ask the engine.
    pub(crate) fn of(engine: &Engine) -> Result<Self, SandboxError> {
        let version = engine.call("GET", "/version", None)?;
        version.refuse_unless_ok(|| "container engine does not answer /version".to_owned())?;
        Ok(Self::of_version(&version.json()?))
    }

    /// "Docker" or "Podman".
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Docker => "Docker",
            EngineKind::Podman => "Podman",
        }
    }
}

/// The engine's kind and its version (`GET /version`: `Version`).
pub(crate) fn of_with_version(engine: &Engine) -> Result<(EngineKind, String), SandboxError> {
    let version = engine.call("GET", "/version", None)?;
    version.refuse_unless_ok(|| "container engine does not answer /version".to_owned())?;
    let version = version.json()?;
    Ok((
        EngineKind::of_version(&version),
        version["Version"].as_str().unwrap_or_default().to_string(),
    ))
}

/// Podman's default OCI runtime (`GET /libpod/info`: `host.ociRuntime.name`).
pub(crate) fn podman_default_runtime(engine: &Engine) -> Result<String, SandboxError> {
    let info = engine.call("GET", "/libpod/info", None)?;
    info.refuse_unless_ok(|| "Podman does not answer /libpod/info".to_owned())?;
    Ok(info.json()?["host"]["ociRuntime"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// Why Podman cannot run `asked` per container, and the fix, when its default is another.
pub fn podman_runtime_refusal(asked: &str, default: &str) -> Option<String> {
    (asked != default).then(|| {
        format!(
            "Podman runs every container with its default runtime {default:?}: its API ignores \
             a per-container runtime (containers/podman#28429, Podman 4.3 here), so runtime \
             {asked:?} cannot be asked for; {}, or use Docker Engine for {asked}",
            podman_runtime_fix(asked)
        )
    })
}

/// How to make `runtime` the Podman service's default (for runsc, as the tests run it).
pub fn podman_runtime_fix(runtime: &str) -> String {
    let flag = if runtime == "runsc" {
        " and start the service as `podman --runtime-flag network=none system service` \
         (Debian's runsc starts only without the host network)"
    } else {
        " and restart the service"
    };
    format!("set `runtime = \"{runtime}\"` under [engine] in the Podman service's containers.conf{flag}")
}

/// What Podman reports beyond its compatible inspect: `{"libpod": <its own inspect>,
/// "oci": <the OCI config or null>, "oci_error": <why not>}`.
pub(crate) fn podman_facts(engine: &Engine, container: &str) -> Result<Value, SandboxError> {
    let libpod = engine.call("GET", &format!("/libpod/containers/{container}/json"), None)?;
    if !libpod.ok() {
        return Err(SandboxError::Refused(format!(
            "Podman cannot inspect the session container through its own API: {}; refusing \
             the session",
            libpod.message()
        )));
    }
    let libpod = libpod.json()?;
    let (oci, oci_error) = match libpod["OCIConfigPath"].as_str() {
        Some(path) if path.starts_with('/') => match std::fs::read(path)
            .map_err(|e| format!("cannot read Podman's OCI config {path}: {e}"))
            .and_then(|b| {
                serde_json::from_slice::<Value>(&b)
                    .map_err(|e| format!("Podman's OCI config {path} is not JSON: {e}"))
            }) {
            Ok(v) => (v, Value::Null),
            Err(e) => (Value::Null, json!(e)),
        },
        _ => (
            Value::Null,
            json!("Podman's inspect names no absolute OCIConfigPath"),
        ),
    };
    Ok(json!({"libpod": libpod, "oci": oci, "oci_error": oci_error}))
}

/// An empty capability set as Podman reports it: the key present, null or `[]`.
fn none(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

/// Podman's forms of the three facts its compatible inspect does not state: the runtime, all
/// capabilities dropped, and the kernel-interface paths masked/read-only under the seccomp
/// profile. Each `(what, held)`.
pub(crate) fn podman_checks(facts: &Value, runtime: &str) -> Vec<(String, bool)> {
    let libpod = &facts["libpod"];
    let oci = &facts["oci"];
    let unread = facts["oci_error"]
        .as_str()
        .map(|e| format!(" ({e})"))
        .unwrap_or_default();
    let caps = &oci["process"]["capabilities"];
    let oci_caps_empty = caps.is_object()
        && [
            "bounding",
            "effective",
            "permitted",
            "inheritable",
            "ambient",
        ]
        .iter()
        .all(|set| none(caps.get(*set)) || caps.get(*set).is_none());
    let libpod = libpod.as_object();
    let paths = |key: &str| oci["linux"][key].as_array().is_some_and(|p| !p.is_empty());
    vec![
        {
            let ran = libpod.and_then(|l| l.get("OCIRuntime"));
            (
                format!(
                    "runtime (asked {runtime}, Podman ran {}; its API does not apply a \
                     per-container runtime: set `runtime` under [engine] in containers.conf)",
                    ran.and_then(Value::as_str).unwrap_or("an unreported one")
                ),
                ran == Some(&json!(runtime)),
            )
        },
        (
            format!("all capabilities dropped{unread}"),
            libpod.is_some_and(|l| none(l.get("BoundingCaps")) && none(l.get("EffectiveCaps")))
                && oci_caps_empty,
        ),
        (
            format!("the engine's masked /proc paths{unread}"),
            paths("maskedPaths") && paths("readonlyPaths"),
        ),
        (
            format!("engine seccomp profile kept{unread}"),
            oci["linux"]["seccomp"].is_object(),
        ),
        (
            format!(
                "a seccomp profile refusing new namespaces and mounts as Docker's does (Podman's \
                 stock profile allows unshare, setns, mount, clone3 and clone with namespace \
                 flags; set `seccomp_profile` in containers.conf to one that does not){unread}"
            ),
            seccomp_refuses_namespaces(&oci["linux"]["seccomp"]),
        ),
        (
            format!("no-new-privileges{unread}"),
            oci["process"]["noNewPrivileges"] == true,
        ),
    ]
}

/// Syscalls that make or enter namespaces or change mounts: Docker's default profile allows
/// them only with `CAP_SYS_ADMIN` (which the container never has).
const NAMESPACE_SYSCALLS: &[&str] = &[
    "unshare",
    "setns",
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "clone3",
];
/// CLONE_NEWNS|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWCGROUP, as Docker's profile masks them.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// Whether the applied seccomp profile (as the OCI config holds it: capability conditions
/// already resolved) refuses every namespace and mount syscall, and allows `clone` only
/// with all namespace flags masked to zero. Anything else is not Docker's protection.
fn seccomp_refuses_namespaces(seccomp: &Value) -> bool {
    let lets_through = |action: &Value| {
        !matches!(
            action.as_str(),
            Some(
                "SCMP_ACT_ERRNO"
                    | "SCMP_ACT_KILL"
                    | "SCMP_ACT_KILL_PROCESS"
                    | "SCMP_ACT_KILL_THREAD"
                    | "SCMP_ACT_TRAP"
            )
        )
    };
    if lets_through(&seccomp["defaultAction"]) {
        return false;
    }
    let Some(rules) = seccomp["syscalls"].as_array() else {
        return false;
    };
    rules
        .iter()
        .filter(|r| lets_through(&r["action"]))
        .all(|rule| {
            let names: Vec<&str> = rule["names"]
                .as_array()
                .map(|n| n.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if names.iter().any(|n| NAMESPACE_SYSCALLS.contains(n)) {
                return false;
            }
            !names.contains(&"clone")
                || rule["args"].as_array().is_some_and(|args| {
                    args.iter().any(|a| {
                        a["index"] == 0
                            && a["op"] == "SCMP_CMP_MASKED_EQ"
                            // The OCI config leaves out a zero `valueTwo`.
                        && a.get("valueTwo").is_none_or(|v| v == 0)
                            && a["value"]
                                .as_u64()
                                .is_some_and(|v| v & CLONE_NAMESPACE_FLAGS == CLONE_NAMESPACE_FLAGS)
                    })
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Podman 4.3 reported here for a hardened container (trimmed).
    fn reported() -> Value {
        json!({
            "libpod": {"OCIRuntime": "runc", "BoundingCaps": null, "EffectiveCaps": null},
            "oci": {
                "process": {"capabilities": {}, "noNewPrivileges": true},
                "linux": {
                    "maskedPaths": ["/proc/kcore"],
                    "readonlyPaths": ["/proc/sys"],
                    "seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                        {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [
                            {"index": 0, "value": 2_114_060_288_u64, "valueTwo": 0,
                             "op": "SCMP_CMP_MASKED_EQ"}]},
                    ]},
                },
            },
            "oci_error": null,
        })
    }

    fn failing(facts: &Value, runtime: &str) -> Vec<String> {
        podman_checks(facts, runtime)
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(w, _)| w)
            .collect()
    }

    #[test]
    fn the_hardened_form_passes() {
        assert_eq!(failing(&reported(), "runc"), Vec::<String>::new());
    }

    #[test]
    fn each_weakened_or_missing_fact_is_named() {
        let wrong = failing(&reported(), "runsc");
        assert_eq!(wrong.len(), 1, "{wrong:?}");
        assert!(
            wrong[0].starts_with("runtime (asked runsc, Podman ran runc"),
            "{wrong:?}"
        );
        let mut f = reported();
        f["libpod"]["BoundingCaps"] = json!(["CAP_SYS_ADMIN"]);
        assert_eq!(failing(&f, "runc"), ["all capabilities dropped"]);
        let mut f = reported();
        f["libpod"].as_object_mut().unwrap().remove("BoundingCaps");
        assert_eq!(failing(&f, "runc"), ["all capabilities dropped"]);
        let mut f = reported();
        f["oci"]["process"]["capabilities"]["bounding"] = json!(["CAP_NET_RAW"]);
        assert_eq!(failing(&f, "runc"), ["all capabilities dropped"]);
        let mut f = reported();
        f["oci"]["linux"]["maskedPaths"] = json!([]);
        assert_eq!(failing(&f, "runc"), ["the engine's masked /proc paths"]);
        let mut f = reported();
        f["oci"]["linux"].as_object_mut().unwrap().remove("seccomp");
        let wrong = failing(&f, "runc");
        assert_eq!(wrong.len(), 2, "{wrong:?}");
        assert_eq!(wrong[0], "engine seccomp profile kept");
        let mut f = reported();
        f["oci"]["process"]["noNewPrivileges"] = json!(false);
        assert_eq!(failing(&f, "runc"), ["no-new-privileges"]);
    }

    #[test]
    fn podmans_stock_seccomp_profile_is_refused() {
        let weak = |rules: Value| {
            let mut f = reported();
            f["oci"]["linux"]["seccomp"]["syscalls"] = rules;
            let wrong = failing(&f, "runc");
            assert_eq!(wrong.len(), 1, "{wrong:?}");
            assert!(wrong[0].contains("refusing new namespaces"), "{wrong:?}");
        };
        // Podman 4.3's stock rule: one unconditional allow naming them all.
        weak(
            json!([{"names": ["read", "clone", "clone3", "mount", "setns", "unshare"],
                     "action": "SCMP_ACT_ALLOW", "args": []}]),
        );
        weak(json!([{"names": ["unshare"], "action": "SCMP_ACT_LOG"}]));
        // clone filtered on fewer flags than all namespace flags (CLONE_NEWUSER left open).
        weak(
            json!([{"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": 0x0002_0000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}]),
        );
        let mut f = reported();
        f["oci"]["linux"]["seccomp"]["defaultAction"] = json!("SCMP_ACT_ALLOW");
        assert_eq!(failing(&f, "runc").len(), 1);
    }

    #[test]
    fn an_unreadable_oci_config_refuses_naming_why() {
        let mut f = reported();
        f["oci"] = Value::Null;
        f["oci_error"] = json!("cannot read Podman's OCI config /x: denied");
        let wrong = failing(&f, "runc");
        assert_eq!(wrong.len(), 5, "{wrong:?}");
        assert!(wrong.iter().all(|w| w.contains("/x: denied")), "{wrong:?}");
    }

    #[test]
    fn a_runtime_podman_does_not_default_to_is_refused_with_the_fix() {
        assert_eq!(podman_runtime_refusal("runc", "runc"), None);
        let why = podman_runtime_refusal("runsc", "runc").unwrap();
        assert!(
            why.contains("runtime = \"runsc\"") && why.contains("containers.conf"),
            "{why}"
        );
    }

    #[test]
    fn the_kind_is_read_from_the_version_components() {
        let podman = json!({"Components": [{"Name": "Podman Engine", "Version": "4.3.1"}]});
        assert_eq!(EngineKind::of_version(&podman), EngineKind::Podman);
        let docker = json!({"Components": [{"Name": "Engine", "Version": "20.10.24"}]});
        assert_eq!(EngineKind::of_version(&docker), EngineKind::Docker);
    }
}
