//! The last steps of the browser test: the send rate limit as the composer shows it, search,
//! the phone layout, and the screenshots for the docs.

use std::path::Path;

use crate::{ui::Ui, SEND_INTERVAL, WAIT};

/// Rate limit: Alice's page spends her send budget over REST, then she sends from the
/// composer: the error is shown, and the message goes out by itself once allowed.
pub(crate) async fn a_refused_send_goes_out_once_allowed(a: &Ui) {
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
}

/// Search finds a message; on a phone-sized screen the conversation, then the list.
pub(crate) async fn search_and_the_phone_layout(a: &Ui, b: &Ui) {
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
}

/// The repository's docs get the new screenshots only when asked
/// (FULLSLACK_UPDATE_SCREENSHOTS=1): a test run must not rewrite tracked files.
pub(crate) fn copy_screenshots_when_asked(shots: &Path) {
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
}
