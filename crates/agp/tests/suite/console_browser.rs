//! The web console in a real browser: Debian's headless Chromium, driven over WebDriver by
//! ChromeDriver (`agp_testkit::browser`), opens the console of a running daemon, watches a
//! scripted session's call that needs a human appear on the approvals page without a reload
//! (the page's server-sent events), clicks Allow, and watches the session's timeline (open in
//! a second tab, also never reloaded) show the call approved via web and run. A screenshot of
//! the timeline is written to `target/console/timeline.png` for a reader of the closing note.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::error::{CmdError, ErrorStatus};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

use super::support::console::{start_console, CONSOLE_POLICY};
use super::support::daemon::mkfifo;
use super::support::looping::{bash_calls_yaml, journal, policy_world, start_daemon, Daemon, AGP};
use super::support::wait_exit;

/// Longest any step may take before the test gives up (a hang, not a measurement).
const WAIT: Duration = Duration::from_secs(90);

/// Set on the page by the test: still there later means the page was never reloaded.
const MARK: &str = "window.agpTestMark = 'kept'; return true;";
const READ_MARK: &str = "return window.agpTestMark || null;";

fn screenshot_path() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp: the picture goes beside it, under target/.
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("console")
        .join("timeline.png")
}

/// What to do with a found element.
enum Act<'a> {
    Attr(&'a str),
    Text,
    Click,
}

/// Finds `loc` (waiting for it) and acts on it. The live region is swapped whenever the
/// journal grows, so an element found a moment ago may be gone (stale): it is found afresh.
async fn act(c: &Client, loc: Locator<'_>, act: Act<'_>) -> String {
    let start = Instant::now();
    loop {
        let el = c
            .wait()
            .at_most(WAIT)
            .for_element(loc)
            .await
            .unwrap_or_else(|e| panic!("{loc:?} never appeared: {e}"));
        let done = match act {
            Act::Attr(name) => el
                .attr(name)
                .await
                .map(|v| v.unwrap_or_else(|| panic!("{loc:?} has no {name}"))),
            Act::Text => el.text().await,
            Act::Click => el.click().await.map(|()| String::new()),
        };
        match done {
            Ok(v) => return v,
            Err(CmdError::Standard(e))
                if e.error == ErrorStatus::StaleElementReference && start.elapsed() < WAIT => {}
            Err(e) => panic!("{loc:?}: {e}"),
        }
    }
}

async fn attr(c: &Client, css: &str, name: &str) -> String {
    act(c, Locator::Css(css), Act::Attr(name)).await
}

async fn text(c: &Client, css: &str) -> String {
    act(c, Locator::Css(css), Act::Text).await
}

async fn never_reloaded(c: &Client, what: &str) {
    let mark = c.execute(READ_MARK, vec![]).await.unwrap();
    assert_eq!(
        mark, "kept",
        "{what}: the page was reloaded, not updated live"
    );
    let refreshes = c
        .execute(
            "return document.body.getAttribute('data-refreshes');",
            vec![],
        )
        .await
        .unwrap();
    let n: u32 = refreshes.as_str().unwrap_or("0").parse().unwrap();
    assert!(n >= 1, "{what}: the live region was never refreshed");
}

