//! What the CLI's check reports (`health --json`, `doctor --json`: `{"checks": [{name,
//! outcome, …}]}`) say, for assertions.

use serde_json::Value;

/// The names of the report's checks whose outcome is `outcome` (`ok`, `fail`, `skip`), in
/// report order.
pub fn checks_with_outcome<'a>(report: &'a Value, outcome: &str) -> Vec<&'a str> {
    report["checks"]
        .as_array()
        .expect("the report has a `checks` array")
        .iter()
        .filter(|c| c["outcome"] == outcome)
        .filter_map(|c| c["name"].as_str())
        .collect()
}
