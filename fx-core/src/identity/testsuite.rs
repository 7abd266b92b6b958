//! The conformance suite of the identity store port, run by every backend's tests. Names carry
//! a unique suffix, so it also runs against a shared database.

// Test code that lives in the library so that every backend can run it; a failed check
// panics, as in any test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};

use super::store::{Account, AuditOutcome, AuditQuery, AuditRecord, IdentityStore, TokenRecord};
use super::{Action, Grant, Pattern, PrincipalKind, Role, Rule, Scope, Subject};
use crate::error::ErrorKind;
use crate::testsupport::unique;

/// Runs every check against `store`.
pub async fn run(store: &dyn IdentityStore) {
    accounts_are_created_once_read_updated_and_deleted(store).await;
    tokens_belong_to_accounts_and_are_revoked_once(store).await;
    rules_are_added_once_and_deleted(store).await;
    the_first_uploader_owns_a_package(store).await;
    the_audit_log_is_listed_newest_first_filtered_and_paged(store).await;
}

/// Now, to the microsecond (what every store keeps).
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

fn account(name: &str, kind: PrincipalKind) -> Account {
    let at = now();
    Account {
        name: name.to_string(),
        kind,
        display_name: format!("{name} (test)"),
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        groups: vec!["ops".into(), "payments".into()],
        disabled: false,
        created_at: at,
        updated_at: at,
    }
}

fn token(id: &str, owner: &str) -> TokenRecord {
    TokenRecord {
        id: id.to_string(),
        owner: owner.to_string(),
        name: "ci".into(),
        secret_hash: "ab".repeat(32),
        scope: Scope {
            actions: Some(BTreeSet::from([Action::PackageUpload])),
            pattern: Some(Pattern::parse("payments*").unwrap()),
        },
        created_at: now(),
        expires_at: Some(now() + Duration::days(30)),
        last_used_at: None,
        revoked_at: None,
    }
}

async fn accounts_are_created_once_read_updated_and_deleted(store: &dyn IdentityStore) {
    let name = unique("alice");
    let alice = account(&name, PrincipalKind::User);
    store.create_account(&alice).await.unwrap();
    assert!(store.has_accounts().await.unwrap());
    assert_eq!(store.account(&name).await.unwrap(), Some(alice.clone()));
    // One namespace for users and service accounts.
    let err = store
        .create_account(&account(&name, PrincipalKind::ServiceAccount))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");

    let bad = Account {
        name: "Not A Name".into(),
        ..alice.clone()
    };
    assert_eq!(
        store.create_account(&bad).await.unwrap_err().kind(),
        ErrorKind::Invalid
    );

    let changed = Account {
        display_name: "Alice".into(),
        password_hash: None,
        groups: vec!["viewers".into()],
        disabled: true,
        updated_at: now() + Duration::seconds(1),
        ..alice.clone()
    };
    store.update_account(&changed).await.unwrap();
    let stored = store.account(&name).await.unwrap().unwrap();
    assert_eq!(stored, changed);
    assert_eq!(
        stored.created_at, alice.created_at,
        "created_at never changes"
    );
    let ghost = account(&unique("ghost"), PrincipalKind::User);
    assert_eq!(
        store.update_account(&ghost).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );

    let listed = store.accounts().await.unwrap();
    assert!(listed.iter().any(|a| a.name == name));
    let names: Vec<&str> = listed.iter().map(|a| a.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "accounts are listed by name");

    assert!(store.delete_account(&name).await.unwrap());
    assert!(!store.delete_account(&name).await.unwrap());
    assert_eq!(store.account(&name).await.unwrap(), None);
}

async fn tokens_belong_to_accounts_and_are_revoked_once(store: &dyn IdentityStore) {
    let owner = unique("svc");
    store
        .create_account(&account(&owner, PrincipalKind::ServiceAccount))
        .await
        .unwrap();
    let id = unique("tok");
    let t = token(&id, &owner);
    store.create_token(&t).await.unwrap();
    assert_eq!(store.token(&id).await.unwrap(), Some(t.clone()));
    assert_eq!(
        store.create_token(&t).await.unwrap_err().kind(),
        ErrorKind::Conflict
    );
    let orphan = token(&unique("tok"), &unique("nobody"));
    assert_eq!(
        store.create_token(&orphan).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );

    let second = TokenRecord {
        created_at: t.created_at + Duration::seconds(1),
        ..token(&unique("tok"), &owner)
    };
    store.create_token(&second).await.unwrap();
    let mine = store.tokens(Some(&owner)).await.unwrap();
    let ids: Vec<&str> = mine.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, [second.id.as_str(), id.as_str()], "newest first");
    assert!(store.tokens(None).await.unwrap().len() >= 2);

    let used = now() + Duration::seconds(5);
    store.touch_token(&id, used).await.unwrap();
    // An earlier use recorded late does not move it back.
    store
        .touch_token(&id, used - Duration::seconds(3))
        .await
        .unwrap();
    assert_eq!(
        store.token(&id).await.unwrap().unwrap().last_used_at,
        Some(used)
    );

    let at = now();
    assert!(store.revoke_token(&id, at).await.unwrap());
    assert!(!store.revoke_token(&id, at).await.unwrap(), "revoked once");
    assert!(!store.revoke_token(&unique("tok"), at).await.unwrap());
    assert_eq!(
        store.token(&id).await.unwrap().unwrap().revoked_at,
        Some(at)
    );

    // Purging drops what expired or was revoked before the time given, and nothing else.
    let expired = TokenRecord {
        expires_at: Some(now() - Duration::days(9)),
        ..token(&unique("tok"), &owner)
    };
    store.create_token(&expired).await.unwrap();
    let purged = store.purge_tokens(now() - Duration::days(7)).await.unwrap();
    assert!(purged >= 1, "{purged}");
    assert_eq!(store.token(&expired.id).await.unwrap(), None);
    assert!(
        store.token(&id).await.unwrap().is_some(),
        "revoked just now: kept"
    );
    assert!(store.token(&second.id).await.unwrap().is_some());
    store
        .purge_tokens(now() + Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(
        store.token(&id).await.unwrap(),
        None,
        "revoked before: purged"
    );

    // Deleting the account deletes its tokens.
    assert!(store.delete_account(&owner).await.unwrap());
    assert_eq!(store.token(&second.id).await.unwrap(), None);
    assert!(store.tokens(Some(&owner)).await.unwrap().is_empty());
}

