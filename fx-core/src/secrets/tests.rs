use std::sync::Arc;

use super::keyring::Keyring;
use super::{SecretRecords, SecretValue, Vault};
use crate::ErrorKind;

fn value(text: &str) -> SecretValue {
    SecretValue::new(text).unwrap()
}

fn store() -> (
    tempfile::TempDir,
    Arc<crate::store::embedded::SqliteStateStore>,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite");
    let store =
        futures::executor::block_on(crate::store::embedded::SqliteStateStore::open(&path)).unwrap();
    (dir, Arc::new(store))
}

#[test]
fn a_value_prints_as_stars() {
    let v = value("hunter2");
    assert_eq!(format!("{v:?} {v}"), "SecretValue(***) ***");
    assert!(SecretValue::new("x".repeat(super::MAX_SECRET_BYTES + 1)).is_err());
}

#[test]
fn keyring_text_is_parsed_and_checked() {
    let a = Keyring::generate_line("a").unwrap();
    let b = Keyring::generate_line("b").unwrap();
    let ring = Keyring::parse(&format!("# keys\n{a}\n\n{b} # old\n")).unwrap();
    assert_eq!(ring.ids(), ["a", "b"]);
    assert_eq!(ring.primary(), "a");
    assert_eq!(
        Keyring::parse(&format!("{a},{b}")).unwrap().ids(),
        ["a", "b"]
    );
    assert!(format!("{ring:?}").contains("\"a\""));
    assert!(
        !format!("{ring:?}").contains(&a[2..]),
        "a key leaks into Debug"
    );
    for bad in ["", "# nothing", "a", "a:00", &format!("{a}\n{a}"), "a b:00"] {
        let e = Keyring::parse(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid, "{bad:?}");
    }
    assert!(Keyring::generate_line("bad id").is_err());
}

#[test]
fn a_sealed_value_opens_only_with_its_key_and_name() {
    let a = Keyring::generate_line("a").unwrap();
    let b = Keyring::generate_line("b").unwrap();
    let ring = Keyring::parse(&a).unwrap();
    let (key, sealed) = ring.seal("db-password", &value("hunter2")).unwrap();
    assert_eq!(key, "a");
    assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
    assert_eq!(
        ring.open("db-password", "a", &sealed).unwrap().expose(),
        "hunter2"
    );
    // Two seals of one value differ (random nonces).
    assert_ne!(
        ring.seal("db-password", &value("hunter2")).unwrap().1,
        sealed
    );
    // Under another name: refused (the name is the associated data).
    let e = ring.open("api-key", "a", &sealed).unwrap_err();
    assert!(e.message().contains("does not open"), "{e}");
    // Altered: refused.
    let mut altered = sealed.clone();
    *altered.last_mut().unwrap() ^= 1;
    assert!(ring.open("db-password", "a", &altered).is_err());
    assert!(ring.open("db-password", "a", &sealed[..5]).is_err());
    // A key of the same id but other bytes: refused, without the value in the message.
    let other = Keyring::parse(&format!("a:{}", &b[2..])).unwrap();
    let e = other.open("db-password", "a", &sealed).unwrap_err();
    assert!(!e.to_string().contains("hunter2"));
    // A key the ring lacks: named.
    let e = Keyring::parse(&b)
        .unwrap()
        .open("db-password", "a", &sealed)
        .unwrap_err();
    assert!(e.message().contains("\"a\""), "{e}");
}

#[test]
fn settings_read_a_file_or_a_variable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    std::fs::write(&file, Keyring::generate_line("f1").unwrap()).unwrap();
    let settings = super::SecretsSettings {
        key_file: Some(file),
        key_env: "FX_TEST_UNSET_SECRETS_KEY_1".into(),
    };
    assert_eq!(settings.keyring().unwrap().unwrap().ids(), ["f1"]);
    let none = super::SecretsSettings {
        key_file: None,
        key_env: "FX_TEST_UNSET_SECRETS_KEY_2".into(),
    };
    assert!(none.keyring().unwrap().is_none());
    let missing = super::SecretsSettings {
        key_file: Some(dir.path().join("nope")),
        ..none
    };
    let e = missing.keyring().unwrap_err();
    assert!(e.message().contains("server.secrets.key_file"), "{e}");
}

