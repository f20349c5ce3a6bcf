//! `protocol/env-names.txt` (read by the deploy tool to refuse misspelt settings in stack
//! files) names exactly the environment variables the settings accept.

use std::collections::BTreeSet;

use fullslack_chat::config::Settings;
use serde_json::Value;

/// `FULLSLACK_<KEY>` for top-level settings, `FULLSLACK_<SECTION>__<KEY>` inside a section.
fn names_of(prefix: &str, v: &Value, out: &mut BTreeSet<String>) {
    let Value::Object(map) = v else { return };
    for (k, v) in map {
        let name = format!("{prefix}{}", k.to_uppercase());
        match v {
            Value::Object(_) => names_of(&format!("{name}__"), v, out),
            _ => {
                out.insert(name);
            }
        }
    }
}

#[test]
fn env_names_file_matches_the_settings() {
    let settings = serde_json::to_value(Settings::default()).expect("settings serialize");
    let mut expected = BTreeSet::new();
    names_of("FULLSLACK_", &settings, &mut expected);
    // Flags of the binary that only exist as variables (main.rs).
    expected.insert("FULLSLACK_CONFIG".to_string());
    let listed: BTreeSet<String> = fullslack_protocol::settings::server_env_names()
        .map(str::to_string)
        .collect();
    let missing: Vec<_> = expected.difference(&listed).collect();
    let extra: Vec<_> = listed.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "update protocol/env-names.txt: missing {missing:?}, not settings {extra:?}"
    );
}
