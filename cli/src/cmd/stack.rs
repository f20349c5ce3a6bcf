//! `fullslack stack check`: parses and validates a stack file, then prints its summary and
//! warnings (the diagnostics of an invalid file come back as the error).

use crate::args::StackArg;
use crate::error::CliError;
use crate::output::Reporter;

/// Checks the stack file.
pub fn check(a: &StackArg, r: &Reporter) -> Result<(), CliError> {
    let s = crate::stack::check(&a.stack)?;
    let warnings = crate::stack::warnings(&s);
    if r.json {
        r.print_json(&serde_json::json!({"ok": true, "stack": s, "warnings": warnings}));
    } else {
        println!(
            "{}: stack `{}` is valid (target {}, {} domain(s))",
            a.stack.display(),
            s.name,
            s.target.as_str(),
            s.domains.len()
        );
        for w in warnings {
            println!("warning: {w}");
        }
    }
    Ok(())
}
