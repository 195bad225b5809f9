//! A new egress destination decided by a human: the real Claude Code under `agp run` runs curl
//! in its sandbox to a host no rule or allowlist covers; the request waits on the session's
//! approval channel (the scripted approver), goes out when approved and is refused when denied.

use super::support::agents as agents_support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use agents_support::*;
use agp_testkit::{FakeModel, Turn};

/// An HTTP upstream on loopback recording each request line and answering with it.
fn upstream() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let line = String::from_utf8_lossy(&buf)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            log.lock().unwrap().push(line.clone());
            let body = format!("upstream saw {line}");
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, seen)
}

/// A world whose policy lets the agent run curl (egress is the proxy's to judge) and where
/// `localhost` is an internal service (it resolves to loopback) on no allowlist and in no rule:
/// every request to it is a new destination.
fn curl_world() -> World {
    let world = World::new();
    let policy = format!(
        "{POLICY}\n[[rule]]\nid = \"curl\"\neffect = \"allow\"\nmatch = [\"Bash(curl *)\"]\n\
         reason = \"egress is judged by the proxy\"\n"
    );
    std::fs::write(&world.policy, policy).unwrap();
    let config = world.home.join("config.toml");
    let mut toml = std::fs::read_to_string(&config).unwrap_or_default();
    toml.push_str("\n[egress]\nprivate = [\"localhost\"]\n");
    std::fs::write(&config, toml).unwrap();
    world
}

#[test]
fn claude_code_new_destination_approved_then_denied_via_the_scripted_approver() {
    let Some(claude) = claude() else { return };
    let world = curl_world();
    let (port, seen) = upstream();
    let curl = |path: &str| format!("curl -sS -i http://localhost:{port}{path}");
    let model = FakeModel::anthropic(vec![
        Turn::Shell(curl("/approved")),
        Turn::Shell(curl("/denied")),
        Turn::Text("finished".into()),
    ])
    .unwrap();
    let url = model.base_url();
    let claude = claude.display().to_string();
    let env = [
        ("ANTHROPIC_BASE_URL", url.as_str()),
        ("ANTHROPIC_API_KEY", "sk-test-not-a-real-key"),
        ("AGP_CLAUDE_BIN", claude.as_str()),
    ];
    let out = world.run("claude-code", &env, "allow\ndeny not that path\n");
    assert_ran(&out);
    let j = world.journal();

    // The upstream got the approved request only.
    assert_eq!(
        *seen.lock().unwrap(),
        ["GET /approved HTTP/1.1"],
        "{}",
        text(&out.stderr)
    );
    let results = model.tool_results();
    let told = result_for(&results, "toolu_fake_1");
    assert!(told.contains("upstream saw GET /approved"), "{told}");
    let told = result_for(&results, "toolu_fake_2");
    assert!(told.contains("403"), "{told}");
    assert!(told.contains("not that path"), "{told}");

    // Two egress approvals, each bound to its own call id and hash, outcomes journaled.
    let asked = of_kind(&j, "approval.requested");
    let egress: Vec<_> = asked
        .iter()
        .filter(|e| e["body"]["tool"] == "agp:egress")
        .collect();
    assert_eq!(egress.len(), 2, "{asked:#?}");
    let id = |n: usize| egress[n]["body"]["call_id"].as_str().unwrap().to_owned();
    assert_eq!(of_call(&j, "approval.granted", &id(0)).len(), 1);
    let denied = of_call(&j, "approval.denied", &id(1));
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["body"]["reason"], "not that path");
    assert!(j.iter().any(|e| e["kind"] == "egress.allowed"
        && e["body"]["host"] == "localhost"
        && e["body"]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("approved"))));
    assert!(j.iter().any(|e| e["kind"] == "egress.denied"
        && e["body"]["host"] == "localhost"
        && e["body"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not that path"))));
    world.assert_verified();
}

/// The same through (the fake) Slack: Bob denies the first request; Alice allows the host for
/// the session on the second, so the third is not asked about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_new_destination_decided_in_slack() {
    use super::agents_slack::{agp_run, fake_slack, wait_success};
    use agp_slack::fake::PostedMessage;
    use std::time::Duration;

    let Some(claude) = claude() else { return };
    let world = curl_world();
    let slack = fake_slack().await;
    let (port, seen) = upstream();
    let curl = |path: &str| format!("curl -sS -i http://localhost:{port}{path}");
    let model = FakeModel::anthropic(vec![
        Turn::Shell(curl("/denied")),
        Turn::Shell(curl("/approved")),
        Turn::Shell(curl("/again")),
        Turn::Text("finished".into()),
    ])
    .unwrap();
    let child = agp_run(
        &world,
        &slack,
        &["--intendant", "claude-code", "--task", "fetch three pages"],
    )
    .env("AGP_CLAUDE_BIN", &claude)
    .env("ANTHROPIC_BASE_URL", model.base_url())
    .env("ANTHROPIC_API_KEY", "sk-test-not-a-real-key")
    .spawn()
    .unwrap();

    let target = |path: &str| format!("GET localhost:{port}{path}");
    for (path, user, action) in [
        ("/denied", "UBOB", "agp_deny"),
        ("/approved", "UALICE", "agp_allow_session"),
    ] {
        let shown = target(path);
        let msg = slack
            .wait_message(Duration::from_secs(120), |m: &PostedMessage| {
                m.has_buttons() && m.all_text().contains(&shown)
            })
            .await
            .unwrap_or_else(|| panic!("{shown} never reached Slack: {:?}", slack.messages()));
        let text = msg.all_text();
        assert!(text.contains("Egress request"), "{text}");
        assert!(text.contains("Allow this host for the session"), "{text}");
        // The agent's recent call: the curl that made this request.
        assert!(text.contains(&curl(path)), "{text}");
        assert!(slack.wait_hellos(1, Duration::from_secs(30)).await);
        slack.click(user, &msg.ts, action).unwrap();
    }
    wait_success(child).await;
    assert_eq!(model.remaining_turns(), 0, "the agent stopped early");

    assert_eq!(
        *seen.lock().unwrap(),
        ["GET /approved HTTP/1.1", "GET /again HTTP/1.1"]
    );
    let j = world.journal();
    let egress_asked: Vec<_> = of_kind(&j, "approval.requested")
        .into_iter()
        .filter(|e| e["body"]["tool"] == "agp:egress")
        .collect();
    assert_eq!(
        egress_asked.len(),
        2,
        "the host allowed for the session was asked again"
    );
    let granted = of_kind(&j, "approval.granted");
    assert_eq!(granted.len(), 2, "{granted:#?}");
    assert_eq!(granted[0]["body"]["by"][0]["id"], "UALICE");
    assert_eq!(granted[1]["body"]["remembered"], true);
    assert_eq!(of_kind(&j, "approval.remembered").len(), 1);
    let denied = of_kind(&j, "approval.denied");
    assert_eq!(denied.len(), 1);
    assert!(denied[0]["body"].to_string().contains("UBOB"));
    let told = result_for(&model.tool_results(), "toolu_fake_1");
    assert!(told.contains("403"), "{told}");
    world.assert_verified();
}
