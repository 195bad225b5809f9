//! The host's environment does not reach the sandbox. The secrets are put in the environment of
//! a child run of this test binary, from its start: setting them here with `set_var` would race
//! the other tests of the suite, which run on other threads of this process.

//! On every provider; a container engine started by the child run holds the secrets in its own
//! environment too, which must not reach the container either.

use super::support as common;

use common::provider::{each_provider, Sandbox, Which};
use common::*;

each_provider!(host_environment_does_not_leak_into_the_sandbox);

fn host_environment_does_not_leak_into_the_sandbox(p: Which) {
    let test = format!(
        "suite::env_leak::{}::host_environment_does_not_leak_into_the_sandbox",
        p.module()
    );
    let Ok(secret) = std::env::var("AGP_TEST_LEAK_SECRET") else {
        let secret = format!("agp-secret-{}", token());
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &test, "--nocapture", "--test-threads=1"])
            .env("AGP_TEST_LEAK_SECRET", &secret)
            .env("AWS_SECRET_ACCESS_KEY", &secret)
            .env("ANTHROPIC_API_KEY", &secret)
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        let said = String::from_utf8_lossy(&out.stderr);
        let said: String = said
            .lines()
            .filter(|l| !l.starts_with("time="))
            .take(40)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(out.status.success(), "child run failed: {report}\n{said}");
        // Guard against a filter that matched nothing: the child must have run the check.
        assert!(
            report.contains("1 passed"),
            "the check did not run: {report}"
        );
        return;
    };
    let Some(fx) = Sandbox::with_spec(p, |spec| {
        spec.env.push(("EXPLICIT_VAR".into(), "given".into()));
    }) else {
        return;
    };
    let out = fx.sh("env; cat /proc/self/environ; cat /proc/1/environ; ps -eo args 2>/dev/null");
    let s = stdout(&out);
    assert!(!s.contains(&secret), "host secret leaked: {s}");
    assert!(s.contains("EXPLICIT_VAR=given"), "{s}");
    assert!(s.contains("HOME=/home/agent"), "{s}");
    let names: Vec<&str> = s
        .lines()
        .take_while(|l| l.contains('='))
        .filter_map(|l| l.split_once('=').map(|(n, _)| n))
        .collect();
    for name in &names {
        // The engine sets these in every container, to values of its own: the container's
        // name, and (Podman) what runs it.
        let engines = [("HOSTNAME", "agp-sandbox"), ("container", "podman")];
        if let Some((n, v)) = engines.iter().find(|(n, _)| n == name) {
            assert!(p.is_container(), "{name} under bubblewrap: {s}");
            assert!(s.contains(&format!("{n}={v}\n")), "{s}");
            continue;
        }
        assert!(
            [
                "PATH",
                "HOME",
                "TMPDIR",
                "SHELL",
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
                "EXPLICIT_VAR",
                "PWD",
                "SHLVL",
                "_",
            ]
            .contains(name),
            "unexpected variable {name} inside: {s}"
        );
    }
}
