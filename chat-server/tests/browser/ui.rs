//! One browser window and what the test does with it: run scripts, wait for conditions,
//! click, type, take screenshots, sign up.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use fantoccini::{Client, Locator};
use serde_json::Value;

use crate::{PASSWORD, WAIT};

/// One browser window with helpers.
pub(crate) struct Ui {
    pub(crate) c: Client,
    pub(crate) name: &'static str,
    pub(crate) shots: PathBuf,
}

impl Ui {
    pub(crate) async fn js(&self, script: &str) -> Value {
        self.c
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("[{}] script failed: {e}\n{script}", self.name))
    }

    /// Waits until the JavaScript expression is truthy.
    pub(crate) async fn wait(&self, expr: &str, what: &str) {
        self.wait_up_to(expr, what, WAIT).await;
    }

    /// Waits up to `limit` until the JavaScript expression is truthy.
    pub(crate) async fn wait_up_to(&self, expr: &str, what: &str, limit: Duration) {
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

    pub(crate) async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("[{}] no element {css}: {e}", self.name))
    }

    /// Clicks an element; retries when the list it is in was re-rendered meanwhile.
    pub(crate) async fn click(&self, css: &str) {
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
    pub(crate) async fn js_click(&self, css: &str) {
        let css_json = serde_json::to_string(css).unwrap();
        self.wait(
            &format!("document.querySelector({css_json})"),
            &format!("element {css}"),
        )
        .await;
        self.js(&format!("document.querySelector({css_json}).click();"))
            .await;
    }

    pub(crate) async fn type_into(&self, css: &str, text: &str) {
        self.find(css)
            .await
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("[{}] type into {css}: {e}", self.name));
    }

    /// Types a message in the main composer and presses Enter.
    pub(crate) async fn say(&self, text: &str) {
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
    pub(crate) async fn texts(&self) -> Vec<String> {
        let v = self
            .js("return [...document.querySelectorAll('#message-list .msg .text')].map(e => e.textContent);")
            .await;
        serde_json::from_value(v).unwrap()
    }

    pub(crate) fn has_message(&self, text: &str) -> String {
        format!(
            "[...document.querySelectorAll('#message-list .msg .text')].some(e => e.textContent === {})",
            serde_json::to_string(text).unwrap()
        )
    }

    pub(crate) async fn shot(&self, name: &str) {
        // Let transitions and fonts settle.
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Ok(png) = self.c.screenshot().await {
            let _ = std::fs::write(self.shots.join(format!("{name}.png")), png);
        }
    }

    pub(crate) async fn sign_up(&self, base: &str, username: &str, display: &str) {
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
