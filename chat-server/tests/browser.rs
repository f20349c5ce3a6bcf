//! The web client in a real browser: headless Chromium driven over WebDriver (chromedriver)
//! with `fantoccini`, against the real `fullslack-chat` binary on a loopback port.
//!
//! Two browser sessions sign up, start a DM, exchange messages that show up live on both
//! sides, see the typing indicator and the read ticks, react and reply in a thread; then one
//! of them goes offline (`window.fullslack.disconnect()`, which closes its socket) while the
//! other sends, types a message itself while offline (shown as pending), comes back and must
//! show the missed messages once each and in order, and its queued message must be delivered.
//!
//! Screenshots of the main screens go to the test's output directory
//! (`$FULLSLACK_TEST_RUNTIME/browser-…` or a temporary directory); with
//! `FULLSLACK_UPDATE_SCREENSHOTS=1` they are also copied to `docs/screenshots/` (referenced
//! from `docs/web-client.md`).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/test.sh` installs them).

use std::{
    io::{BufRead, BufReader, Read},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};
use fullslack_protocol::{rest::SendBody, ClientFrame};
use fullslack_test_support as api;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);
/// The server's refill of a user's sends (its burst of 100 covers the whole test until the
/// rate-limit step spends it on purpose).
const SEND_INTERVAL: Duration = Duration::from_secs(20);
const PASSWORD: &str = "correct horse battery";

/// A child process killed (and reaped) on drop. With `group`, the child leads its own
/// process group and the whole group is killed: chromedriver's Chromium processes too, even
/// when a failed assertion skipped closing the WebDriver sessions.
struct Proc {
    child: Child,
    group: bool,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.group {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where this run writes its server data, browser profiles, logs and screenshots.
fn output_dir() -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("FULLSLACK_TEST_RUNTIME") {
        Some(root) => {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis();
            let dir = PathBuf::from(root).join(format!("browser-{}-{stamp}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            (dir, None)
        }
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("fullslack-browser-")
                .tempdir()
                .unwrap();
            (tmp.path().to_path_buf(), Some(tmp))
        }
    }
}

/// Starts the real chat server; returns it and its base URL (from its first stdout line).
fn start_server(dir: &Path) -> (Proc, String) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fullslack-chat"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        // The server reads every FULLSLACK_* variable as a setting and refuses unknown ones
        // (see docs/web-client.md, known server issues): do not pass the test's own.
        .env_remove("FULLSLACK_TEST_RUNTIME")
        .env_remove("FULLSLACK_CHROME_ARGS")
        .env("FULLSLACK_RATE_LIMIT__SEND_BURST", "100")
        .env(
            "FULLSLACK_RATE_LIMIT__SEND_INTERVAL_MS",
            SEND_INTERVAL.as_millis().to_string(),
        )
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("start fullslack-chat");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = out.read_to_end(&mut sink);
    });
    let url = first
        .trim()
        .strip_prefix("fullslack-chat listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from the server: {first:?}"))
        .trim_end_matches('/')
        .to_string();
    (
        Proc {
            child,
            group: false,
        },
        url,
    )
}

