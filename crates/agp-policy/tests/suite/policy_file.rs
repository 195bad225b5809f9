//! The policy in force protects its own file: a running daemon reloads it, so a call that
//! writes it (or a link of its symlink chain) would choose the rules. Every way of writing a
//! file the engine sees (the file tools, redirections, copy and move targets, links) is denied,
//! through any link of the chain, and the rules' own allows cannot lift it.

use super::support::World;

use agp_contracts::{Decision, PolicyEngine, Verdict};
use agp_policy::{Policy, ReloadablePolicy};
use serde_json::json;

/// Allows every edit and the shell commands below: only a guard can refuse them.
const PERMISSIVE: &str = r#"
default = "require"
[[rule]]
id = "anything"
effect = "allow"
match = ["Edit(//**)", "Read(//**)", "Bash(echo *)", "Bash(cp *)", "Bash(mv *)", "Bash(ln *)", "Bash(tee *)", "Bash(sed *)", "Bash(truncate *)"]
"#;

/// A world whose policy is `<tmp>/team/strict.toml`, in force through
/// `<home>/agp-policy.toml` -> `hop.toml` -> `../team/strict.toml` (a relative link).
struct PolicyWorld {
    w: World,
    link: std::path::PathBuf,
    hop: std::path::PathBuf,
    target: std::path::PathBuf,
}

fn world() -> PolicyWorld {
    let w = World::new();
    let team = w.project.parent().unwrap().join("team");
    std::fs::create_dir_all(&team).unwrap();
    let target = team.join("strict.toml");
    std::fs::write(&target, PERMISSIVE).unwrap();
    let hop = w.home.join("hop.toml");
    std::os::unix::fs::symlink("../team/strict.toml", &hop).unwrap();
    let link = w.home.join("agp-policy.toml");
    std::os::unix::fs::symlink(&hop, &link).unwrap();
    PolicyWorld {
        w,
        link,
        hop,
        target,
    }
}

fn denied_as_the_policy(v: &Verdict, what: &str) {
    assert_eq!(v.decision, Decision::Deny, "{what}: {v:?}");
    assert_eq!(v.rule_id.as_deref(), Some("agp-self"), "{what}: {v:?}");
    assert!(v.reason.contains("the policy in force"), "{what}: {v:?}");
}

#[test]
fn every_write_of_the_policy_file_or_a_link_of_its_chain_is_denied() {
    let pw = world();
    let p = Policy::load(&pw.link).unwrap();
    let w = &pw.w;
    for path in [&pw.link, &pw.hop, &pw.target] {
        let shown = path.display();
        for tool in ["Edit", "Write"] {
            let input = json!({"file_path": path, "old_string": "a", "new_string": "b", "content": "default = \"allow\""});
            let v = p.evaluate(&w.call(tool, input), &w.ctx);
            denied_as_the_policy(&v, &format!("{tool} {shown}"));
        }
        for command in [
            format!("echo 'default = \"allow\"' > {shown}"),
            format!("echo '[[rule]]' >> {shown}"),
            format!("cp /etc/hostname {shown}"),
            format!("mv src/main.rs {shown}"),
            format!("echo x | tee {shown}"),
            format!("sed -i s/deny/allow/ {shown}"),
            format!("cd / && echo x > {shown}"),
            format!("ln -sf /tmp/evil.toml {shown}"),
            format!("truncate -s 0 {shown}"),
        ] {
            denied_as_the_policy(&w.bash(&p, &command), &command);
        }
    }
    // Relative to the project (the home is its sibling here) and through `..`.
    denied_as_the_policy(
        &w.bash(&p, "echo x > ../team/strict.toml"),
        "a relative path",
    );
    denied_as_the_policy(
        &w.bash(&p, "echo x > src/../../home/agp-policy.toml"),
        "a path through ..",
    );
    // Reading it is not writing it, and the directory's other files are not the policy.
    let read = p.evaluate(&w.call("Read", json!({"file_path": pw.target})), &w.ctx);
    assert_eq!(read.decision, Decision::Allow, "{read:?}");
    let other = pw.target.with_file_name("draft.toml");
    let v = w.bash(&p, &format!("echo x > {}", other.display()));
    assert_eq!(v.decision, Decision::Allow, "{v:?}");
}

#[test]
fn a_policy_read_from_text_protects_no_file_and_a_reload_protects_the_new_chain() {
    let pw = world();
    let w = &pw.w;
    let from_text = Policy::from_str(PERMISSIVE, "inline.toml").unwrap();
    let v = w.bash(&from_text, &format!("echo x > {}", pw.target.display()));
    assert_eq!(v.decision, Decision::Allow, "{v:?}");

    let live = ReloadablePolicy::load(&pw.link).unwrap();
    // The link is pointed at another file: once reloaded, that file is the policy in force
    // and the old one is only a file.
    let next = pw.target.with_file_name("next.toml");
    std::fs::write(&next, format!("# next\n{PERMISSIVE}")).unwrap();
    let tmp = pw.w.home.join("hop.toml.new");
    std::os::unix::fs::symlink(&next, &tmp).unwrap();
    std::fs::rename(&tmp, &pw.hop).unwrap();
    live.reload().unwrap();
    let write = |path: &std::path::Path| {
        live.evaluate(
            &w.call("Write", json!({"file_path": path, "content": "x"})),
            &w.ctx,
        )
    };
    denied_as_the_policy(&write(&next), "the new target");
    denied_as_the_policy(&write(&pw.hop), "the retargeted link");
    assert_eq!(write(&pw.target).decision, Decision::Allow);
}

/// agp's own guard cannot be switched off, survives switching off protected-paths, and names
/// the verdict of a compound command even when another part is denied first: a daemon that
/// does not enforce the policy (shadow, observe) still finds and enforces it.
#[test]
fn agps_own_guard_cannot_be_switched_off_and_names_the_verdict() {
    let err = Policy::from_str(
        "default = \"allow\"\n[guards]\nagp-self = false\n",
        "policy.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("cannot be switched off"), "{err}");
    assert!(err.contains("policy.toml:3:"), "{err}");
    // Saying it is on is fine.
    Policy::from_str("[guards]\nagp-self = true\n", "policy.toml").unwrap();

    let w = World::new();
    let unguarded = Policy::from_str(
        "default = \"allow\"\n[guards]\n\"protected-paths\" = false\ndestructive = false\n\
         [[rule]]\nid = \"no-rm\"\neffect = \"deny\"\nmatch = [\"Bash(rm *)\"]\n",
        "policy.toml",
    )
    .unwrap();
    let keys = w.ctx.agp_home.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("journal.key"), "k").unwrap();
    for (command, what) in [
        (format!("cat {}/journal.key", keys.display()), "keys"),
        (
            format!("echo x > {}/config.toml", w.ctx.agp_home.display()),
            "agp's own home",
        ),
        (
            format!("rm -f x; cat {}/journal.key", keys.display()),
            "keys",
        ),
    ] {
        let v = w.bash(&unguarded, &command);
        assert_eq!(v.decision, Decision::Deny, "{command}: {v:?}");
        assert_eq!(v.rule_id.as_deref(), Some("agp-self"), "{command}: {v:?}");
        assert!(v.reason.contains(what), "{command}: {v:?}");
    }
    // Reading agp's home (not its keys) needs a human, still from agp's own guard.
    let v = w.bash(
        &unguarded,
        &format!("cat {}/config.toml", w.ctx.agp_home.display()),
    );
    assert_eq!(v.decision, Decision::Require, "{v:?}");
    assert_eq!(v.rule_id.as_deref(), Some("agp-self"), "{v:?}");
}
