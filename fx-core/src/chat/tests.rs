use super::*;

fn bundle() -> Bundle {
    let bundle: Bundle = serde_json::from_value(serde_json::json!({
        "name": "ops",
        "description": "operations",
        "slack": {"signing_secret": "slack-signing"},
        "allow": ["U1", "U2"],
        "commands": [
            {"name": "deploy", "handler": "deployer", "syntax": "<service> [version]", "help": "deploys a service"},
            {"name": "say", "handler": "sayer", "syntax": "<words...>", "allow": ["U2"]},
            {"name": "ping", "handler": "pinger"},
        ],
    }))
    .unwrap();
    bundle.validate().unwrap();
    bundle
}

fn user(id: &str) -> ChatUser {
    ChatUser {
        id: id.into(),
        name: String::new(),
    }
}

#[test]
fn a_slash_command_or_the_first_word_names_the_command() {
    let b = bundle();
    let (c, args, text) = b.resolve("/deploy", "api 1.2", &user("U1")).unwrap();
    assert_eq!(c.name, "deploy");
    assert_eq!(args["service"], "api");
    assert_eq!(args["version"], "1.2");
    assert_eq!(text, "api 1.2");
    let (c, args, _) = b.resolve("/ops", "deploy  api", &user("U1")).unwrap();
    assert_eq!(c.handler, "deployer");
    assert_eq!(args.len(), 1);
    let (c, args, _) = b
        .resolve("", "say hello  there world", &user("U2"))
        .unwrap();
    assert_eq!(c.name, "say");
    assert_eq!(args["words"], "hello there world");
    let (c, args, _) = b.resolve("/ops", "ping", &user("U1")).unwrap();
    assert_eq!(c.name, "ping");
    assert!(args.is_empty());
}

#[test]
fn help_unknown_denied_and_usage_are_told() {
    let b = bundle();
    let help = b.resolve("/ops", "", &user("U1")).unwrap_err();
    assert!(matches!(help, NotRun::Help(_)));
    assert!(help
        .text()
        .contains("`/ops deploy <service> [version]` — deploys a service"));
    assert!(matches!(
        b.resolve("/ops", "help", &user("U9")),
        Err(NotRun::Help(_))
    ));
    let unknown = b.resolve("/ops", "destroy all", &user("U1")).unwrap_err();
    assert!(matches!(unknown, NotRun::Unknown(_)), "{unknown:?}");
    assert!(unknown.text().contains("destroy"));
    // Not on the bundle's list; on it but not on the command's.
    let denied = b.resolve("/deploy", "api", &user("U9")).unwrap_err();
    assert!(matches!(denied, NotRun::Denied(_)));
    assert!(denied.text().contains("U9"));
    assert!(matches!(
        b.resolve("/ops", "say hi", &user("U1")),
        Err(NotRun::Denied(_))
    ));
    let usage = b.resolve("/deploy", "", &user("U1")).unwrap_err();
    assert!(matches!(usage, NotRun::Usage(_)));
    assert!(usage.text().contains("missing <service>"), "{usage:?}");
    let usage = b.resolve("/deploy", "a b c", &user("U1")).unwrap_err();
    assert!(usage.text().contains("unexpected \"c\""), "{usage:?}");
}

#[test]
fn star_lets_anyone_run_and_an_empty_list_nobody() {
    let mut b = bundle();
    b.allow = vec!["*".into()];
    assert!(b.resolve("/ops", "ping", &user("UX")).is_ok());
    b.allow.clear();
    assert!(matches!(
        b.resolve("/ops", "ping", &user("U1")),
        Err(NotRun::Denied(_))
    ));
}

#[test]
fn validation_names_the_field() {
    let base = serde_json::to_value(bundle()).unwrap();
    let cases = [
        (
            "/commands/0/syntax",
            serde_json::json!("[a] <b>"),
            "commands.syntax",
        ),
        (
            "/commands/0/syntax",
            serde_json::json!("<a...> <b>"),
            "rest argument",
        ),
        (
            "/commands/0/syntax",
            serde_json::json!("a"),
            "commands.syntax",
        ),
        ("/commands/1/name", serde_json::json!("deploy"), "twice"),
        ("/commands/0/name", serde_json::json!("help"), "help"),
        ("/allow/0", serde_json::json!("U-1"), "allow"),
        (
            "/slack/response_url_prefix",
            serde_json::json!("ftp://x"),
            "response_url_prefix",
        ),
        (
            "/slack/signing_secret",
            serde_json::json!("a b"),
            "signing_secret",
        ),
        (
            "/commands/0/handler",
            serde_json::json!("Bad"),
            "commands.handler",
        ),
    ];
    for (pointer, value, field) in cases {
        let mut json = base.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        match json.pointer_mut(parent).unwrap() {
            serde_json::Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
            object => {
                object[key] = value;
            }
        }
        let b: Bundle = serde_json::from_value(json).unwrap();
        let err = b.validate().unwrap_err();
        assert!(err.message().contains(field), "{pointer}: {err}");
    }
    let mut json = base.clone();
    json["commands"] = serde_json::json!([]);
    let b: Bundle = serde_json::from_value(json).unwrap();
    assert!(b.validate().unwrap_err().message().contains("commands"));
}

#[test]
fn mentions_are_stripped() {
    assert_eq!(strip_mention("<@U0LAN0Z89> deploy api"), "deploy api");
    assert_eq!(strip_mention("  deploy"), "deploy");
}

#[test]
fn replies_come_from_the_output_or_the_failure() {
    let event = |data: serde_json::Value| {
        crate::event::new_json_event("1", "/s", "com.example.out", data).unwrap()
    };
    let message = reply_of(
        &[event(
            serde_json::json!({"text": "hi", "blocks": [{"type": "divider"}], "secret": 1}),
        )],
        None,
    );
    assert_eq!(
        message,
        serde_json::json!({"text": "hi", "blocks": [{"type": "divider"}]})
    );
    assert_eq!(
        reply_of(&[event(serde_json::json!("plain"))], None),
        serde_json::json!({"text": "plain"})
    );
    let other = reply_of(&[event(serde_json::json!({"greeting": "Hello"}))], None);
    assert!(other["text"]
        .as_str()
        .unwrap()
        .contains("\"greeting\": \"Hello\""));
    assert!(reply_of(&[], None)["text"]
        .as_str()
        .unwrap()
        .contains("done"));
    assert!(reply_of(&[], Some("trap"))["text"]
        .as_str()
        .unwrap()
        .contains("failed: trap"));
    let long = "x".repeat(10_000);
    let clipped = reply_of(&[event(serde_json::json!(long))], None);
    assert_eq!(clipped, serde_json::json!({"text": long}));
}
