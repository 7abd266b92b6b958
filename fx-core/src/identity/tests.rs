use std::collections::BTreeSet;

use super::*;

fn rule(subject: &str, grant: Grant, pattern: &str) -> Rule {
    Rule {
        subject: Subject::parse(subject).unwrap(),
        grant,
        pattern: Pattern::parse(pattern).unwrap(),
    }
}

fn allowed(rules: &[Rule], who: &Principal, action: Action, name: &str) -> bool {
    authorize(rules, who, action, Resource::Named(name)).is_ok()
}

#[test]
fn nothing_is_allowed_without_a_rule() {
    let alice = Principal::user("alice");
    for action in Action::ALL {
        assert!(authorize(&[], &alice, action, Resource::Any).is_err());
        assert!(!allowed(&[], &alice, action, "x"));
    }
}

#[test]
fn admin_on_everything_may_do_every_action_but_receive_secret_values() {
    let rules = [rule("user:root", Grant::Role(Role::Admin), "*")];
    let root = Principal::user("root");
    assert!(authorize(&rules, &root, Action::SecretDeliver, Resource::Any).is_err());
    assert!(!allowed(&rules, &root, Action::SecretDeliver, "default"));
    // Only a rule naming the action grants it, e.g. to a pool's executors.
    let executors = [rule(
        "service:executor-gpu",
        Grant::Action(Action::SecretDeliver),
        "gpu",
    )];
    let gpu = Principal::service("executor-gpu");
    assert!(allowed(&executors, &gpu, Action::SecretDeliver, "gpu"));
    assert!(!allowed(&executors, &gpu, Action::SecretDeliver, "default"));
    for action in Action::ALL {
        if action == Action::SecretDeliver {
            continue;
        }
        assert!(
            authorize(&rules, &root, action, Resource::Any).is_ok(),
            "{action}"
        );
        assert!(allowed(&rules, &root, action, "payments"), "{action}");
    }
}

#[test]
fn a_prefix_rule_covers_its_prefix_only_and_never_the_platform() {
    let rules = [rule("user:dev", Grant::Role(Role::Admin), "team-a-*")];
    let dev = Principal::user("dev");
    assert!(allowed(
        &rules,
        &dev,
        Action::PackageUpload,
        "team-a-orders"
    ));
    assert!(!allowed(
        &rules,
        &dev,
        Action::PackageUpload,
        "team-b-orders"
    ));
    assert!(!allowed(&rules, &dev, Action::PackageUpload, "team-a"));
    // A collection question is answered yes; the list is filtered by name afterwards.
    assert!(authorize(&rules, &dev, Action::HandlerRead, Resource::Any).is_ok());
    // Every handler at once needs `*`.
    assert!(authorize(&rules, &dev, Action::ExecutionRead, Resource::All).is_err());
    let everything = [rule("user:dev", Grant::Role(Role::Viewer), "*")];
    assert!(authorize(&everything, &dev, Action::ExecutionRead, Resource::All).is_ok());
    // Admin on a prefix is not admin of the platform.
    assert!(authorize(&rules, &dev, Action::UserAdmin, Resource::Any).is_err());
    assert!(!allowed(&rules, &dev, Action::AuditRead, "*"));
}

#[test]
fn exact_patterns_match_one_name() {
    let rules = [rule("user:ci", Grant::Action(Action::PoolUse), "gpu")];
    let ci = Principal::user("ci");
    assert!(allowed(&rules, &ci, Action::PoolUse, "gpu"));
    assert!(!allowed(&rules, &ci, Action::PoolUse, "gpu-2"));
    assert!(!allowed(&rules, &ci, Action::SecretGrant, "gpu"));
}

#[test]
fn roles_grant_what_they_say() {
    let viewer = [rule("user:v", Grant::Role(Role::Viewer), "*")];
    let v = Principal::user("v");
    assert!(allowed(&viewer, &v, Action::ExecutionRead, "h"));
    assert!(!allowed(&viewer, &v, Action::ExecutionRedrive, "h"));
    assert!(!allowed(&viewer, &v, Action::EventEmit, "com.example"));
    assert!(!allowed(&viewer, &v, Action::PackageUpload, "p"));

    let producer = [rule(
        "service:shop",
        Grant::Role(Role::Producer),
        "com.shop.*",
    )];
    let shop = Principal::service("shop");
    assert!(allowed(
        &producer,
        &shop,
        Action::EventEmit,
        "com.shop.order"
    ));
    assert!(!allowed(
        &producer,
        &shop,
        Action::EventEmit,
        "com.bank.transfer"
    ));
    assert!(!allowed(&producer, &shop, Action::ExecutionRead, "h"));

    let operator = [rule("user:o", Grant::Role(Role::Operator), "*")];
    let o = Principal::user("o");
    assert!(allowed(&operator, &o, Action::ExecutionRedrive, "h"));
    assert!(authorize(&operator, &o, Action::AuditRead, Resource::Any).is_ok());
    assert!(!allowed(&operator, &o, Action::HandlerWrite, "h"));
    assert!(authorize(&operator, &o, Action::UserAdmin, Resource::Any).is_err());

    let developer = [rule("user:d", Grant::Role(Role::Developer), "*")];
    let d = Principal::user("d");
    assert!(allowed(&developer, &d, Action::HandlerWrite, "h"));
    assert!(allowed(&developer, &d, Action::SecretGrant, "db-password"));
    assert!(!allowed(&developer, &d, Action::SecretWrite, "db-password"));
    assert!(authorize(&developer, &d, Action::UserAdmin, Resource::Any).is_err());
}

