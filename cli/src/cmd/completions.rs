//! `fullslack completions SHELL`: shell completions generated from the clap definitions.

use clap::CommandFactory;

use crate::args::{Cli, CompletionsArgs};

/// Prints the completions script for the shell.
pub fn run(a: &CompletionsArgs) {
    let mut cmd = Cli::command();
    // Into a buffer first: clap_complete panics on a write error (a closed pipe).
    let mut buf = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "fullslack", &mut buf);
    print!("{}", String::from_utf8_lossy(&buf));
}
