//! The conversation steps of the browser test: sign-up, a channel, a DM read with its badge
//! and ticks, typing, multi-line messages, reactions and a thread.

use crate::ui::Ui;

/// The sign-in screen, both users sign up, Alice creates #general and writes in it.
pub(crate) async fn sign_up_and_open_a_channel(a: &Ui, b: &Ui, base: &str) {
    // Sign-in screen, then both sign up.
    a.c.goto(base).await.unwrap();
    a.wait("!document.querySelector('#auth').hidden", "sign-in screen")
        .await;
    a.shot("sign-in").await;
    a.sign_up(base, "alice", "Alice Liddell").await;
    b.sign_up(base, "bob", "Bob Builder").await;

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
}

/// Alice starts a DM; Bob sees its unread badge and reads it; Alice sees read ticks.
pub(crate) async fn a_dm_is_read_with_badge_and_ticks(a: &Ui, b: &Ui) {
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
}

/// Bob's typing indicator and reply live at Alice, a multi-line message, a reaction.
pub(crate) async fn typing_multi_line_and_reactions(a: &Ui, b: &Ui) {
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
}

/// Alice starts a thread, Bob sees its reply count and answers in it.
pub(crate) async fn a_thread_on_both_sides(a: &Ui, b: &Ui) {
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
}
