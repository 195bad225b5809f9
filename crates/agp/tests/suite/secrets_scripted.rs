//! `{{secret:NAME}}` in the scripted intendant's Bash commands, with the real binary and the
//! real bubblewrap sandbox: the policy and the journal see the placeholder, the command inside
//! the sandbox gets the value (from agp's secrets.toml or `AGP_SECRET_<NAME>`), the output is
//! redacted of it, and a name that is not a secret is refused, not run.

use std::os::unix::fs::PermissionsExt;

use serde_json::Value;

use super::support::looping::{agp_detached, bash_calls_yaml, git_world, journal};

const POLICY: &str = r#"
version = 1
default = "deny"

[[rule]]
id = "tools"
effect = "allow"
match = ["Bash(echo *)", "Bash(python3 *)"]
reason = "what the test runs"

[[rule]]
id = "write-project"
effect = "allow"
match = ["Edit(/**)"]
reason = "writing inside the project"
"#;

/// Prints the SHA-256 of its argument, or of the variable `-e NAME` names.
const HASH_PY: &str = "import hashlib, os, sys\n\
v = os.environ[sys.argv[2]] if sys.argv[1] == '-e' else sys.argv[1]\n\
print('sha', hashlib.sha256(v.encode()).hexdigest())\n\
print('value', v)\n";

const FILE_VALUE: &str = "ghp_from-the-file-0123456789";
const ENV_VALUE: &str = "env-secret-value-9876543210";

fn sha256(s: &str) -> String {
    agp_contracts::canonical::sha256_hex(s.as_bytes())
}

#[test]
fn placeholders_resolve_inside_the_sandbox_only_and_output_is_redacted() {
    let w = git_world();
    let secrets = w.home.join("secrets.toml");
    std::fs::write(&secrets, format!("TOKEN = \"{FILE_VALUE}\"\n")).unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let policy = w.file("policy.toml", POLICY);
    std::fs::write(w.repo.join("hash.py"), HASH_PY).unwrap();
    let commands = [
        // 1: the value reaches the command (its hash comes back), and only there
        "python3 hash.py \"{{secret:TOKEN}}\"".to_owned(),
        // 2: echoed back, it is redacted
        "echo \"token={{secret:TOKEN}}\"".to_owned(),
        // 3: from agp's environment; the variable holds it inside, redacted on the way out
        "echo {{secret:FROM_ENV}} && python3 hash.py -e AGP_SECRET_FROM_ENV".to_owned(),
        // 4: a name that is not a secret (agp's own environment holds HOME): refused, not run
        "echo {{secret:HOME}} > leaked.txt".to_owned(),
        // 5: a malformed placeholder: refused, not run as text
        "echo {{secret:TOKEN > leaked.txt".to_owned(),
    ];
    let script = w.file("script.yaml", &bash_calls_yaml(&commands));
    let out = agp_detached(&w.home, &w.user_home)
        .args(["run", "--intendant", "scripted", "--script"])
        .arg(&script)
        .arg("--repo")
        .arg(&w.repo)
        .arg("--policy")
        .arg(&policy)
        .env("AGP_SECRET_FROM_ENV", ENV_VALUE)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for value in [FILE_VALUE, ENV_VALUE] {
        assert!(
            !stdout.contains(value) && !stderr.contains(value),
            "{stdout}{stderr}"
        );
    }

    let j = journal(&w.home);
    let text = serde_json::to_string(&j).unwrap();
    assert!(
        !text.contains(FILE_VALUE) && !text.contains(ENV_VALUE),
        "the journal holds a value"
    );
    let requested: Vec<&Value> = j
        .iter()
        .filter(|e| e["kind"] == "tool_call.requested")
        .collect();
    assert_eq!(requested.len(), commands.len(), "{j:#?}");
    for (r, c) in requested.iter().zip(&commands) {
        assert_eq!(
            r["body"]["input"]["command"],
            c.as_str(),
            "the placeholder is journaled"
        );
    }
    let results: Vec<&Value> = j
        .iter()
        .filter(|e| e["kind"] == "tool_call.result")
        .map(|e| &e["body"])
        .collect();
    let output = |i: usize| results[i]["output"].as_str().unwrap_or_default().to_owned();
    assert_eq!(results.len(), commands.len(), "{j:#?}");
    assert_eq!(
        output(0),
        format!("sha {}\nvalue [secret:TOKEN]\n", sha256(FILE_VALUE))
    );
    assert_eq!(output(1), "token=[secret:TOKEN]\n");
    assert_eq!(
        output(2),
        format!(
            "[secret:FROM_ENV]\nsha {}\nvalue [secret:FROM_ENV]\n",
            sha256(ENV_VALUE)
        )
    );
    for i in [3, 4] {
        assert_eq!(results[i]["ok"], false, "{:#}", results[i]);
        let err = results[i]["error"].as_str().unwrap_or_default();
        assert!(err.contains("secret"), "{err}");
    }
    assert!(results[3]["error"]
        .as_str()
        .unwrap()
        .contains("HOME is not set"));
    assert!(!w.repo.join("leaked.txt").exists());
    // Output hashes are of the redacted output: nothing derived from a value is journaled.
    assert_eq!(
        results[1]["output_sha256"],
        sha256("token=[secret:TOKEN]\n").as_str()
    );
}