#[test]
fn a_browser_sees_the_approval_arrive_live_allows_it_and_watches_the_timeline_update() {
    let Some(driver) = agp_testkit::browser::Chromedriver::start() else {
        return;
    };
    let w = policy_world(CONSOLE_POLICY);
    let fifo = w.dir.path().join("answers.fifo");
    mkfifo(&fifo);
    let _daemon: Daemon = start_daemon(
        &w.home,
        [
            "--policy",
            w.policy.to_str().unwrap(),
            "--approver-script",
            fifo.to_str().unwrap(),
        ],
    );
    let (_console, url) = start_console(&w.home, &[]);
    let profile = driver.dir().join("profile");
    let caps = driver.capabilities(&profile);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url())
            .await
            .expect("a WebDriver session in headless Chromium");

        // The token in the URL becomes a cookie; the console drops it from the address.
        c.goto(&url).await.unwrap();
        let landed = c.current_url().await.unwrap();
        assert!(
            !landed.as_str().contains("token="),
            "the token stayed in the address bar: {landed}"
        );
        let origin = format!(
            "{}://{}",
            landed.scheme(),
            landed.host_str().unwrap().to_owned()
                + &landed.port().map(|p| format!(":{p}")).unwrap_or_default()
        );
        c.goto(&format!("{origin}/approvals")).await.unwrap();
        attr(&c, "body[data-live-ready='1']", "data-live-ready").await;
        c.find(Locator::Css("[data-testid='no-approvals']"))
            .await
            .expect("nothing waits yet");
        c.execute(MARK, vec![]).await.unwrap();

        // The agent's call that needs a human.
        let script = w.dir.path().join("calls.yaml");
        std::fs::write(&script, bash_calls_yaml(&["touch allowed-in-a-browser"])).unwrap();
        let run = Command::new(AGP)
            .arg("--home")
            .arg(&w.home)
            .args(["run", "--intendant", "scripted", "--script"])
            .arg(&script)
            .arg("--repo")
            .arg(&w.repo)
            .args(["--task", "browser test: <b>touch</b> a file"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();

        // It appears on the open page, live.
        let session = attr(&c, "fieldset[data-testid='approval']", "data-session").await;
        never_reloaded(&c, "the approvals page").await;
        let input = text(&c, "[data-testid='approval-input']").await;
        assert!(input.contains("touch allowed-in-a-browser"), "{input}");
        assert!(!w.repo.join("allowed-in-a-browser").exists());

        // The session's timeline, open in a second tab before anyone decides.
        let approvals_tab = c.window().await.unwrap();
        let timeline_tab = c.new_window(true).await.unwrap().handle;
        c.switch_to_window(timeline_tab.clone()).await.unwrap();
        c.goto(&format!("{origin}/sessions/{session}"))
            .await
            .unwrap();
        attr(&c, "body[data-live-ready='1']", "data-live-ready").await;
        let before = attr(&c, "[data-testid='call-row']", "data-outcome").await;
        assert_ne!(before, "approved", "not decided yet");
        c.execute(MARK, vec![]).await.unwrap();

        // Allow, from the approvals tab.
        c.switch_to_window(approvals_tab).await.unwrap();
        act(&c, Locator::Css("[data-testid='allow']"), Act::Click).await;
        let granted = attr(&c, "[data-testid='decided']", "data-granted").await;
        assert_eq!(granted, "true");

        // The timeline tab shows it approved via web and run, without a reload.
        c.switch_to_window(timeline_tab).await.unwrap();
        let shown = act(
            &c,
            Locator::XPath("//td[@data-testid='call-result'][contains(., 'exit 0')]"),
            Act::Text,
        )
        .await;
        assert!(shown.contains("exit 0"), "{shown}");
        never_reloaded(&c, "the timeline").await;
        let outcome = attr(&c, "[data-testid='call-row']", "data-outcome").await;
        assert_eq!(outcome, "approved");
        let approval = text(&c, "[data-testid='call-approval']").await;
        assert!(approval.contains("via web"), "{approval}");

        let png = c.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let path = screenshot_path();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, png).unwrap();
        eprintln!("the timeline as the browser showed it: {}", path.display());
        c.close().await.unwrap();

        let out = wait_exit(run, WAIT, "the approved run did not end");
        assert!(out.status.success(), "{out:?}");
    });
    assert!(w.repo.join("allowed-in-a-browser").exists(), "the call ran");
    let granted: Vec<_> = journal(&w.home)
        .into_iter()
        .filter(|e| e["kind"] == "approval.granted")
        .collect();
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0]["body"]["by"][0]["via"], "web");
}
