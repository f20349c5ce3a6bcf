//! User-facing output: one reporter for human text (colour only on a terminal, spinners for
//! waits) and `--json`. Logs go through `tracing`, never through here.

use std::io::IsTerminal;
use std::time::Duration;

/// How to print.
#[derive(Debug, Clone, Copy)]
pub struct Reporter {
    /// Machine-readable JSON on stdout instead of text.
    pub json: bool,
    /// ANSI colour on stdout.
    pub color: bool,
    /// Spinners on stderr.
    pub progress: bool,
}

/// Status of one check line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Passed.
    Ok,
    /// Passed with a remark.
    Warn,
    /// Failed.
    Fail,
    /// Not applicable.
    Skip,
}

impl Reporter {
    /// Decides colour and spinners from the terminal and `NO_COLOR`.
    pub fn new(json: bool) -> Self {
        let tty = std::io::stdout().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            json,
            color: tty && !no_color && !json,
            progress: std::io::stderr().is_terminal() && !json,
        }
    }

    /// A spinner for something that waits; hidden when stderr is not a terminal.
    pub fn spinner(&self, msg: impl Into<String>) -> indicatif::ProgressBar {
        if !self.progress {
            return indicatif::ProgressBar::hidden();
        }
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_message(msg.into());
        pb.enable_steady_tick(Duration::from_millis(100));
        pb
    }

    /// A coloured status tag.
    pub fn tag(&self, s: Status) -> String {
        let (text, code) = match s {
            Status::Ok => ("ok  ", "32"),
            Status::Warn => ("warn", "33"),
            Status::Fail => ("FAIL", "31"),
            Status::Skip => ("skip", "2"),
        };
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// Prints a JSON value (pretty) to stdout.
    pub fn print_json(&self, v: &impl serde::Serialize) {
        match serde_json::to_string_pretty(v) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("error: cannot encode JSON output: {e}"),
        }
    }
}