/// Starts chromedriver on a free loopback port and waits until it answers.
async fn start_chromedriver(dir: &Path) -> (Proc, String) {
    let port = api::free_port();
    let log = std::fs::File::create(dir.join("chromedriver.log")).unwrap();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start chromedriver (install Debian's chromium-driver: scripts/test.sh does)");
    let proc = Proc { child, group: true };
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let start = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{url}/status")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(start.elapsed() < WAIT, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (proc, url)
}

async fn browser(driver: &str, profile: &Path, width: u32, height: u32) -> Client {
    std::fs::create_dir_all(profile).unwrap();
    let mut args = vec![
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-dev-shm-usage".into(),
        "--hide-scrollbars".into(),
        "--force-color-profile=srgb".into(),
        "--lang=en-US".into(),
        format!("--window-size={width},{height}"),
        format!("--user-data-dir={}", profile.display()),
    ];
    if let Ok(extra) = std::env::var("FULLSLACK_CHROME_ARGS") {
        args.extend(extra.split_whitespace().map(String::from));
    }
    let mut opts = json!({ "args": args });
    if Path::new("/usr/bin/chromium").exists() {
        opts["binary"] = json!("/usr/bin/chromium");
    }
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert("goog:chromeOptions".into(), opts);
    ClientBuilder::native()
        .capabilities(caps)
        .connect(driver)
        .await
        .expect("WebDriver session")
}

/// One browser window with helpers.
struct Ui {
    c: Client,
    name: &'static str,
    shots: PathBuf,
}

impl Ui {
    async fn js(&self, script: &str) -> Value {
        self.c
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("[{}] script failed: {e}\n{script}", self.name))
    }

    /// Waits until the JavaScript expression is truthy.
    async fn wait(&self, expr: &str, what: &str) {
        self.wait_up_to(expr, what, WAIT).await;
    }

    /// Waits up to `limit` until the JavaScript expression is truthy.
    async fn wait_up_to(&self, expr: &str, what: &str, limit: Duration) {
        let start = Instant::now();
        let script = format!("return !!({expr});");
        loop {
            if let Ok(v) = self.c.execute(&script, vec![]).await {
                if v.as_bool() == Some(true) {
                    return;
                }
            }
            if start.elapsed() > limit {
                self.shot(&format!("FAILED-{}", what.replace([' ', '/'], "-")))
                    .await;
                let state = self
                    .c
                    .execute(
                        "return window.fullslack ? [window.fullslack.state(), window.fullslack.log()] : null;",
                        vec![],
                    )
                    .await
                    .ok();
                panic!(
                    "[{}] timed out waiting for {what} ({expr}); state: {state:?}",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("[{}] no element {css}: {e}", self.name))
    }

    /// Clicks an element; retries when the list it is in was re-rendered meanwhile.
    async fn click(&self, css: &str) {
        let mut tries = 0;
        loop {
            match self.find(css).await.click().await {
                Ok(()) => return,
                Err(e) if tries < 20 && e.to_string().contains("stale") => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("[{}] click {css}: {e}", self.name),
            }
        }
    }

    /// Clicks through JavaScript (for controls that only show on hover).
    async fn js_click(&self, css: &str) {
        let css_json = serde_json::to_string(css).unwrap();
        self.wait(
            &format!("document.querySelector({css_json})"),
            &format!("element {css}"),
        )
        .await;
        self.js(&format!("document.querySelector({css_json}).click();"))
            .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        self.find(css)
            .await
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("[{}] type into {css}: {e}", self.name));
    }

    /// Types a message in the main composer and presses Enter.
    async fn say(&self, text: &str) {
        self.type_into("#composer-input", &format!("{text}\u{E007}"))
            .await;
        self.wait(
            &format!(
                "[...document.querySelectorAll('#message-list .msg.mine .text')].some(e => e.textContent === {})",
                // `code` spans are shown without their backticks.
                serde_json::to_string(&text.replace('`', "")).unwrap()
            ),
            &format!("own message {text:?} shown"),
        )
        .await;
    }

    /// Texts of the messages in the open conversation, in display order.
    async fn texts(&self) -> Vec<String> {
        let v = self
            .js("return [...document.querySelectorAll('#message-list .msg .text')].map(e => e.textContent);")
            .await;
        serde_json::from_value(v).unwrap()
    }

    fn has_message(&self, text: &str) -> String {
        format!(
            "[...document.querySelectorAll('#message-list .msg .text')].some(e => e.textContent === {})",
            serde_json::to_string(text).unwrap()
        )
    }

    async fn shot(&self, name: &str) {
        // Let transitions and fonts settle.
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Ok(png) = self.c.screenshot().await {
            let _ = std::fs::write(self.shots.join(format!("{name}.png")), png);
        }
    }

    async fn sign_up(&self, base: &str, username: &str, display: &str) {
        self.c.goto(base).await.unwrap();
        self.wait(
            "!document.querySelector('#auth').hidden",
            "the sign-in screen",
        )
        .await;
        self.click("#tab-signup").await;
        self.type_into("#auth-username", username).await;
        self.type_into("#auth-display", display).await;
        self.type_into("#auth-password", PASSWORD).await;
        self.click("#auth-submit").await;
        self.wait(
            "document.querySelector('#app').dataset.ready === 'true' && document.querySelector('#app').dataset.conn === 'live'",
            "the app, connected",
        )
        .await;
    }
}

/// A user who only speaks the API: the shared test client (REST with a bearer token, and the
/// WebSocket), plus what this test asks of it.
struct ApiUser(api::Client);

impl ApiUser {
    async fn register(base: &str, username: &str) -> Self {
        ApiUser(api::Client::register(&api::RemoteServer::new(base), username).await)
    }

    async fn channel_of_kind(&self, kind: &str) -> String {
        let list = self.0.ok_get("/api/channels").await;
        list.as_array()
            .unwrap()
            .iter()
            .find(|c| c["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} channel in {list}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Posts a message over REST, waiting out rate limits (429 + Retry-After).
    async fn post_message(&self, channel: &str, text: &str) {
        loop {
            let body = SendBody {
                text: text.into(),
                client_id: format!("api-{text}"),
                thread_root: None,
            };
            let (status, v) = self
                .0
                .post(
                    &format!("/api/channels/{channel}/messages"),
                    serde_json::to_value(body).unwrap(),
                )
                .await;
            if status == 429 {
                let ms = v["error"]["retry_after_ms"]
                    .as_u64()
                    .or(v["retry_after_ms"].as_u64())
                    .unwrap_or(200);
                tokio::time::sleep(Duration::from_millis(ms.max(50))).await;
                continue;
            }
            assert_eq!(status, 201, "post {text:?}");
            return;
        }
    }

    /// Connects a WebSocket, resumes, moves the read watermark to `seq`, disconnects.
    async fn read_over_ws(&self, channel: &str, seq: i64) {
        let mut ws = api::Ws::connect(&self.0.ws_url, &self.0.token).await;
        ws.resume(Default::default()).await;
        ws.send_frame(&ClientFrame::Read {
            reference: Some("api-read".into()),
            channel: channel.into(),
            seq,
        })
        .await;
        let v = ws.next_where(|f| f["ref"] == "api-read").await;
        assert_eq!(v["type"], "ack", "read answered {v}");
        ws.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_chat_live_with_receipts_threads_and_offline_catch_up() {
    let (dir, _keep) = output_dir();
    let shots = dir.join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    eprintln!("browser test output: {}", dir.display());

    let (_server, base) = start_server(&dir);
    let (_driver, driver_url) = start_chromedriver(&dir).await;

    let a = Ui {
        c: browser(&driver_url, &dir.join("profile-alice"), 1180, 760).await,
        name: "alice",
        shots: shots.clone(),
    };
    let b = Ui {
        c: browser(&driver_url, &dir.join("profile-bob"), 1180, 760).await,
        name: "bob",
        shots: shots.clone(),
    };

    // Security headers of the shell, as the browser got them.
    let res = reqwest::get(format!("{base}/")).await.unwrap();
    assert!(res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));

    // Sign-in screen, then both sign up.
    a.c.goto(&base).await.unwrap();
    a.wait("!document.querySelector('#auth').hidden", "sign-in screen")
        .await;
    a.shot("sign-in").await;
    a.sign_up(&base, "alice", "Alice Liddell").await;
    b.sign_up(&base, "bob", "Bob Builder").await;

    // Alice creates a channel through the dialog.
    a.click("#btn-new-channel").await;
    a.type_into("#ch-name", "general").await;
    a.type_into("#ch-topic", "Company-wide announcements and chat")
        .await;
    a.click("#form-channel button[value=ok]").await;
    a.wait(
        "document.querySelector('#pane-title').textContent === '#general'",
        "#general open",
    )
    .await;
    a.say("Welcome to #general! Say hi to @bob").await;

    // Alice starts a DM with Bob.
    a.click("#btn-new-dm").await;
    a.click("#users-pick input[data-username=bob]").await;
    a.click("#users-ok").await;
    a.wait(
        "document.querySelector('#pane-title').textContent === 'Bob Builder'",
        "the DM with Bob open",
    )
    .await;
    a.say("Hi @bob, are you there?").await;
    a.say("I have the `release notes` ready for review").await;

    // Bob sees the DM with an unread badge, opens it, reads.
    b.wait(
        "document.querySelector('#list-dms .side-item .badge')?.textContent === '2'",
        "unread badge 2 on the DM",
    )
    .await;
    b.click("#list-dms .side-item").await;
    b.wait(&b.has_message("Hi @bob, are you there?"), "Alice's message")
        .await;
    b.wait(
        "document.querySelector('#message-list .msg.mentioned .mention.mention-me')",
        "the mention highlighted",
    )
    .await;
    b.wait(
        "!document.querySelector('#list-dms .side-item .badge')",
        "badge cleared",
    )
    .await;
    assert!(
        b.js("return document.querySelectorAll('.day-sep').length")
            .await
            .as_u64()
            >= Some(1)
    );

    // Alice's ticks turn to read.
    a.wait(
        "[...document.querySelectorAll('#message-list .msg.mine .ticks')].every(t => t.dataset.status === 'read')",
        "read ticks on Alice's messages",
    )
    .await;

    // Bob types: Alice sees the typing indicator, then his message live.
    b.type_into("#composer-input", "Yes! Looking now").await;
    a.wait(
        "document.querySelector('#typing').textContent.includes('Bob Builder is typing')",
        "typing indicator",
    )
    .await;
    b.type_into("#composer-input", "\u{E007}").await;
    a.wait(&a.has_message("Yes! Looking now"), "Bob's reply live")
        .await;
    a.wait(
        "document.querySelector('#typing').textContent === ''",
        "typing indicator gone after the message",
    )
    .await;

    // Shift+Enter makes a new line instead of sending.
    b.type_into(
        "#composer-input",
        "Two things:\u{E008}\u{E007}\u{E008}1. the changelog\u{E008}\u{E007}\u{E008}2. the upgrade notes\u{E007}",
    )
    .await;
    a.wait(
        &a.has_message("Two things:\n1. the changelog\n2. the upgrade notes"),
        "multi-line message",
    )
    .await;

    // Alice reacts to Bob's message; Bob sees the reaction.
    a.js_click("#message-list .msg.theirs [data-action=react]")
        .await;
    a.click("#emoji-pop .emoji").await;
    b.wait(
        "document.querySelector('#message-list .msg.mine .reaction')",
        "reaction on Bob's message",
    )
    .await;

    // Alice replies in a thread on her first DM message.
    a.js_click("#message-list .msg.mine:not(.grouped) [data-action=thread]")
        .await;
    a.wait("!document.querySelector('#panel').hidden", "thread panel")
        .await;
    a.type_into("#thread-input", "Starting a thread for the review\u{E007}")
        .await;
    a.wait(
        "document.querySelectorAll('#panel .thread-replies .msg:not(.pending)').length === 1",
        "thread reply stored",
    )
    .await;
    b.wait(
        "document.querySelector('#message-list .thread-link')?.textContent.includes('1 reply')",
        "reply count on Bob's side",
    )
    .await;
    b.js_click("#message-list .thread-link").await;
    b.wait(
        "document.querySelector('#panel .thread-replies')?.textContent.includes('Starting a thread')",
        "thread on Bob's side",
    )
    .await;
    b.type_into("#thread-input", "Great, I'll comment here\u{E007}")
        .await;
    a.wait(
        "document.querySelectorAll('#panel .thread-replies .msg').length === 2",
        "Bob's thread reply live",
    )
    .await;
    a.shot("thread").await;
    a.click("#panel-close").await;
    b.click("#panel-close").await;

    // Bob goes offline; Alice keeps writing.
    b.js("window.fullslack.disconnect();").await;
    b.wait(
        "!document.querySelector('#conn-banner').hidden && document.querySelector('#app').dataset.conn === 'paused'",
        "offline banner",
    )
    .await;
    let missed = ["missed one", "missed two", "missed three"];
    for m in missed {
        a.say(m).await;
    }
    // Bob writes while offline: shown as pending.
    b.type_into("#composer-input", "typed while offline\u{E007}")
        .await;
    b.wait(
        "document.querySelector('#message-list .msg.pending .ticks.pending')",
        "pending message",
    )
    .await;
    b.shot("offline").await;
    for m in missed {
        assert!(
            !b.texts().await.iter().any(|t| t == m),
            "Bob got {m:?} while offline"
        );
    }

    // Bob comes back: every missed message, once, in order; his queued one is delivered.
    b.js("window.fullslack.reconnect();").await;
    b.wait(
        "document.querySelector('#app').dataset.conn === 'live'",
        "reconnected",
    )
    .await;
    for m in missed {
        b.wait(&b.has_message(m), m).await;
    }
    b.wait(
        "!document.querySelector('#message-list .msg.pending')",
        "queued message sent",
    )
    .await;
    a.wait(
        &a.has_message("typed while offline"),
        "Bob's queued message at Alice",
    )
    .await;
    let texts = b.texts().await;
    let pos: Vec<usize> = missed
        .iter()
        .map(|m| {
            let hits: Vec<_> = texts.iter().enumerate().filter(|(_, t)| t == m).collect();
            assert_eq!(hits.len(), 1, "{m:?} shown {} times: {texts:?}", hits.len());
            hits[0].0
        })
        .collect();
    assert!(
        pos.windows(2).all(|w| w[0] < w[1]),
        "out of order: {texts:?}"
    );
    // The same on Alice's side: each message once.
    let a_texts = a.texts().await;
    for t in [
        "Hi @bob, are you there?",
        "typed while offline",
        "missed two",
    ] {
        assert_eq!(
            a_texts.iter().filter(|x| *x == t).count(),
            1,
            "{t}: {a_texts:?}"
        );
    }
    a.wait(
        "[...document.querySelectorAll('#message-list .msg.mine .ticks')].every(t => t.dataset.status === 'read')",
        "everything read after Bob came back",
    )
    .await;

    // Up in the empty composer edits the last message; Bob sees the edit.
    a.type_into("#composer-input", "\u{E013}").await;
    a.wait(
        "document.querySelector('#composer').classList.contains('editing')",
        "edit mode",
    )
    .await;
    a.find("#composer-input").await.clear().await.unwrap();
    a.type_into("#composer-input", "missed three, now edited\u{E007}")
        .await;
    b.wait(
        &format!(
            "{} && document.querySelector('#message-list .msg .edited')",
            b.has_message("missed three, now edited")
        ),
        "the edit at Bob",
    )
    .await;
    // Delete leaves a tombstone.
    a.js("[...document.querySelectorAll('#message-list .msg.mine')].find(m => m.querySelector('.text')?.textContent === 'missed one').querySelector('[data-action=delete]').click();")
        .await;
    a.click("#dlg-confirm button[value=ok]").await;
    b.wait(
        &format!(
            "!{} && document.querySelector('#message-list .msg.deleted .tombstone')",
            b.has_message("missed one")
        ),
        "tombstone at Bob",
    )
    .await;
    // Too long for the server's limit (from `hello`): shown, not sent.
    a.js("const i = document.querySelector('#composer-input'); i.value = 'x'.repeat(4001); i.dispatchEvent(new Event('input'));")
        .await;
    a.type_into("#composer-input", "\u{E007}").await;
    a.wait(
        "[...document.querySelectorAll('#toasts .toast')].some(t => t.textContent.includes('too long'))",
        "message-too-long error shown",
    )
    .await;
    a.js("const i = document.querySelector('#composer-input'); i.value = ''; i.dispatchEvent(new Event('input')); document.querySelectorAll('#toasts .toast').forEach(t => t.remove());")
        .await;
    a.shot("conversation").await;

    // A group with a third user who only uses the API; 60 messages of history.
    let carol = ApiUser::register(&base, "carol").await;
    a.click("#btn-new-dm").await;
    a.click("#users-pick input[data-username=bob]").await;
    a.click("#users-pick input[data-username=carol]").await;
    a.click("#users-ok").await;
    a.wait(
        "document.querySelector('#pane-title').textContent === 'Bob Builder, carol'",
        "the group open",
    )
    .await;
    let group = carol.channel_of_kind("group").await;
    for i in 1..=60 {
        carol.post_message(&group, &format!("history {i:02}")).await;
    }
    a.wait(
        &a.has_message("history 60"),
        "carol's messages live at Alice",
    )
    .await;
    // Bob reloads (the cookie keeps him signed in) and opens the group: the latest page
    // first, older pages when scrolling up.
    b.c.goto(&base).await.unwrap();
    b.wait(
        "document.querySelector('#app').dataset.ready === 'true' && document.querySelector('#app').dataset.conn === 'live'",
        "the app after a reload",
    )
    .await;
    b.click("#list-dms .side-item[data-kind=group]").await;
    b.wait(&b.has_message("history 60"), "the latest page at Bob")
        .await;
    assert!(
        !b.texts().await.iter().any(|t| t == "history 01"),
        "the first page should not reach back to the start"
    );
    for _ in 0..5 {
        b.js("document.querySelector('#messages').scrollTop = 0;")
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        if b.texts().await.iter().any(|t| t == "history 01") {
            break;
        }
    }
    b.wait(&b.has_message("history 01"), "older page loaded on scroll")
        .await;
    let history: Vec<String> = b
        .texts()
        .await
        .into_iter()
        .filter(|t| t.starts_with("history "))
        .collect();
    let expected: Vec<String> = (1..=60).map(|i| format!("history {i:02}")).collect();
    assert_eq!(history, expected, "history paged in order, once each");
    // "Seen by": Bob has the group open and reads, carol has not yet.
    a.say("Lunch at noon?").await;
    a.wait(
        "document.querySelector('#message-list .seen-by')?.textContent === 'Seen by Bob Builder'",
        "seen by Bob",
    )
    .await;
    let status = a
        .js("const t = [...document.querySelectorAll('#message-list .msg.mine .ticks')].pop(); return t.dataset.status;")
        .await;
    assert_ne!(status, "read", "carol has not read yet");
    let seq = a
        .js("return Number([...document.querySelectorAll('#message-list .msg.mine')].pop().dataset.seq);")
        .await
        .as_i64()
        .unwrap();
    carol.read_over_ws(&group, seq).await;
    a.wait(
        "document.querySelector('#message-list .seen-by')?.textContent === 'Seen by everyone' && [...document.querySelectorAll('#message-list .msg.mine .ticks')].pop().dataset.status === 'read'",
        "seen by everyone",
    )
    .await;
    a.shot("group").await;

    // Rate limit: Alice's page spends her send budget over REST, then she sends from the
    // composer: the error is shown, and the message goes out by itself once allowed.
    a.click("#list-channels .side-item").await;
    a.wait(
        "document.querySelector('#pane-title').textContent === '#general'",
        "#general again",
    )
    .await;
    // The server refills one send every 20 s (FULLSLACK_RATE_LIMIT__SEND_INTERVAL_MS in
    // `start_server`): the page sends one message after another until the server answers
    // 429, then at once from the composer. The bucket is empty then and its next token 20 s
    // away, so that send is refused whatever the machine's speed (it would take a 20 s stall
    // between the two, longer than any of this test's waits, to get it through). A
    // MutationObserver records the toast, so its 8 s life does not race the polling either.
    a.js(r#"const id = window.fullslack.state().channels.find(c => c.name === 'general').id;
        window.__burst = null;
        window.__toasts = [];
        new MutationObserver(() => {
            for (const t of document.querySelectorAll('#toasts .toast')) window.__toasts.push(t.textContent);
        }).observe(document.querySelector('#toasts'), {childList: true, subtree: true});
        (async () => {
            const statuses = [];
            for (let n = 0; n < 500; n++) {
                const r = await fetch(`/api/channels/${id}/messages`, {
                    method: 'POST', credentials: 'same-origin', headers: {'Content-Type': 'application/json'},
                    body: JSON.stringify({text: `burst ${n}`, client_id: `burst-${n}`}),
                });
                statuses.push(r.status);
                if (r.status !== 201) break;
            }
            const i = document.querySelector('#composer-input');
            i.value = 'after the burst';
            i.dispatchEvent(new Event('input'));
            i.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', bubbles: true}));
            window.__burst = statuses;
        })();"#)
        .await;
    a.wait("window.__burst", "the REST burst").await;
    let statuses = a.js("return window.__burst;").await;
    let statuses = statuses.as_array().unwrap();
    assert_eq!(
        statuses.last().unwrap(),
        429,
        "the burst ends at the limit: {statuses:?}"
    );
    assert!(
        statuses[..statuses.len() - 1].iter().all(|s| s == 201),
        "{statuses:?}"
    );
    a.wait(
        "window.__toasts.some(t => t.includes('too fast'))",
        "the rate limit error shown",
    )
    .await;
    a.wait(
        &a.has_message("after the burst"),
        "the composer message (pending)",
    )
    .await;
    // It goes out by itself once the server allows it (within one refill interval).
    a.wait_up_to(
        &format!(
            "{} && !document.querySelector('#message-list .msg.pending')",
            a.has_message("after the burst")
        ),
        "the composer message sent after the wait",
        SEND_INTERVAL + WAIT,
    )
    .await;
    a.js("document.querySelectorAll('#toasts .toast').forEach(t => t.remove());")
        .await;
    a.click("#list-dms .side-item[data-kind=dm]").await;

    // Search finds the message.
    a.type_into("#search-input", "changelog\u{E007}").await;
    a.wait(
        "document.querySelectorAll('#panel .results .result').length >= 1",
        "search results",
    )
    .await;
    a.shot("search").await;
    a.click("#panel-close").await;

    // Phone-sized screen: the conversation, then the list.
    b.c.set_window_size(390, 800).await.unwrap();
    b.wait(
        "document.querySelector('#btn-back').offsetParent !== null",
        "phone layout",
    )
    .await;
    b.shot("phone-conversation").await;
    b.click("#btn-back").await;
    b.wait(
        "document.querySelector('#sidebar').offsetParent !== null",
        "sidebar on phone",
    )
    .await;
    b.shot("phone-sidebar").await;

    // The repository's docs get the new screenshots only when asked
    // (FULLSLACK_UPDATE_SCREENSHOTS=1): a test run must not rewrite tracked files.
    if std::env::var_os("FULLSLACK_UPDATE_SCREENSHOTS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
        std::fs::create_dir_all(&docs).unwrap();
        for name in [
            "sign-in",
            "conversation",
            "group",
            "thread",
            "offline",
            "search",
            "phone-conversation",
            "phone-sidebar",
        ] {
            let src = shots.join(format!("{name}.png"));
            if src.exists() {
                std::fs::copy(&src, docs.join(format!("{name}.png"))).unwrap();
            }
        }
    } else {
        eprintln!(
            "screenshots in {} (FULLSLACK_UPDATE_SCREENSHOTS=1 copies them to docs/screenshots)",
            shots.display()
        );
    }

    a.c.close().await.unwrap();
    b.c.close().await.unwrap();
}
