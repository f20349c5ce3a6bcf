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
//!
//! One test binary (`browser`) in modules: [`harness`] starts the server, chromedriver and
//! the browsers; [`ui`] is one browser window; [`api_user`] a user who only speaks the API;
//! [`conversation`], [`offline`], [`group`] and [`limits`] are the test's steps, in order.

mod api_user;
mod conversation;
mod group;
mod harness;
mod limits;
mod offline;
mod ui;

use std::time::Duration;

use harness::{browser, output_dir, start_chromedriver, start_server};
use ui::Ui;

const WAIT: Duration = Duration::from_secs(15);
/// The server's refill of a user's sends (its burst of 100 covers the whole test until the
/// rate-limit step spends it on purpose).
const SEND_INTERVAL: Duration = Duration::from_secs(20);
const PASSWORD: &str = "correct horse battery";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_chat_live_with_receipts_threads_and_offline_catch_up() {
    let (dir, _keep) = output_dir();
    let shots = dir.join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    eprintln!("browser test output: {}", dir.display());

    let (_server, base) = start_server(&dir).await;
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

    conversation::sign_up_and_open_a_channel(&a, &b, &base).await;
    conversation::a_dm_is_read_with_badge_and_ticks(&a, &b).await;
    conversation::typing_multi_line_and_reactions(&a, &b).await;
    conversation::a_thread_on_both_sides(&a, &b).await;
    offline::missed_messages_arrive_once_in_order(&a, &b).await;
    offline::edit_delete_and_a_message_too_long(&a, &b).await;
    let (carol, group) = group::a_group_with_paged_history(&a, &b, &base).await;
    group::seen_by_in_the_group(&a, &carol, &group).await;
    limits::a_refused_send_goes_out_once_allowed(&a).await;
    limits::search_and_the_phone_layout(&a, &b).await;
    limits::copy_screenshots_when_asked(&shots);

    a.c.close().await.unwrap();
    b.c.close().await.unwrap();
}