async fn rules_are_added_once_and_deleted(store: &dyn IdentityStore) {
    let group = unique("team");
    let rule = Rule {
        subject: Subject::Group(group.clone()),
        grant: Grant::Role(Role::Developer),
        pattern: Pattern::parse(&format!("{group}-*")).unwrap(),
    };
    let at = now();
    let stored = store.add_rule(&rule, "user:root", at).await.unwrap();
    assert_eq!(stored.rule, rule);
    assert_eq!(stored.created_by, "user:root");
    assert_eq!(stored.created_at, at);
    let err = store.add_rule(&rule, "user:root", at).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");

    let action = Rule {
        grant: Grant::Action(Action::PoolUse),
        ..rule.clone()
    };
    let other = store.add_rule(&action, "user:root", at).await.unwrap();
    assert!(other.id > stored.id, "ids increase");
    let listed = store.rules().await.unwrap();
    let mine: Vec<_> = listed
        .iter()
        .filter(|r| r.rule.subject == rule.subject)
        .collect();
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[0], &stored, "listed by id");
    assert_eq!(mine[1].rule, action);

    assert!(store.delete_rule(stored.id).await.unwrap());
    assert!(!store.delete_rule(stored.id).await.unwrap());
    assert!(store
        .rules()
        .await
        .unwrap()
        .iter()
        .all(|r| r.id != stored.id));
    assert!(store.delete_rule(other.id).await.unwrap());
}

async fn the_first_uploader_owns_a_package(store: &dyn IdentityStore) {
    let package = unique("payments");
    assert_eq!(store.package_owner(&package).await.unwrap(), None);
    let alice = Subject::User(unique("alice"));
    let mallory = Subject::User(unique("mallory"));
    assert_eq!(store.claim_package(&package, &alice).await.unwrap(), alice);
    assert_eq!(
        store.claim_package(&package, &mallory).await.unwrap(),
        alice,
        "a second claim returns the first owner"
    );
    let team = Subject::Group(unique("team"));
    store.set_package_owner(&package, &team).await.unwrap();
    assert_eq!(store.package_owner(&package).await.unwrap(), Some(team));

    // Concurrent first claims: one owner, which every claimant is told.
    let contested = unique("contested");
    let claimants: Vec<Subject> = (0..8).map(|i| Subject::User(format!("u{i}"))).collect();
    let owners = futures::future::join_all(
        claimants
            .iter()
            .map(|who| store.claim_package(&contested, who)),
    )
    .await;
    let owners: BTreeSet<Subject> = owners.into_iter().map(Result::unwrap).collect();
    assert_eq!(owners.len(), 1, "{owners:?}");
}

async fn the_audit_log_is_listed_newest_first_filtered_and_paged(store: &dyn IdentityStore) {
    let who = format!("user:{}", unique("auditor"));
    let base = now();
    let mut ids = Vec::new();
    for i in 0..5 {
        let record = AuditRecord {
            id: 0,
            at: base + Duration::milliseconds(i),
            principal: who.clone(),
            action: if i % 2 == 0 {
                "package:upload".into()
            } else {
                "login".into()
            },
            resource: format!("payments@1.0.{i}"),
            source: "127.0.0.1".into(),
            outcome: if i == 3 {
                AuditOutcome::Denied
            } else {
                AuditOutcome::Ok
            },
            detail: "x".repeat(if i == 4 { 5000 } else { 10 }),
        };
        ids.push(store.append_audit(&record).await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    let mine = |q: AuditQuery| AuditQuery {
        principal: Some(who.clone()),
        ..q
    };
    let all = store.audit(&mine(AuditQuery::default())).await.unwrap();
    let got: Vec<i64> = all.items.iter().map(|r| r.id).collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(got, newest_first);
    assert_eq!(all.next_cursor, None);
    assert!(
        all.items[0].detail.len() <= super::store::MAX_AUDIT_DETAIL + 4,
        "details are clipped"
    );

    let uploads = store
        .audit(&mine(AuditQuery {
            action: Some("package:".into()),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(uploads.items.len(), 3);
    let denied = store
        .audit(&mine(AuditQuery {
            outcome: Some(AuditOutcome::Denied),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(denied.items.len(), 1);
    assert_eq!(denied.items[0].resource, "payments@1.0.3");
    let by_resource = store
        .audit(&mine(AuditQuery {
            resource: Some("payments@1.0.1".into()),
            since: Some(base),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(by_resource.items.len(), 1);

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .audit(&mine(AuditQuery {
                cursor: cursor.clone(),
                limit: Some(2),
                ..Default::default()
            }))
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|r| r.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, newest_first, "pages cover every entry once");
    let err = store
        .audit(&AuditQuery {
            cursor: Some("nonsense".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
}
