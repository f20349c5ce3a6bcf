//! The offline steps of the browser test: Bob misses messages and queues one while offline,
//! then catches up; edits, deletes and a message over the server's limit.

use crate::ui::Ui;

/// Bob goes offline while Alice writes, queues a message himself, comes back: every missed
/// message once and in order, his queued one delivered.
pub(crate) async fn missed_messages_arrive_once_in_order(a: &Ui, b: &Ui) {
    let missed = ["missed one", "missed two", "missed three"];
    bob_misses_and_queues(a, b, &missed).await;
    bob_comes_back(a, b, &missed).await;
}

/// Bob goes offline; Alice keeps writing (`missed`); Bob writes too: shown as pending.
async fn bob_misses_and_queues(a: &Ui, b: &Ui, missed: &[&str]) {
    b.js("window.fullslack.disconnect();").await;
    b.wait(
        "!document.querySelector('#conn-banner').hidden && document.querySelector('#app').dataset.conn === 'paused'",
        "offline banner",
    )
    .await;
    for m in missed {
        a.say(m).await;
    }
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
}

/// Bob comes back: every missed message, once, in order; his queued one is delivered; the
/// same on Alice's side, where everything turns read.
async fn bob_comes_back(a: &Ui, b: &Ui, missed: &[&str]) {
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
}

/// Up edits the last message, delete leaves a tombstone, a too-long message is not sent.
pub(crate) async fn edit_delete_and_a_message_too_long(a: &Ui, b: &Ui) {
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
}
