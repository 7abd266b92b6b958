//! `ferrisfx backup` and `ferrisfx restore`: the archive of everything a deployment holds
//! (`POST /api/v1/backup`), to a file or an S3 bucket, and back into a deployment
//! (`POST /api/v1/restore`). The archive is checked here before it is sent, and again by the
//! server ([`fx_core::backup`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use chrono::{DateTime, Duration, Utc};
use fx_core::backup::{verify_archive, Manifest};
use fx_core::objects::s3::{S3PackageStore, S3Settings};

use crate::client::Api;

/// The name every backup written to a bucket starts with (then its time, so that names sort
/// oldest first).
const NAME_PREFIX: &str = "ferrisfx-backup-";

/// Where an S3 bucket is, for `--output s3://…` and `restore s3://…`.
#[derive(clap::Args, Debug, Clone)]
pub struct S3Args {
    /// The S3 API's base URL (MinIO, AWS or another S3-compatible server).
    #[arg(long, env = "FX_BACKUP_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// The region requests are signed for.
    #[arg(long, env = "FX_BACKUP_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// Access key id.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub s3_access_key: Option<String>,
    /// Secret access key.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_key: Option<String>,
}

/// `ferrisfx backup`.
#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// Where to write the archive: a file (default `ferrisfx-backup-<time>.tar.gz` here), a
    /// directory (the file goes in it), or `s3://bucket/prefix/` (an object named by its time
    /// under the prefix).
    #[arg(short, long)]
    pub output: Option<String>,
    /// Also the finished executions created since then, with their logs, the workflow runs
    /// and the audit log: an RFC 3339 time, or a span back from now (`7d`, `12h`, `30m`).
    #[arg(long)]
    pub executions_since: Option<String>,
    /// Keep only the newest N backups in the output directory or under the S3 prefix (older
    /// `ferrisfx-backup-*.tar.gz` are deleted after this one is written).
    #[arg(long)]
    pub keep: Option<usize>,
    #[command(flatten)]
    pub s3: S3Args,
}

/// `ferrisfx restore`.
#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// The archive: a file, or `s3://bucket/key` (`s3://bucket/prefix/` takes the newest
    /// backup under the prefix).
    pub input: String,
    /// Restore into a deployment that holds configuration: entries of the same name are
    /// replaced.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub s3: S3Args,
}

/// `7d`, `12h`, `30m` back from `now`, or an RFC 3339 time.
pub fn parse_since(text: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = number.parse().with_context(|| {
        format!("{text:?} is neither an RFC 3339 time nor a span like 7d, 12h or 30m")
    })?;
    let span = match unit {
        "d" => Duration::days(n),
        "h" => Duration::hours(n),
        "m" => Duration::minutes(n),
        _ => bail!("{text:?}: a span ends with d, h or m"),
    };
    Ok(now - span)
}

/// `s3://bucket/rest` → (bucket, rest).
fn s3_location(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix("s3://")?;
    Some(rest.split_once('/').unwrap_or((rest, "")))
}

async fn bucket(s3: &S3Args, bucket: &str, prefix: &str) -> anyhow::Result<S3PackageStore> {
    let settings = S3Settings {
        endpoint: s3
            .s3_endpoint
            .clone()
            .context("an s3:// location needs --s3-endpoint (or FX_BACKUP_S3_ENDPOINT)")?,
        ca_file: None,
        region: s3.s3_region.clone(),
        bucket: bucket.to_string(),
        access_key: s3
            .s3_access_key
            .clone()
            .context("an s3:// location needs --s3-access-key (or AWS_ACCESS_KEY_ID)")?,
        secret_key: s3
            .s3_secret_key
            .clone()
            .context("an s3:// location needs --s3-secret-key (or AWS_SECRET_ACCESS_KEY)")?,
        prefix: prefix.to_string(),
        create_bucket: true,
    };
    settings.validate()?;
    Ok(S3PackageStore::open(&settings).await?)
}

/// The backups directly under the store's prefix, oldest first (their names sort by time).
async fn backups_in(store: &S3PackageStore) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = store
        .list_objects(NAME_PREFIX)
        .await?
        .into_iter()
        .map(|o| o.name)
        .filter(|n| n.ends_with(".tar.gz") && !n.contains('/'))
        .collect();
    names.sort();
    Ok(names)
}

fn summary(manifest: &Manifest) -> String {
    let counts: Vec<String> = manifest
        .counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(section, n)| format!("{n} {section}"))
        .collect();
    if counts.is_empty() {
        "nothing (an empty deployment)".to_string()
    } else {
        counts.join(", ")
    }
}

