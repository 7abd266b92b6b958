use std::path::{Path, PathBuf};

use chrono::TimeZone as _;
use serde_json::json;

use super::*;
use crate::backends::BackendSettings;
use crate::execution::{AttemptRecord, ExecutionId};
use crate::identity::PrincipalKind;
use crate::testsupport::queued_execution;
use crate::testsupport::HandlerBuilder;

async fn backends(dir: &Path) -> Backends {
    BackendSettings::default().build(dir).await.unwrap()
}

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 10, minute, 0).unwrap()
}

/// Fills `b` with one of everything; returns the archive bytes of its package.
async fn fill(b: &Backends) -> Vec<u8> {
    let archive = b"not really a package, but bytes with a digest".to_vec();
    let digest = PackageDigest::of(&archive);
    b.packages
        .put(&digest, bytes::Bytes::from(archive.clone()))
        .await
        .unwrap();
    let manifest: crate::package::Manifest =
        serde_json::from_value(json!({"name": "shop", "version": "1.0.0"})).unwrap();
    b.state
        .add_package_version(&PackageVersion {
            name: "shop".into(),
            version: "1.0.0".into(),
            digest,
            size: archive.len() as u64,
            manifest,
            uploaded_at: at(1),
            uploaded_by: Some("ada".into()),
        })
        .await
        .unwrap();
    b.state.set_alias("shop", "stable", "1.0.0").await.unwrap();
    let handler = HandlerBuilder::new("orders")
        .event_type("com.shop.order")
        .package("shop")
        .build();
    b.registry.put(&handler, Expect::Absent).await.unwrap();
    b.state
        .record_handler_change(&HandlerChange {
            name: "orders".into(),
            revision: 1,
            handler: Some(handler.clone()),
            at: at(2),
            by: Some("ada".into()),
        })
        .await
        .unwrap();
    b.identity
        .create_account(&Account {
            name: "ada".into(),
            kind: PrincipalKind::User,
            display_name: "Ada".into(),
            password_hash: Some("$argon2id$fake".into()),
            groups: vec!["ops".into()],
            disabled: false,
            created_at: at(0),
            updated_at: at(0),
        })
        .await
        .unwrap();
    b.secrets
        .put_secret(&SecretRecord {
            meta: serde_json::from_value(json!({
                "name": "api-key", "pools": ["default"], "key_id": "k1", "version": 1,
                "created_at": at(3), "updated_at": at(3), "updated_by": "ada"
            }))
            .unwrap(),
            sealed: vec![1, 2, 3, 250],
        })
        .await
        .unwrap();
    // A finished execution with two attempts, and one still queued (left out).
    let event =
        crate::event::new_json_event("e-1", "/shop", "com.shop.order", json!({"n": 1})).unwrap();
    let mut done = queued_execution("orders", event.clone(), at(5));
    done.id = ExecutionId::for_event(&event, "orders");
    b.state.create_execution(&done).await.unwrap();
    done.attempts = 2;
    done.status = ExecutionStatus::Succeeded;
    done.output = vec![event.clone()];
    done.started_at = Some(at(7));
    done.finished_at = Some(at(8));
    done.duration_us = Some(1500);
    done.attempt_history = vec![
        AttemptRecord {
            attempt: 1,
            status: ExecutionStatus::Failed,
            finished_at: at(6),
            duration_us: 900,
            failure: Some(crate::execution::Failure {
                kind: crate::execution::FailureKind::Trap,
                message: "boom".into(),
            }),
            retry_at: Some(at(7)),
            measurements: None,
        },
        AttemptRecord {
            attempt: 2,
            status: ExecutionStatus::Succeeded,
            finished_at: at(8),
            duration_us: 1500,
            failure: None,
            retry_at: None,
            measurements: None,
        },
    ];
    b.state.apply_states(&rebuild(&done)).await.unwrap();
    let other = crate::event::new_json_event("e-2", "/shop", "com.shop.order", json!({})).unwrap();
    let mut queued = queued_execution("orders", other.clone(), at(9));
    queued.id = ExecutionId::for_event(&other, "orders");
    b.state.create_execution(&queued).await.unwrap();
    archive
}

async fn backup_of(b: &Backends, dir: &Path, since: Option<DateTime<Utc>>) -> PathBuf {
    let path = dir.join("backup.tar.gz");
    let file = std::fs::File::create(&path).unwrap();
    write_backup(
        b,
        &BackupOptions {
            executions_since: since,
        },
        Box::new(file),
    )
    .await
    .unwrap();
    path
}

