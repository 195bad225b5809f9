//! Model keys stay outside the sandbox: the real Claude Code and Codex, against fake model
//! servers over HTTPS (signed by a test CA the proxy is told to trust for upstreams), get a
//! placeholder in their environment; agp's egress proxy terminates their TLS with the session
//! CA they trust and puts the real key on each request to the model host. The server receives
//! the real key; `env`, `/proc/*/environ` and the files the sandbox can read never hold it,
//! and neither does anything the agent told the model or the journal.

use super::support::agents as agents_support;

use agents_support::*;
use agp_testkit::tls::TestCa;
use agp_testkit::{Api, FakeModel, Turn};
use serde_json::Value;

/// Run inside the sandbox by the agent's shell tool: prints its environment as `env` and
/// `/proc/*/environ` show it, and the files under the places a key could be left in that hold
/// the real key's marker (built at run time, so this script is not itself a hit).
const LEAK_SCRIPT: &str = r#"import os, subprocess
marker = "sk-" + "real" + "-"
print("ENV>>", subprocess.run(["env"], capture_output=True, text=True).stdout)
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            data = open("/proc/%s/environ" % pid, "rb").read().decode(errors="replace")
            print("PROC %s>>" % pid, data.replace("\0", " "))
        except OSError:
            pass
scanned = 0
for top in [os.environ.get("HOME", "/home/agent"), "/tmp", "/var/tmp", "/etc", "/run", os.getcwd()]:
    for root, dirs, files in os.walk(top):
        for f in files:
            p = os.path.join(root, f)
            try:
                if marker.encode() in open(p, "rb").read(1 << 22):
                    print("FOUND", p)
                scanned += 1
            except OSError:
                pass
print("scanned", scanned, "files")
"#;

/// Run inside the sandbox: a request of its own to the model host (through the proxy from
/// HTTPS_PROXY), with no credential of its own, and without the CA variables: the system
/// bundle inside (agp's combined bundle bound over it) is what trusts the session CA.
const POST_SCRIPT: &str = r#"import json, os, urllib.request
for v in ["SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"]:
    os.environ.pop(v, None)
req = urllib.request.Request(os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages", method="POST",
    data=json.dumps({"model": "from-the-sandbox", "messages": []}).encode(),
    headers={"content-type": "application/json"})
print("status", urllib.request.urlopen(req, timeout=20).status)
"#;

/// The key the user has on the host: unique to this run, recognisable by its marker.
fn real_key() -> String {
    format!(
        "sk-real-{}",
        agp_contracts::canonical::sha256_hex(
            format!("{:?}{}", std::time::SystemTime::now(), std::process::id()).as_bytes()
        )
        .get(..32)
        .unwrap_or_default()
    )
}

/// A world whose agp config trusts `ca` for upstreams, with the leak script in the repository.
fn world_trusting(ca: &TestCa) -> World {
    let world = World::new();
    let ca_file = world.file("upstream-ca.pem", &ca.ca_pem);
    let config = world.home.join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap_or_default();
    text.push_str(&format!(
        "\n[egress]\nupstream_ca = [{:?}]\n",
        ca_file.display().to_string()
    ));
    std::fs::write(&config, text).unwrap();
    std::fs::write(world.repo.join("leak.py"), LEAK_SCRIPT).unwrap();
    std::fs::write(world.repo.join("post.py"), POST_SCRIPT).unwrap();
    world
}

/// What a session must show: the agent ran both calls; every request the model server got
/// carried the real key in `header`; what the agent told it holds the placeholder it saw and
/// never the real key; the journal names the credential on each injected request and never
/// holds its value.
fn check_outside(
    world: &World,
    model: &FakeModel,
    out: &std::process::Output,
    key: &str,
    var: &str,
    header: &str,
    sent: &str,
) {
    let stdout = assert_ran(out);
    assert_eq!(
        model.remaining_turns(),
        0,
        "the agent stopped early: {stdout}"
    );
    let requests = model.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        let got: Vec<&str> = r
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(header))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(got, [sent], "{} {}: {:?}", r.method, r.path, r.headers);
        let body = r.body.to_string();
        assert!(!body.contains(key), "the model was told the key: {body}");
        assert!(!body.contains("sk-real-"), "{body}");
    }
    let told: String = model
        .tool_results()
        .iter()
        .map(|(_, t, _)| t.clone())
        .collect::<Vec<_>>()
        .join("\n");
    let placeholder = format!("agp-placeholder-{var}");
    assert!(
        told.contains(&format!("{var}={placeholder}")),
        "env inside shows the placeholder: {told}"
    );
    assert!(told.contains("PROC "), "/proc/*/environ was read: {told}");
    assert!(told.contains(" files"), "the file scan ran: {told}");
    assert!(
        !told.contains("FOUND"),
        "a file inside holds the key: {told}"
    );
    assert!(!told.contains(key) && !told.contains("sk-real-"), "{told}");

    let j = world.journal();
    let text = serde_json::to_string(&j).unwrap();
    assert!(!text.contains(key), "the journal holds the key");
    let injected: Vec<&Value> = of_kind(&j, "egress.request")
        .into_iter()
        .filter(|e| {
            e["body"]["credentials"]
                .as_array()
                .is_some_and(|c| c.iter().any(|n| n == var))
        })
        .collect();
    assert!(
        !injected.is_empty(),
        "no journaled request names the credential: {:#?}",
        of_kind(&j, "egress.request")
    );
    world.assert_verified();
}

