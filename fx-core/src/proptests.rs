//! Property tests of everything that parses input from outside: the CloudEvent decoders (HTTP
//! and bus bindings, binary and structured mode), the package archive and its manifest, and
//! handler JSON. Arbitrary input never panics: it decodes, or gives an `Invalid` error with a
//! message.

use proptest::prelude::*;

use crate::event::{decode_binding, decode_message, decode_structured, Message};
use crate::handler::Handler;
use crate::package::{Manifest, PackageArchive};
use crate::ErrorKind;

/// Header names a decoder looks at, and some it should ignore.
fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("content-type".to_string()),
        prop::sample::select(vec![
            "specversion",
            "id",
            "source",
            "type",
            "subject",
            "time",
            "dataschema",
            "datacontenttype",
            "partitionkey",
            "Tenant",
            "x_y",
            "",
        ])
        .prop_flat_map(|attr| {
            prop::sample::select(vec!["ce_", "ce-", "CE_", ""])
                .prop_map(move |prefix| format!("{prefix}{attr}"))
        }),
        "[ -~]{0,12}",
    ]
}

/// Header values: typical ones, and arbitrary text with control characters.
fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "1.0",
            "0.3",
            "application/json",
            "application/cloudevents+json",
            "application/cloudevents-batch+json",
            "text/plain; charset=utf-8",
            "2026-12-02T10:00:00Z",
            "not a time",
            "/s",
            "http://example.com/schema",
        ])
        .prop_map(str::to_string),
        any::<String>(),
        "\\PC{0,3000}",
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<Vec<u8>>(),
        Just(br#"{"n":1}"#.to_vec()),
        Just(b"".to_vec()),
        "\\PC{0,64}".prop_map(String::into_bytes),
    ]
}

/// JSON values of a few levels, with the strings a CloudEvent or handler has.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        prop::sample::select(vec![
            "1.0",
            "id",
            "source",
            "type",
            "exact",
            "prefix",
            "all",
            "any",
            "not",
            "attribute",
            "value",
            "name",
            "package",
            "h",
            "",
        ])
        .prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "specversion",
                    "id",
                    "source",
                    "type",
                    "data",
                    "data_base64",
                    "subject",
                    "time",
                    "name",
                    "filter",
                    "package",
                    "limits",
                    "retry",
                    "config",
                    "secrets",
                    "exact",
                    "all",
                    "not",
                    "attribute",
                    "value",
                    "version",
                    "x",
                ])
                .prop_map(str::to_string),
                inner,
                0..8,
            )
            .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

/// An error from decoding untrusted input: `Invalid`, with a message.
fn clear(err: &crate::Error) -> bool {
    err.kind() == ErrorKind::Invalid && !err.message().is_empty()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn the_binding_decoders_never_panic(
        headers in prop::collection::vec((header_name(), header_value()), 0..10),
        body in body(),
        http in any::<bool>(),
    ) {
        let prefix = if http { "ce-" } else { "ce_" };
        let result = decode_binding(prefix, headers.iter().map(|(k, v)| (k.as_str(), v.as_str())), &body);
        if let Err(e) = &result {
            prop_assert!(clear(e), "{}", e.chain());
        }
        let message = Message { key: None, headers, payload: body };
        if let Err(e) = decode_message(&message) {
            prop_assert!(clear(&e), "{}", e.chain());
        }
    }

    #[test]
    fn the_structured_decoder_never_panics(value in json(), bytes in any::<Vec<u8>>()) {
        for input in [value.to_string().into_bytes(), bytes] {
            match decode_structured(&input) {
                // What decodes passes the one validation.
                Ok(event) => prop_assert!(crate::event::validate(&event).is_ok()),
                Err(e) => prop_assert!(clear(&e), "{}", e.chain()),
            }
        }
    }

    #[test]
    fn a_structured_event_with_arbitrary_attribute_values_decodes_or_is_refused(
        id in any::<String>(),
        ty in any::<String>(),
        extension in "[a-zA-Z_-]{1,70}",
        value in any::<String>(),
    ) {
        let mut object = serde_json::json!({
            "specversion": "1.0", "id": id, "source": "/s", "type": ty,
        });
        object[extension.as_str()] = serde_json::Value::String(value);
        match decode_structured(object.to_string().as_bytes()) {
            Ok(event) => prop_assert!(crate::event::validate(&event).is_ok()),
            Err(e) => prop_assert!(clear(&e), "{}", e.chain()),
        }
    }

    #[test]
    fn the_package_archive_parser_never_panics(bytes in any::<Vec<u8>>(), gzip in any::<bool>()) {
        let input = if gzip {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let _ = gz.write_all(&bytes);
            gz.finish().unwrap_or_default()
        } else {
            bytes
        };
        if let Err(e) = PackageArchive::parse(&input, 1 << 20) {
            prop_assert!(clear(&e), "{}", e.chain());
        }
    }

    #[test]
    fn the_manifest_parser_never_panics(text in "\\PC{0,400}", value in json()) {
        for input in [text, format!("name = \"p\"\nversion = \"1.0.0\"\n[limits]\nmemory_mb = {value}\n")] {
            if let Err(e) = Manifest::parse(&input) {
                prop_assert!(clear(&e), "{}", e.chain());
            }
        }
    }

    #[test]
    fn handler_json_decodes_or_is_refused(value in json()) {
        if let Ok(handler) = serde_json::from_value::<Handler>(value) {
            if let Err(e) = handler.validate() {
                prop_assert!(clear(&e), "{}", e.chain());
            }
        }
    }
}
