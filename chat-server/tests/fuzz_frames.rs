//! Property-based fuzzing of everything a client can put in a frame: the parser must answer
//! every input with a frame or a precise error, never panic, and echo a well-formed `ref`.

use fullslack_chat::protocol::parse_client_frame;
use proptest::prelude::*;

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        ".{0,40}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type".to_string()),
                    Just("ref".to_string()),
                    Just("channel".to_string()),
                    Just("client_id".to_string()),
                    Just("text".to_string()),
                    Just("channels".to_string()),
                    ".{0,12}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn frame_type() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("send".to_string()),
        Just("resume".to_string()),
        Just("read".to_string()),
        Just("react".to_string()),
        Just("typing".to_string()),
        Just("presence_subscribe".to_string()),
        ".{0,20}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(s in ".{0,400}") {
        let _ = parse_client_frame(&s);
    }

    #[test]
    fn arbitrary_json_gets_a_frame_or_a_coded_error(v in json_value(), ty in frame_type(), r in proptest::option::of(".{0,100}")) {
        let mut v = v;
        if let Some(obj) = v.as_object_mut() {
            obj.insert("type".into(), ty.into());
            if let Some(r) = r { obj.insert("ref".into(), r.into()); }
        }
        match parse_client_frame(&v.to_string()) {
            Ok(_) => {}
            Err(e) => {
                prop_assert!(["bad_frame", "unknown_type"].contains(&e.code));
                prop_assert!(!e.message.is_empty());
                if let Some(r) = e.reference { prop_assert!(r.chars().count() <= 64); }
            }
        }
    }
}
