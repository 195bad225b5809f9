//! Evaluation of whole calls: tool inputs, verdict contents, precedence, guards, symlinks.

use super::support as common;

use agp_contracts::{Decision, PolicyEngine, Verdict};
use agp_policy::Policy;
use common::World;
use serde_json::{json, Value};

fn policy(text: &str) -> Policy {
    Policy::from_str(text, "test.toml").expect("policy loads")
}

fn eval(p: &Policy, w: &World, tool: &str, input: Value) -> Verdict {
    p.evaluate(&w.call(tool, input), &w.ctx)
}

fn bash(p: &Policy, w: &World, command: &str) -> Verdict {
    eval(p, w, "Bash", json!({ "command": command }))
}

const RULES: &str = r#"
default = "require"
[[rule]]
id = "allow-git"
effect = "allow"
match = ["Bash(git *)"]
[[rule]]
id = "no-git-push"
effect = "deny"
match = ["Bash(git push *)"]
reason = "no pushing from agents"
[[rule]]
id = "ask-npm"
effect = "require"
match = ["Bash(npm:*)"]
approvers = ["alice", "bob", "carol"]
quorum = 2
remember = "10m"
[[rule]]
id = "allow-npm-test"
effect = "allow"
match = ["Bash(npm test)"]
[[rule]]
id = "read-src"
effect = "allow"
match = ["Read(/src/**)"]
[[rule]]
id = "no-env"
effect = "deny"
match = ["Read(.env)"]
[[rule]]
id = "edit-src"
effect = "allow"
match = ["Edit(/src/**)"]
[[rule]]
id = "docs"
effect = "allow"
match = ["WebFetch(domain:docs.rs)", "WebFetch(domain:*.rust-lang.org)"]
[[rule]]
id = "gh"
effect = "allow"
match = ["mcp__github__*"]
"#;

#[test]
fn precedence_is_deny_then_require_then_allow() {
    let w = World::new();
    let p = policy(RULES);
    let v = bash(&p, &w, "git push origin main");
    assert_eq!(v.decision, Decision::Deny);
    assert_eq!(v.rule_id.as_deref(), Some("no-git-push"));
    assert_eq!(v.reason, "no pushing from agents");
    // A later, more specific allow does not beat an earlier require.
    let v = bash(&p, &w, "npm test");
    assert_eq!(v.decision, Decision::Require);
    assert_eq!(v.rule_id.as_deref(), Some("ask-npm"));
    let spec = v.approval.expect("approval spec for require");
    assert_eq!(spec.quorum, 2);
    assert_eq!(spec.approvers, ["alice", "bob", "carol"]);
    assert_eq!(spec.remember_secs, Some(600));
    assert_eq!(v.policy_sha256, p.sha256());
    assert_eq!(v.policy_sha256.len(), 64);
}

#[test]
fn compound_commands_need_every_part_allowed() {
    let w = World::new();
    let p = policy(RULES);
    let v = bash(&p, &w, "git status && git log");
    assert_eq!(v.decision, Decision::Allow);
    assert_eq!(v.parts.len(), 2);
    let v = bash(&p, &w, "git status && docker ps");
    assert_eq!(v.decision, Decision::Require);
    assert_eq!(v.deciding_part.as_deref(), Some("docker ps"));
    assert_eq!(v.rule_id, None, "the default decided");
    assert!(v
        .parts
        .iter()
        .any(|f| f.part == "git status" && f.decision == Decision::Allow));
    let v = bash(&p, &w, "git status; git push");
    assert_eq!(v.decision, Decision::Deny);
    assert_eq!(v.deciding_part.as_deref(), Some("git push"));
}

