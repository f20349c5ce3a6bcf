//! Progress of builds and pushes: indicatif bars on a terminal (build steps, one bar per
//! pushed layer), plain lines on stderr otherwise, and with `--json` one JSON object per line
//! on stdout (`{"event": "build.step", …}`) for CI.

use std::collections::HashMap;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use crate::output::Reporter;

/// Where progress goes.
pub struct Events {
    json: bool,
    bars: bool,
    multi: MultiProgress,
    layers: Mutex<HashMap<String, ProgressBar>>,
}

impl Events {
    /// Follows the reporter: JSON lines, bars on a terminal, or plain lines.
    pub fn new(r: &Reporter) -> Self {
        let multi = MultiProgress::new();
        if !r.progress {
            multi.set_draw_target(ProgressDrawTarget::hidden());
        }
        Self {
            json: r.json,
            bars: r.progress,
            multi,
            layers: Mutex::new(HashMap::new()),
        }
    }

    /// Events that print nothing (library use, tests).
    pub fn silent() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::hidden());
        Self {
            json: false,
            bars: false,
            multi,
            layers: Mutex::new(HashMap::new()),
        }
    }

    /// Whether events are JSON lines.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Emits one event: a JSON line with `--json`; else `text` (if any) on stderr, above the
    /// bars on a terminal.
    pub fn emit(&self, event: &str, mut fields: Value, text: Option<&str>) {
        if self.json {
            if let Value::Object(m) = &mut fields {
                m.insert("event".into(), Value::String(event.into()));
            }
            match serde_json::to_string(&fields) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("error: cannot encode event: {e}"),
            }
        } else if let Some(t) = text {
            if self.bars {
                self.multi.suspend(|| eprintln!("{t}"));
            } else {
                eprintln!("{t}");
            }
        }
    }

    /// The build-steps bar (`Step 3/7`), hidden unless on a terminal in text mode.
    pub fn step_bar(&self) -> ProgressBar {
        if !self.bars {
            return ProgressBar::hidden();
        }
        let pb = self.multi.add(ProgressBar::new(0));
        pb.set_style(
            ProgressStyle::with_template("{spinner} build [{bar:30}] {pos}/{len} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        pb.enable_steady_tick(std::time::Duration::from_millis(100));
        pb
    }

    /// The bar of one pushed layer, created on first use.
    pub fn layer_bar(&self, key: &str, total: u64) -> ProgressBar {
        let mut layers = self
            .layers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        layers
            .entry(key.to_string())
            .or_insert_with(|| {
                if !self.bars {
                    return ProgressBar::hidden();
                }
                let pb = self.multi.add(ProgressBar::new(total));
                pb.set_style(
                    ProgressStyle::with_template(
                        "layer [{bar:30}] {bytes}/{total_bytes} {wide_msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                pb
            })
            .clone()
    }

    /// Finishes and removes every layer bar.
    pub fn finish_layers(&self) {
        let mut layers = self
            .layers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (_, pb) in layers.drain() {
            pb.finish_and_clear();
        }
    }
}