#[tokio::test]
async fn a_backup_restores_everything_into_an_empty_target_and_verifies_it() {
    let (from, to, files) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let source = backends(from.path()).await;
    let archive = fill(&source).await;
    let path = backup_of(&source, files.path(), Some(at(0))).await;

    let manifest = verify_archive(&path).await.unwrap();
    assert_eq!(manifest.counts["handlers"], 1);
    assert_eq!(manifest.counts["packages"], 1);
    assert_eq!(manifest.counts["archives"], 1);
    assert_eq!(manifest.counts["executions"], 1, "only the finished one");
    assert_eq!(manifest.counts["secrets"], 1);

    let target = backends(to.path()).await;
    let report = restore(&target, &path, RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(report.archives_verified, 1);
    assert_eq!(report.verified["handlers"], 1);

    let handlers = target.registry.table().await.unwrap();
    assert_eq!(
        handlers.handlers[0].handler,
        source.registry.table().await.unwrap().handlers[0].handler
    );
    let version = target
        .state
        .get_package_version("shop", "1.0.0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        target.packages.get(&version.digest).await.unwrap().to_vec(),
        archive
    );
    assert_eq!(
        target.state.list_aliases("shop").await.unwrap(),
        source.state.list_aliases("shop").await.unwrap()
    );
    assert_eq!(
        target.state.handler_history("orders").await.unwrap(),
        source.state.handler_history("orders").await.unwrap()
    );
    let ada = target.identity.account("ada").await.unwrap().unwrap();
    assert_eq!(ada.password_hash.as_deref(), Some("$argon2id$fake"));
    assert_eq!(ada.groups, vec!["ops".to_string()]);
    let secret = target.secrets.secret("api-key").await.unwrap().unwrap();
    assert_eq!(secret.sealed, vec![1, 2, 3, 250]);

    let page = source
        .state
        .list_executions(&ExecutionQuery::default())
        .await
        .unwrap();
    let finished = page
        .items
        .iter()
        .find(|e| e.status == ExecutionStatus::Succeeded)
        .unwrap();
    let before = source
        .state
        .get_execution(&finished.id)
        .await
        .unwrap()
        .unwrap();
    let after = target
        .state
        .get_execution(&finished.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after, before, "the execution reads back the same");
    let restored = target
        .state
        .list_executions(&ExecutionQuery::default())
        .await
        .unwrap();
    assert_eq!(restored.items.len(), 1, "the queued one is not restored");
}

#[tokio::test]
async fn a_target_with_configuration_is_refused_unless_forced() {
    let (from, files) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = backends(from.path()).await;
    fill(&source).await;
    let path = backup_of(&source, files.path(), None).await;
    // Into itself: not empty.
    let err = restore(&source, &path, RestoreOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.message().contains("1 handlers"), "{err}");
    let report = restore(&source, &path, RestoreOptions { force: true })
        .await
        .unwrap();
    assert_eq!(report.restored["handlers"], 1);
    assert_eq!(report.kept["packages"], 1, "{report:?}");
    assert_eq!(source.registry.table().await.unwrap().handlers.len(), 1);
}

#[tokio::test]
async fn a_damaged_or_cut_archive_is_refused_before_anything_is_written() {
    let (from, to, files) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let source = backends(from.path()).await;
    fill(&source).await;
    let path = backup_of(&source, files.path(), Some(at(0))).await;
    let target = backends(to.path()).await;

    // One record changed inside the archive: re-packed, so gzip and tar are fine.
    let altered = files.path().join("altered.tar.gz");
    {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
            std::fs::File::open(&path).unwrap(),
        ));
        let out = flate2::write::GzEncoder::new(
            std::fs::File::create(&altered).unwrap(),
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(out);
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            if name.starts_with("handlers/") {
                bytes = String::from_utf8(bytes)
                    .unwrap()
                    .replace("com.shop.order", "com.evil.order")
                    .into_bytes();
            }
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            tar.append_data(&mut header, &name, bytes.as_slice())
                .unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
    }
    let err = restore(&target, &altered, RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.message().contains("does not match the manifest"),
        "{err}"
    );

    // Cut short: no manifest at the end.
    let bytes = std::fs::read(&path).unwrap();
    let cut = files.path().join("cut.tar.gz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = restore(&target, &cut, RestoreOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");

    assert!(configuration_present(&target).await.unwrap().is_empty());
    assert!(target.identity.accounts().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_file_larger_than_a_backup_writes_is_refused_without_being_read() {
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("huge.tar.gz");
    // A tar header claiming more bytes than any backup file may hold, and no body.
    let mut header = tar::Header::new_gnu();
    header.set_path("executions/00000.jsonl").unwrap();
    header.set_size(MAX_FILE_BYTES + 1);
    header.set_mode(0o644);
    header.set_cksum();
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::fast(),
    );
    std::io::Write::write_all(&mut gz, header.as_bytes()).unwrap();
    gz.finish().unwrap();
    let err = verify_archive(&path).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert!(err.message().contains("more than"), "{err}");
}