#[test]
fn file_tools_use_path_rules_and_canonical_paths() {
    let w = World::new();
    let p = policy(RULES);
    let src = w.project.join("src/main.rs");
    assert_eq!(
        eval(&p, &w, "Read", json!({"file_path": src})).decision,
        Decision::Allow
    );
    assert_eq!(
        eval(
            &p,
            &w,
            "Read",
            json!({"file_path": w.project.join("src/../.env")})
        )
        .decision,
        Decision::Deny,
        "`..` is resolved before matching"
    );
    assert_eq!(
        eval(&p, &w, "Read", json!({"file_path": "src/main.rs"})).decision,
        Decision::Allow
    );
    assert_eq!(
        eval(
            &p,
            &w,
            "Edit",
            json!({"file_path": src, "old_string": "a", "new_string": "b"})
        )
        .decision,
        Decision::Allow
    );
    assert_eq!(
        eval(
            &p,
            &w,
            "Write",
            json!({"file_path": w.project.join("Cargo.toml"), "content": ""})
        )
        .decision,
        Decision::Require
    );
    // A symlink inside src/ that points at a credential is judged as the credential.
    std::os::unix::fs::symlink(
        w.home.join(".ssh/id_rsa"),
        w.project.join("src/innocent.txt"),
    )
    .unwrap();
    let v = eval(
        &p,
        &w,
        "Read",
        json!({"file_path": w.project.join("src/innocent.txt")}),
    );
    assert_eq!(v.decision, Decision::Require, "{v:?}");
    assert_eq!(v.rule_id.as_deref(), Some("protected-paths"));
    // A symlinked directory cannot smuggle a write into .git/hooks.
    std::os::unix::fs::symlink(w.project.join(".git/hooks"), w.project.join("src/h")).unwrap();
    let v = eval(
        &p,
        &w,
        "Write",
        json!({"file_path": w.project.join("src/h/pre-commit"), "content": "x"}),
    );
    assert_eq!(v.decision, Decision::Deny, "{v:?}");
    let v = bash(&p, &w, "echo x > src/h/pre-commit");
    assert_eq!(v.decision, Decision::Deny, "{v:?}");
}

#[test]
fn shell_reads_obey_read_rules() {
    let w = World::new();
    let p = policy(RULES);
    // Claude Code's own `Read(.env)` rule is bypassed by `cat .env`; agp's is not.
    for cmd in [
        "git show HEAD:.env > /dev/null; git diff .env",
        "git diff < .env",
    ] {
        let v = bash(&p, &w, cmd);
        assert_eq!(v.decision, Decision::Deny, "{cmd}: {v:?}");
        assert_eq!(v.rule_id.as_deref(), Some("no-env"), "{cmd}");
    }
}

#[test]
fn webfetch_mcp_and_other_tools() {
    let w = World::new();
    let p = policy(RULES);
    let f = |url: &str| eval(&p, &w, "WebFetch", json!({"url": url, "prompt": "x"})).decision;
    assert_eq!(f("https://docs.rs/serde"), Decision::Allow);
    assert_eq!(f("https://doc.rust-lang.org/std"), Decision::Allow);
    assert_eq!(f("https://docs.rs.evil.example/x"), Decision::Require);
    assert_eq!(f("file:///etc/passwd"), Decision::Require);
    assert_eq!(
        eval(&p, &w, "mcp__github__create_issue", json!({"title": "x"})).decision,
        Decision::Allow
    );
    assert_eq!(
        eval(&p, &w, "mcp__slack__post", json!({})).decision,
        Decision::Require
    );
    assert_eq!(
        eval(&p, &w, "WebSearch", json!({"query": "rust"})).decision,
        Decision::Require
    );
}

#[test]
fn malformed_inputs_are_denied() {
    let w = World::new();
    let p = policy(RULES);
    for (tool, input) in [
        ("Bash", json!({"command": ["git", "status"]})),
        ("Bash", json!({"command": ""})),
        ("Bash", json!({})),
        ("Read", json!({"file_path": 7})),
        ("Edit", json!({"file_path": "x", "old_string": "a"})),
        ("WebFetch", json!("https://docs.rs")),
    ] {
        let v = eval(&p, &w, tool, input.clone());
        assert_eq!(v.decision, Decision::Deny, "{tool} {input}");
        assert_eq!(v.rule_id.as_deref(), Some("schema"));
    }
    let v = bash(&p, &w, "");
    assert!(
        v.reason.contains("`command` must be a non-empty string"),
        "{}",
        v.reason
    );
}