/// `ferrisfx backup`.
pub async fn backup(api: &Api, args: BackupArgs) -> anyhow::Result<()> {
    let now = Utc::now();
    let mut request = api.http().post(api.url("/backup"));
    if let Some(since) = &args.executions_since {
        request = request.query(&[("executions_since", parse_since(since, now)?.to_rfc3339())]);
    }
    let file_name = format!("{NAME_PREFIX}{}.tar.gz", now.format("%Y%m%dT%H%M%SZ"));
    let s3 = args.output.as_deref().and_then(s3_location);
    let local: PathBuf = match (&args.output, s3) {
        (_, Some(_)) => std::env::temp_dir().join(&file_name),
        (Some(path), None) if Path::new(path).is_dir() => Path::new(path).join(&file_name),
        (Some(path), None) => PathBuf::from(path),
        (None, None) => PathBuf::from(&file_name),
    };
    let mut response = api.respond(request).await?;
    // Readable by its owner only: it holds password hashes and sealed secrets.
    let mut out = {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options
            .open(&local)
            .with_context(|| format!("creating {}", local.display()))?
    };
    while let Some(chunk) = response
        .chunk()
        .await
        .context("reading the backup from the server")?
    {
        out.write_all(&chunk)
            .with_context(|| format!("writing {}", local.display()))?;
    }
    out.sync_all()
        .with_context(|| format!("writing {}", local.display()))?;
    drop(out);
    let manifest = verify_archive(&local)
        .await
        .with_context(|| format!("checking the archive the server sent ({})", local.display()))?;
    let size = std::fs::metadata(&local).map(|m| m.len()).unwrap_or(0);
    match s3 {
        Some((name, prefix)) => {
            let store = bucket(&args.s3, name, prefix).await?;
            let bytes = std::fs::read(&local)?;
            store.put_object(&file_name, &bytes).await?;
            std::fs::remove_file(&local).ok();
            println!(
                "backup written to s3://{name}/{prefix}{file_name} ({size} bytes): {}",
                summary(&manifest)
            );
            if let Some(keep) = args.keep {
                let old = backups_in(&store).await?;
                let excess = old.len().saturating_sub(keep.max(1));
                for stale in &old[..excess] {
                    store.delete_object(stale).await?;
                    println!("deleted the older backup s3://{name}/{prefix}{stale}");
                }
            }
        }
        None => {
            println!(
                "backup written to {} ({size} bytes): {}",
                local.display(),
                summary(&manifest)
            );
            if let Some(keep) = args.keep {
                let dir = local
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                let mut old: Vec<PathBuf> = std::fs::read_dir(dir)?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with(NAME_PREFIX) && n.ends_with(".tar.gz"))
                    })
                    .collect();
                old.sort();
                let excess = old.len().saturating_sub(keep.max(1));
                for stale in &old[..excess] {
                    std::fs::remove_file(stale)
                        .with_context(|| format!("deleting {}", stale.display()))?;
                    println!("deleted the older backup {}", stale.display());
                }
            }
        }
    }
    Ok(())
}

/// `ferrisfx restore`.
pub async fn restore(api: &Api, args: RestoreArgs) -> anyhow::Result<()> {
    let (path, _scratch) = match s3_location(&args.input) {
        Some((name, key)) => {
            let (prefix, object) = match key.rsplit_once('/') {
                Some((prefix, object)) => (format!("{prefix}/"), object.to_string()),
                None => (String::new(), key.to_string()),
            };
            let store = bucket(&args.s3, name, &prefix).await?;
            let object = if object.is_empty() {
                backups_in(&store)
                    .await?
                    .pop()
                    .with_context(|| format!("no backup under s3://{name}/{prefix}"))?
            } else {
                object
            };
            let bytes = store.get_object(&object).await?;
            let scratch = tempfile::tempdir().context("a scratch directory")?;
            let path = scratch.path().join(&object);
            std::fs::write(&path, &bytes)?;
            println!("read s3://{name}/{prefix}{object} ({} bytes)", bytes.len());
            (path, Some(scratch))
        }
        None => (PathBuf::from(&args.input), None),
    };
    let manifest = verify_archive(&path)
        .await
        .with_context(|| format!("checking {}", path.display()))?;
    println!(
        "restoring the backup of {} (FerrisFX {}): {}",
        manifest.created_at.to_rfc3339(),
        manifest.version,
        summary(&manifest)
    );
    let body = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut request = api
        .http()
        .post(api.url("/restore"))
        .header("content-type", "application/gzip")
        .body(body);
    if args.force {
        request = request.query(&[("force", "true")]);
    }
    let report = api.send(request).await?;
    let restored = report["restored"]
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
                .map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    println!("restored: {restored}");
    if let Some(kept) = report["kept"].as_object().filter(|o| !o.is_empty()) {
        let kept: Vec<String> = kept.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!("left as they were: {}", kept.join(", "));
    }
    println!(
        "verified: counts of every section, {} package archives read back with their digests",
        report["archives_verified"]
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_times_are_read() {
        let now = DateTime::parse_from_rfc3339("2026-12-04T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_since("7d", now).unwrap().to_rfc3339(),
            "2026-11-27T10:00:00+00:00"
        );
        assert_eq!(
            parse_since("30m", now).unwrap().to_rfc3339(),
            "2026-12-04T09:30:00+00:00"
        );
        assert_eq!(
            parse_since("2026-12-01T00:00:00Z", now)
                .unwrap()
                .to_rfc3339(),
            "2026-12-01T00:00:00+00:00"
        );
        assert!(parse_since("yesterday", now).is_err());
        assert!(parse_since("5w", now).is_err());
        assert_eq!(s3_location("s3://b/p/x.tar.gz"), Some(("b", "p/x.tar.gz")));
        assert_eq!(s3_location("s3://b"), Some(("b", "")));
        assert_eq!(s3_location("/tmp/x"), None);
    }
}
