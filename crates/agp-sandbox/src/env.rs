//! The environment a sandboxed command sees: nothing from the host except a short allowlist.

use agp_contracts::sandbox::{SandboxError, SANDBOX_HOME};

/// A PATH that only names system directories (the only ones mounted).
pub(crate) const SANDBOX_PATH: &str =
    "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";

/// Host variables copied in when set: locale and terminal only, never credentials.
const HOST_PASSTHROUGH: &[&str] = &[
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "LC_COLLATE",
    "LC_NUMERIC",
    "LC_TIME",
    "TERM",
    "COLORTERM",
    "TZ",
];

/// Build the full environment: fixed base, host passthrough, then the session's explicit
/// variables (which win). Invalid names or values are refused, not dropped.
pub(crate) fn build(explicit: &[(String, String)]) -> Result<Vec<(String, String)>, SandboxError> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), SANDBOX_PATH.into()),
        ("HOME".into(), SANDBOX_HOME.into()),
        ("TMPDIR".into(), "/tmp".into()),
        ("SHELL".into(), "/bin/bash".into()),
    ];
    for name in HOST_PASSTHROUGH {
        if let Ok(value) = std::env::var(name) {
            if !value.contains('\0') {
                env.push(((*name).to_string(), value));
            }
        }
    }
    for (name, value) in explicit {
        validate(name, value)?;
        env.retain(|(n, _)| n != name);
        env.push((name.clone(), value.clone()));
    }
    Ok(env)
}

fn validate(name: &str, value: &str) -> Result<(), SandboxError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(SandboxError::Refused(format!(
            "invalid environment variable name {name:?}"
        )));
    }
    if value.contains('\0') {
        return Err(SandboxError::Refused(format!(
            "environment variable {name} contains a NUL byte"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_env_has_sandbox_home_and_fixed_path() {
        let env = build(&[]).unwrap();
        assert!(env.contains(&("HOME".into(), SANDBOX_HOME.into())));
        assert!(env.contains(&("PATH".into(), SANDBOX_PATH.into())));
        assert!(env.iter().all(|(n, _)| n != "USER" && n != "SSH_AUTH_SOCK"));
    }

    #[test]
    fn explicit_variables_override_the_base() {
        let env = build(&[("HOME".into(), "/other".into()), ("X_1".into(), "v".into())]).unwrap();
        assert_eq!(env.iter().filter(|(n, _)| n == "HOME").count(), 1);
        assert!(env.contains(&("HOME".into(), "/other".into())));
        assert!(env.contains(&("X_1".into(), "v".into())));
    }

    #[test]
    fn bad_names_and_values_are_refused() {
        for name in ["", "1A", "A=B", "A B", "A-B"] {
            assert!(build(&[(name.into(), "v".into())]).is_err(), "{name:?}");
        }
        assert!(build(&[("A".into(), "x\0y".into())]).is_err());
    }
}