#[test]
fn secrets_are_denied_and_never_echoed() {
    let w = World::new();
    let p = policy(RULES);
    let token = format!("ghp_{}", "Zx9".repeat(12));
    let v = bash(
        &p,
        &w,
        &format!("git remote set-url origin https://x:{token}@github.com/a/b"),
    );
    assert_eq!(v.decision, Decision::Deny);
    assert_eq!(v.rule_id.as_deref(), Some("secrets"));
    assert!(v.reason.contains("reference"), "{}", v.reason);
    let all = serde_json::to_string(&v).unwrap();
    assert!(!all.contains(&token), "verdict leaks the secret: {all}");
}

#[test]
fn guards_can_be_switched_off_by_id() {
    let w = World::new();
    let on = policy("[[rule]]\nid = \"net\"\neffect = \"allow\"\nmatch = [\"Bash(nc *)\"]\n");
    let v = bash(&on, &w, "nc example.com 80");
    assert_eq!(
        v.decision,
        Decision::Allow,
        "an allow rule satisfies the egress guard"
    );
    let v = bash(&on, &w, "npm install lodash");
    assert_eq!(v.rule_id.as_deref(), Some("supply-chain"));
    assert!(v.reason.contains("lodash"), "{}", v.reason);
    let off =
        policy("default = \"allow\"\n[guards]\nsupply-chain = false\nnetwork-egress = false\n");
    assert_eq!(
        bash(&off, &w, "npm install lodash").decision,
        Decision::Allow
    );
    assert_eq!(
        bash(&off, &w, "curl https://example.com").decision,
        Decision::Allow
    );
    assert_eq!(
        bash(&off, &w, "rm -rf /").decision,
        Decision::Deny,
        "other guards stay on"
    );
    let typo = bash(&on, &w, "pip install reqeusts");
    assert!(
        typo.reason
            .contains("LIKELY TYPOSQUAT of the popular `requests`"),
        "{}",
        typo.reason
    );
}

#[test]
fn curl_hosts_follow_webfetch_domain_rules() {
    let w = World::new();
    let p = policy(
        "[[rule]]\nid = \"curl\"\neffect = \"allow\"\nmatch = [\"Bash(curl *)\"]\n\
         [[rule]]\nid = \"bad\"\neffect = \"deny\"\nmatch = [\"WebFetch(domain:evil.example)\"]\n",
    );
    assert_eq!(
        bash(&p, &w, "curl https://docs.rs").decision,
        Decision::Allow
    );
    let v = bash(&p, &w, "curl https://evil.example/x");
    assert_eq!(v.decision, Decision::Deny);
    assert_eq!(v.rule_id.as_deref(), Some("bad"));
    let p2 = policy(
        "[[rule]]\nid = \"docs\"\neffect = \"allow\"\nmatch = [\"WebFetch(domain:docs.rs)\"]\n",
    );
    let v = bash(&p2, &w, "curl https://docs.rs/x");
    assert_eq!(
        v.rule_id, None,
        "egress waived by the domain rule; the command itself falls to the default"
    );
}

#[test]
fn default_deny_applies_to_what_cannot_be_judged() {
    let w = World::new();
    let p = policy("default = \"deny\"\n[[rule]]\nid = \"all\"\neffect = \"allow\"\nmatch = [\"Bash(echo *)\"]\n");
    assert_eq!(bash(&p, &w, "echo hi").decision, Decision::Allow);
    assert_eq!(bash(&p, &w, "eval 'echo hi'").decision, Decision::Deny);
    assert_eq!(bash(&p, &w, "ls").decision, Decision::Deny);
}

#[test]
fn glob_patterns_reaching_outside_are_judged_where_they_reach() {
    let w = World::new();
    let p = policy("[[rule]]\nid = \"r\"\neffect = \"allow\"\nmatch = [\"Read(/**)\"]\n");
    let g = |pattern: &str| eval(&p, &w, "Glob", json!({ "pattern": pattern })).decision;
    assert_eq!(g("src/**/*.rs"), Decision::Allow);
    assert_eq!(g("/etc/*"), Decision::Require);
    assert_eq!(g("/e*"), Decision::Require);
    assert_eq!(g("../../*"), Decision::Require);
    let v = eval(
        &p,
        &w,
        "Grep",
        json!({ "pattern": "x", "path": w.home.join(".ssh") }),
    );
    assert_eq!(v.rule_id.as_deref(), Some("protected-paths"), "{v:?}");
}