#[test]
fn claude_code_model_key_and_credentials_stay_outside_the_sandbox() {
    let Some(client) = claude_at(CLAUDE_VERSION) else {
        return;
    };
    let ca = TestCa::new().unwrap();
    let world = world_trusting(&ca);
    let turns = vec![
        Turn::Shell("python3 leak.py".into()),
        Turn::Shell("python3 post.py".into()),
        Turn::Text("finished".into()),
    ];
    let model = FakeModel::start_tls(Api::Anthropic, turns, ca.server.clone()).unwrap();
    let key = real_key();
    let url = model.base_url();
    assert!(url.starts_with("https://"));
    // A secret of the user's, set by `[[egress.credential]]` on every request to the host.
    let extra = real_key();
    let config = world.home.join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[[egress.credential]]\nhost = \"{}\"\nheader = \"X-Team-Credential\"\n\
         value = \"Team {{{{secret:TEAM}}}}\"\n",
        model.addr()
    ));
    std::fs::write(&config, text).unwrap();
    let (var, exe) = Via::NativeVar("AGP_CLAUDE_BIN").env(&client);
    let env = [
        ("ANTHROPIC_BASE_URL", url.as_str()),
        ("ANTHROPIC_API_KEY", key.as_str()),
        ("AGP_SECRET_TEAM", extra.as_str()),
        (var, exe.as_str()),
    ];
    let out = world.run("claude-code", &env, "");
    // The sandbox's own request got the credential it never had, as did the agent's.
    let requests = model.requests();
    let own: Vec<_> = requests
        .iter()
        .filter(|r| r.body["model"] == "from-the-sandbox")
        .collect();
    assert_eq!(
        own.len(),
        1,
        "{}{}{:#?}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        model.tool_results()
    );
    let team = format!("Team {extra}");
    for r in &requests {
        assert!(
            r.headers
                .iter()
                .any(|(n, v)| n.eq_ignore_ascii_case("x-team-credential") && *v == team),
            "{:?}",
            r.headers
        );
    }
    let told = format!("{:?}", model.tool_results());
    assert!(told.contains("status 200"), "{told}");
    assert!(!told.contains(&extra), "{told}");
    let journal = serde_json::to_string(&world.journal()).unwrap();
    assert!(!journal.contains(&extra));
    assert!(
        journal.contains("\"TEAM\""),
        "the credential's name is journaled"
    );
    check_outside(
        &world,
        &model,
        &out,
        &key,
        "ANTHROPIC_API_KEY",
        "x-api-key",
        &key,
    );
}

#[test]
fn codex_provider_key_stays_outside_the_sandbox() {
    let Some(client) = codex_at(CODEX_VERSION) else {
        return;
    };
    let ca = TestCa::new().unwrap();
    let world = world_trusting(&ca);
    let turns = vec![
        Turn::Shell("python3 leak.py".into()),
        Turn::Text("finished".into()),
    ];
    let model = FakeModel::start_tls(Api::OpenAiResponses, turns, ca.server.clone()).unwrap();
    let key = real_key();
    let home = codex_home_with_fake_provider(&world, &model, "");
    let home = home.display().to_string();
    let (var, exe) = Via::NativeVar("AGP_CODEX_BIN").env(&client);
    let env = [
        ("CODEX_HOME", home.as_str()),
        ("FAKE_API_KEY", key.as_str()),
        (var, exe.as_str()),
    ];
    let out = world.run("codex", &env, "");
    check_outside(
        &world,
        &model,
        &out,
        &key,
        "FAKE_API_KEY",
        "authorization",
        &format!("Bearer {key}"),
    );
}

/// `codex login --with-api-key` leaves the key in `auth.json`: the sandbox sees a copy with the
/// placeholder, and the key is added from outside, as for a variable.
#[test]
fn codex_api_key_login_stays_outside_the_sandbox() {
    let Some(client) = codex_at(CODEX_VERSION) else {
        return;
    };
    let ca = TestCa::new().unwrap();
    let world = world_trusting(&ca);
    let turns = vec![
        Turn::Shell("python3 leak.py".into()),
        Turn::Text("finished".into()),
    ];
    let model = FakeModel::start_tls(Api::OpenAiResponses, turns, ca.server.clone()).unwrap();
    let key = real_key();
    let home = world.new_dir("codex-home");
    std::fs::write(
        home.join("config.toml"),
        format!(
            "model = \"gpt-fake\"\nmodel_provider = \"fake\"\n\n[model_providers.fake]\n\
             name = \"fake\"\nbase_url = \"{}\"\nwire_api = \"responses\"\nrequires_openai_auth = true\n",
            model.base_url()
        ),
    )
    .unwrap();
    let auth = home.join("auth.json");
    std::fs::write(
        &auth,
        format!("{{\"OPENAI_API_KEY\": \"{key}\", \"tokens\": null, \"last_refresh\": null}}"),
    )
    .unwrap();
    std::fs::set_permissions(&auth, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let home = home.display().to_string();
    let (var, exe) = Via::NativeVar("AGP_CODEX_BIN").env(&client);
    let out = world.run(
        "codex",
        &[("CODEX_HOME", home.as_str()), (var, exe.as_str())],
        "",
    );
    check_outside(
        &world,
        &model,
        &out,
        &key,
        "OPENAI_API_KEY",
        "authorization",
        &format!("Bearer {key}"),
    );
    // The user's own file is untouched.
    assert!(std::fs::read_to_string(&auth).unwrap().contains(&key));
}