#[tokio::test]
async fn the_vault_seals_delivers_per_pool_and_rekeys() {
    let (_dir, store) = store();
    let a = Keyring::generate_line("a").unwrap();
    let b = Keyring::generate_line("b").unwrap();
    let vault = Vault::new(store.clone(), Some(Keyring::parse(&a).unwrap()));
    let meta = vault
        .set(
            "db-password",
            &value("hunter2"),
            vec!["default".into()],
            "alice",
        )
        .await
        .unwrap();
    assert_eq!((meta.version, meta.key_id.as_str()), (1, "a"));
    vault
        .set("gpu-token", &value("tok"), vec!["gpu".into()], "alice")
        .await
        .unwrap();
    vault
        .set("shared", &value("all"), vec!["*".into()], "alice")
        .await
        .unwrap();
    let default = vault.values_for("default").await.unwrap();
    let names: Vec<&str> = default.keys().map(String::as_str).collect();
    assert_eq!(names, ["db-password", "shared"]);
    assert_eq!(default["db-password"].expose(), "hunter2");
    let gpu = vault.values_for("gpu").await.unwrap();
    assert_eq!(gpu.keys().collect::<Vec<_>>(), ["gpu-token", "shared"]);

    // The stored record holds no plaintext.
    let stored = store.secret("db-password").await.unwrap().unwrap();
    assert!(!stored.sealed.windows(7).any(|w| w == b"hunter2"));

    // Bad names and pools are refused before anything is stored.
    for (name, pools) in [
        ("../x", vec!["default"]),
        ("ok", vec![]),
        ("ok", vec!["Bad Pool"]),
    ] {
        let pools = pools.into_iter().map(String::from).collect();
        let e = vault
            .set(name, &value("v"), pools, "alice")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid);
    }

    // Rotation: a new first key; old secrets still open, rekey moves them to it.
    let rotated = Vault::new(
        store.clone(),
        Some(Keyring::parse(&format!("{b}\n{a}")).unwrap()),
    );
    assert_eq!(rotated.values_for("default").await.unwrap().len(), 2);
    assert_eq!(rotated.rekey().await.unwrap(), 3);
    assert_eq!(rotated.rekey().await.unwrap(), 0);
    for meta in rotated.list().await.unwrap() {
        assert_eq!(meta.key_id, "b", "{meta:?}");
        assert_eq!(meta.version, 1, "a re-seal changes no version");
    }
    // With the old key gone, everything still opens.
    let only_b = Vault::new(store.clone(), Some(Keyring::parse(&b).unwrap()));
    assert_eq!(
        only_b.values_for("default").await.unwrap()["db-password"].expose(),
        "hunter2"
    );
    // A vault without the key delivers what it can open and logs the rest.
    let only_a = Vault::new(store.clone(), Some(Keyring::parse(&a).unwrap()));
    assert!(only_a.values_for("default").await.unwrap().is_empty());
    assert!(only_a.rekey().await.is_err());

    // Without a keyring: listing and deleting work, sealing and opening say how to configure.
    let bare = Vault::new(store.clone(), None);
    assert_eq!(bare.list().await.unwrap().len(), 3);
    let e = bare
        .set("x", &value("v"), vec!["default".into()], "alice")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.message().contains("FX_SECRETS_KEY"), "{e}");
    assert!(bare.delete("shared").await.unwrap());
    assert!(!bare.delete("shared").await.unwrap());
}

#[tokio::test]
async fn the_number_of_secrets_is_bounded() {
    let (_dir, store) = store();
    let vault = Vault::new(
        store.clone(),
        Some(Keyring::parse(&Keyring::generate_line("a").unwrap()).unwrap()),
    );
    for i in 0..super::MAX_SECRETS {
        vault
            .set(
                &format!("s{i}"),
                &value("v"),
                vec!["default".into()],
                "alice",
            )
            .await
            .unwrap();
    }
    let e = vault
        .set("one-more", &value("v"), vec!["default".into()], "alice")
        .await
        .unwrap_err();
    assert!(e.message().contains("delete one first"), "{e}");
    // Changing one that exists is still allowed.
    let meta = vault
        .set("s0", &value("w"), vec!["default".into()], "alice")
        .await
        .unwrap();
    assert_eq!(meta.version, 2);
}
