//! The group steps of the browser test: a group with a user who only speaks the API, its
//! history paged on scroll, and "seen by".

use std::time::Duration;

use crate::{api_user::ApiUser, ui::Ui};

/// Alice opens a group with Bob and carol (API only), carol writes 60 messages; Bob reloads
/// and pages back through them. Returns carol and the group.
pub(crate) async fn a_group_with_paged_history(a: &Ui, b: &Ui, base: &str) -> (ApiUser, String) {
    // A group with a third user who only uses the API; 60 messages of history.
    let carol = ApiUser::register(base, "carol").await;
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
    b.c.goto(base).await.unwrap();
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
    (carol, group)
}

/// "Seen by": Bob has the group open and reads, carol has not yet, then does over the API.
pub(crate) async fn seen_by_in_the_group(a: &Ui, carol: &ApiUser, group: &str) {
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
    carol.read_over_ws(group, seq).await;
    a.wait(
        "document.querySelector('#message-list .seen-by')?.textContent === 'Seen by everyone' && [...document.querySelectorAll('#message-list .msg.mine .ticks')].pop().dataset.status === 'read'",
        "seen by everyone",
    )
    .await;
    a.shot("group").await;
}