#[test]
fn rules_apply_to_their_subject_only() {
    let rules = [
        rule("user:alice", Grant::Role(Role::Developer), "*"),
        rule("group:ops", Grant::Role(Role::Operator), "*"),
        rule("service:alice", Grant::Role(Role::Producer), "*"),
    ];
    let bob = Principal::user("bob");
    assert!(!allowed(&rules, &bob, Action::PackageRead, "p"));
    let mut bob_in_ops = bob.clone();
    bob_in_ops.groups.push("ops".into());
    assert!(allowed(&rules, &bob_in_ops, Action::PackageRead, "p"));
    // A service account is not the user of the same name, and the other way round.
    let service = Principal::service("alice");
    assert!(!allowed(&rules, &service, Action::PackageUpload, "p"));
    assert!(allowed(&rules, &service, Action::EventEmit, "t"));
    assert!(!allowed(
        &rules,
        &Principal::user("alice"),
        Action::SecretWrite,
        "s"
    ));
}

#[test]
fn a_token_scope_narrows_and_never_widens() {
    let rules = [rule("user:alice", Grant::Role(Role::Developer), "*")];
    let mut alice = Principal::user("alice");
    alice.scope = Some(Scope {
        actions: Some(BTreeSet::from([
            Action::PackageRead,
            Action::PackageUpload,
            Action::UserAdmin,
        ])),
        pattern: Some(Pattern::parse("payments*").unwrap()),
    });
    assert!(allowed(&rules, &alice, Action::PackageUpload, "payments"));
    assert!(!allowed(&rules, &alice, Action::PackageUpload, "orders"));
    let denied = authorize(
        &rules,
        &alice,
        Action::HandlerWrite,
        Resource::Named("payments"),
    )
    .unwrap_err();
    assert!(
        denied.to_string().contains("outside the token's scope"),
        "{denied}"
    );
    // The scope names user:admin, but the owner has no such rule.
    let denied = authorize(&rules, &alice, Action::UserAdmin, Resource::Any).unwrap_err();
    assert_eq!(denied.to_string(), "user:alice may not user:admin on \"*\"");
}

#[test]
fn patterns_and_subjects_are_checked() {
    for bad in ["", "a*b", "**", "has space", "tab\t", &"x".repeat(300)] {
        assert!(Pattern::parse(bad).is_err(), "{bad:?}");
    }
    for good in ["*", "payments", "payments-*", "com.example.Order"] {
        assert_eq!(Pattern::parse(good).unwrap().as_str(), good);
    }
    for bad in [
        "alice",
        "role:alice",
        "user:",
        "user:Alice Smith",
        "group:a/b",
    ] {
        assert!(Subject::parse(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        Subject::parse("group:ops").unwrap().to_string(),
        "group:ops"
    );
}

#[test]
fn rules_round_trip_as_json() {
    let rule: Rule = serde_json::from_value(serde_json::json!({
        "subject": "group:payments",
        "grant": {"role": "developer"},
        "pattern": "payments-*",
    }))
    .unwrap();
    assert_eq!(rule.grant, Grant::Role(Role::Developer));
    let back: Rule = serde_json::from_value(serde_json::to_value(&rule).unwrap()).unwrap();
    assert_eq!(back, rule);
    let action: Rule = serde_json::from_value(serde_json::json!({
        "subject": "user:ci", "grant": {"action": "pool:use"}, "pattern": "gpu",
    }))
    .unwrap();
    assert_eq!(action.grant, Grant::Action(Action::PoolUse));
    assert!(serde_json::from_value::<Rule>(serde_json::json!({
        "subject": "user:ci", "grant": {"action": "pool:steal"}, "pattern": "gpu",
    }))
    .is_err());
}

#[test]
fn action_and_role_names_parse_back() {
    for action in Action::ALL {
        assert_eq!(Action::parse(action.name()).unwrap(), action);
        assert_eq!(
            serde_json::to_value(action).unwrap(),
            serde_json::json!(action.name())
        );
    }
    for role in Role::ALL {
        assert_eq!(Role::parse(role.name()).unwrap(), role);
    }
    assert!(Action::parse("package:delete")
        .unwrap_err()
        .to_string()
        .contains("package:upload"));
}
