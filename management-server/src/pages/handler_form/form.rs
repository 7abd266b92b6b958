//! The handler form's fields as typed, and how they become a handler (or the reasons, by
//! field, why they do not).

use std::collections::{BTreeMap, BTreeSet};

use fx_core::handler::{AttributeMatch, Filter, Handler, PackageRef, DEFAULT_POOL};
use fx_core::limits::{LimitOverrides, RetryPolicy};
use fx_core::package::LATEST_ALIAS;
use fx_core::validate::{validate_http_host, validate_name, validate_secret_names};

/// Condition rows shown beyond the filled ones, for adding conditions without JavaScript.
pub(super) const BLANK_ROWS: usize = 2;
/// Attribute names offered in the condition rows (any extension name may be typed).
pub(super) const ATTRIBUTES: [&str; 6] = [
    "type",
    "source",
    "subject",
    "id",
    "datacontenttype",
    "dataschema",
];

/// One condition row of the filter builder.
#[derive(Debug, Clone, Default)]
pub struct ConditionRow {
    /// Whether the condition is negated.
    pub negate: bool,
    /// The attribute (`type`, `source`, `subject`, or an extension name).
    pub attribute: String,
    /// `exact`, `prefix` or `suffix`.
    pub op: String,
    /// The text compared with the attribute.
    pub value: String,
}

impl ConditionRow {
    fn is_blank(&self) -> bool {
        self.attribute.trim().is_empty() && self.value.trim().is_empty()
    }
}

/// The handler form's fields, as typed.
#[derive(Debug, Clone, Default)]
pub struct HandlerForm {
    /// Handler name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// `all` or `any`: how the conditions combine.
    pub combine: String,
    /// The condition rows.
    pub conditions: Vec<ConditionRow>,
    /// The filter as JSON; when filled it is used instead of the rows.
    pub filter_json: String,
    /// Package name.
    pub package: String,
    /// Version or alias.
    pub version: String,
    /// Executor pool.
    pub pool: String,
    /// Memory cap in MiB, or empty.
    pub memory_mb: String,
    /// Timeout in milliseconds, or empty.
    pub timeout_ms: String,
    /// Concurrency per executor, or empty.
    pub concurrency: String,
    /// Fuel budget, or empty.
    pub fuel: String,
    /// Output bytes per invocation, or empty.
    pub max_output_bytes: String,
    /// Log bytes per invocation, or empty.
    pub max_log_bytes: String,
    /// Configuration values, one `key=value` per line.
    pub config: String,
    /// Granted secret names, separated by commas or spaces.
    pub secrets: String,
    /// Hosts the function may send HTTP requests to, separated by commas or spaces.
    pub http_allow: String,
    /// Attempts in all.
    pub max_attempts: String,
    /// First retry delay in milliseconds.
    pub backoff_ms: String,
    /// Largest retry delay in milliseconds.
    pub max_backoff_ms: String,
    /// Whether attempts that broke a limit are retried too.
    pub retry_limit_breaches: bool,
    /// Whether events run in warm instances kept from earlier events.
    pub reuse_instances: bool,
    /// Whether the handler matches events.
    pub enabled: bool,
    /// The revision edited (check-and-set), empty for a new handler.
    pub revision: String,
}

/// Reasons a form was refused, by field (`name`, `filter`, `package`, `pool`, `limits`,
/// `retry`, `form`).
pub type FieldErrors = BTreeMap<&'static str, String>;

impl HandlerForm {
    /// Reads the submitted pairs (`cond.<i>.<part>` for the condition rows).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        let mut form = HandlerForm::default();
        let mut rows: BTreeMap<usize, ConditionRow> = BTreeMap::new();
        for (key, value) in pairs {
            if let Some(rest) = key.strip_prefix("cond.") {
                let Some((index, part)) = rest.split_once('.') else {
                    continue;
                };
                let Ok(index) = index.parse::<usize>() else {
                    continue;
                };
                let row = rows.entry(index).or_default();
                match part {
                    "not" => row.negate = true,
                    "attribute" => row.attribute = value,
                    "op" => row.op = value,
                    "value" => row.value = value,
                    _ => {}
                }
                continue;
            }
            match key.as_str() {
                "name" => form.name = value,
                "description" => form.description = value,
                "combine" => form.combine = value,
                "filter_json" => form.filter_json = value,
                "package" => form.package = value,
                "version" => form.version = value,
                "pool" => form.pool = value,
                "memory_mb" => form.memory_mb = value,
                "timeout_ms" => form.timeout_ms = value,
                "concurrency" => form.concurrency = value,
                "fuel" => form.fuel = value,
                "max_output_bytes" => form.max_output_bytes = value,
                "max_log_bytes" => form.max_log_bytes = value,
                "config" => form.config = value,
                "secrets" => form.secrets = value,
                "http_allow" => form.http_allow = value,
                "max_attempts" => form.max_attempts = value,
                "backoff_ms" => form.backoff_ms = value,
                "max_backoff_ms" => form.max_backoff_ms = value,
                "enabled" => form.enabled = true,
                "retry_limit_breaches" => form.retry_limit_breaches = true,
                "reuse_instances" => form.reuse_instances = true,
                "revision" => form.revision = value,
                _ => {}
            }
        }
        form.conditions = rows.into_values().filter(|r| !r.is_blank()).collect();
        form
    }

    /// The form of a new handler, on `package` when given.
    pub fn blank(package: Option<String>) -> Self {
        let retry = RetryPolicy::default();
        HandlerForm {
            combine: "all".into(),
            conditions: vec![ConditionRow {
                attribute: "type".into(),
                op: "exact".into(),
                ..ConditionRow::default()
            }],
            package: package.unwrap_or_default(),
            version: LATEST_ALIAS.into(),
            pool: DEFAULT_POOL.into(),
            max_attempts: retry.max_attempts.to_string(),
            backoff_ms: retry.backoff_ms.to_string(),
            max_backoff_ms: retry.max_backoff_ms.to_string(),
            enabled: true,
            ..HandlerForm::default()
        }
    }

    /// The form showing a stored handler.
    pub fn of(handler: &Handler, revision: u64) -> Self {
        let (combine, conditions, filter_json) = match rows_of(&handler.filter) {
            Some((combine, rows)) => (combine, rows, String::new()),
            None => (
                "all".to_string(),
                Vec::new(),
                serde_json::to_string_pretty(&handler.filter).unwrap_or_default(),
            ),
        };
        let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        HandlerForm {
            name: handler.name.clone(),
            description: handler.description.clone(),
            combine,
            conditions,
            filter_json,
            package: handler.package.name.clone(),
            version: handler.package.version.clone(),
            pool: handler.pool.clone(),
            memory_mb: opt(handler.limits.memory_mb.map(u64::from)),
            timeout_ms: opt(handler.limits.timeout_ms),
            concurrency: opt(handler.limits.concurrency.map(u64::from)),
            fuel: opt(handler.limits.fuel),
            max_output_bytes: opt(handler.limits.max_output_bytes),
            max_log_bytes: opt(handler.limits.max_log_bytes),
            config: handler
                .config
                .iter()
                .map(|(k, v)| format!("{k}={v}\n"))
                .collect(),
            secrets: handler
                .secrets
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            http_allow: handler
                .http_allow
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            max_attempts: handler.retry.max_attempts.to_string(),
            backoff_ms: handler.retry.backoff_ms.to_string(),
            max_backoff_ms: handler.retry.max_backoff_ms.to_string(),
            retry_limit_breaches: handler.retry.retry_limit_breaches,
            reuse_instances: handler.reuse_instances,
            enabled: handler.enabled,
            revision: revision.to_string(),
        }
    }

    /// The handler this form describes, or why it is not a valid one (by field).
    pub fn to_handler(&self) -> Result<Handler, FieldErrors> {
        let mut errors = FieldErrors::new();
        let name = self.name.trim().to_string();
        if let Err(e) = validate_name("handler name", &name) {
            errors.insert("name", e.chain());
        }
        let filter = match self.filter() {
            Ok(filter) => match filter.validate() {
                Ok(()) => Some(filter),
                Err(e) => {
                    errors.insert("filter", e.chain());
                    None
                }
            },
            Err(reason) => {
                errors.insert("filter", reason);
                None
            }
        };
        let package = self.package.trim().to_string();
        if package.is_empty() {
            errors.insert("package", "choose the package whose function runs".into());
        } else if let Err(e) = validate_name("package name", &package) {
            errors.insert("package", e.chain());
        }
        let version = match self.version.trim() {
            "" => LATEST_ALIAS.to_string(),
            v => v.to_string(),
        };
        let pool = match self.pool.trim() {
            "" => DEFAULT_POOL.to_string(),
            p => p.to_string(),
        };
        if let Err(e) = validate_name("executor pool", &pool) {
            errors.insert("pool", e.chain());
        }
        let limits = (|| {
            Ok::<_, String>(LimitOverrides {
                memory_mb: number(&self.memory_mb, "memory (MiB)")?,
                timeout_ms: number(&self.timeout_ms, "timeout (ms)")?,
                concurrency: number(&self.concurrency, "concurrency")?,
                fuel: number(&self.fuel, "fuel")?,
                max_output_bytes: number(&self.max_output_bytes, "output (bytes)")?,
                max_log_bytes: number(&self.max_log_bytes, "log volume (bytes)")?,
            })
        })();
        let limits = limits.unwrap_or_else(|reason| {
            errors.insert("limits", reason);
            LimitOverrides::default()
        });
        let defaults = RetryPolicy::default();
        let retry = (|| {
            Ok::<_, String>(RetryPolicy {
                max_attempts: number(&self.max_attempts, "attempts")?
                    .unwrap_or(defaults.max_attempts),
                backoff_ms: number(&self.backoff_ms, "backoff (ms)")?
                    .unwrap_or(defaults.backoff_ms),
                max_backoff_ms: number(&self.max_backoff_ms, "largest backoff (ms)")?
                    .unwrap_or(defaults.max_backoff_ms),
                retry_limit_breaches: self.retry_limit_breaches,
            })
        })();
        let retry = retry.unwrap_or_else(|reason| {
            errors.insert("retry", reason);
            defaults
        });
        let config = self.config_values().unwrap_or_else(|reason| {
            errors.insert("config", reason);
            BTreeMap::new()
        });
        let secrets: BTreeSet<String> = list(&self.secrets);
        if let Err(e) = validate_secret_names("secrets", &secrets) {
            errors.insert("secrets", e.chain());
        }
        let http_allow: BTreeSet<String> = list(&self.http_allow);
        if let Some(e) = http_allow.iter().find_map(|h| validate_http_host(h).err()) {
            errors.insert("http_allow", e.chain());
        }
        let Some(filter) = filter else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let handler = Handler {
            name,
            description: self.description.trim().to_string(),
            filter,
            package: PackageRef {
                name: package,
                version,
            },
            pool,
            limits,
            retry,
            enabled: self.enabled,
            reuse_instances: self.reuse_instances,
            config,
            secrets,
            http_allow,
        };
        // Name, filter, package, pool and secrets passed above: what is left is checked part by
        // part, so each reason lands on its own field.
        let checks = [
            ("limits", handler.limits.validate()),
            ("retry", handler.retry.validate()),
            (
                "config",
                fx_core::validate::validate_config("handler config", &handler.config),
            ),
        ];
        for (field, result) in checks {
            if let Err(e) = result {
                errors.insert(field, e.chain());
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // Whatever else a stored handler must satisfy (the same rules as the API).
        if let Err(e) = handler.validate() {
            errors.insert("limits", e.chain());
            return Err(errors);
        }
        Ok(handler)
    }

    /// The filter of the rows, or of the JSON box when it is filled.
    fn filter(&self) -> Result<Filter, String> {
        if !self.filter_json.trim().is_empty() {
            return serde_json::from_str(&self.filter_json)
                .map_err(|e| format!("the filter json is not a filter: {e}"));
        }
        let mut leaves = Vec::with_capacity(self.conditions.len());
        for (i, row) in self.conditions.iter().enumerate() {
            let m = AttributeMatch {
                attribute: row.attribute.trim().to_string(),
                value: row.value.clone(),
            };
            let leaf = match row.op.as_str() {
                "exact" | "" => Filter::Exact(m),
                "prefix" => Filter::Prefix(m),
                "suffix" => Filter::Suffix(m),
                other => {
                    return Err(format!(
                        "condition {}: unknown comparison {other:?} (exact, prefix or suffix)",
                        i + 1
                    ))
                }
            };
            leaves.push(if row.negate {
                Filter::Not(Box::new(leaf))
            } else {
                leaf
            });
        }
        if leaves.is_empty() {
            return Err(
                "add at least one condition (e.g. type exact com.example.hello); to run on every event, write {\"all\": []} as the filter json"
                    .into(),
            );
        }
        if leaves.len() == 1 {
            return Ok(leaves.remove(0));
        }
        Ok(match self.combine.as_str() {
            "any" => Filter::Any(leaves),
            _ => Filter::All(leaves),
        })
    }
}

impl HandlerForm {
    /// The configuration field's `key=value` lines (blank lines and lines starting with `#`
    /// skipped).
    fn config_values(&self) -> Result<BTreeMap<String, String>, String> {
        let mut values = BTreeMap::new();
        for (n, line) in self.config.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!(
                    "configuration line {} is not key=value: {line:?}",
                    n + 1
                ));
            };
            values.insert(key.trim().to_string(), value.trim().to_string());
        }
        Ok(values)
    }
}

/// A field listing names, separated by commas or white space.
fn list(text: &str) -> BTreeSet<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A number field: empty is `None`.
fn number<T: std::str::FromStr>(text: &str, what: &str) -> Result<Option<T>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| format!("{what} must be a whole number, got {text:?}"))
}

/// The rows of a filter the builder can show: one leaf, or all/any of leaves and negated leaves.
pub(super) fn rows_of(filter: &Filter) -> Option<(String, Vec<ConditionRow>)> {
    fn row(filter: &Filter, negate: bool) -> Option<ConditionRow> {
        let (op, m) = match filter {
            Filter::Exact(m) => ("exact", m),
            Filter::Prefix(m) => ("prefix", m),
            Filter::Suffix(m) => ("suffix", m),
            Filter::Not(inner) if !negate => return row(inner, true),
            _ => return None,
        };
        Some(ConditionRow {
            negate,
            attribute: m.attribute.clone(),
            op: op.to_string(),
            value: m.value.clone(),
        })
    }
    match filter {
        Filter::All(inner) | Filter::Any(inner) if !inner.is_empty() => {
            let combine = if matches!(filter, Filter::Any(_)) {
                "any"
            } else {
                "all"
            };
            let rows = inner
                .iter()
                .map(|f| row(f, false))
                .collect::<Option<Vec<_>>>()?;
            Some((combine.to_string(), rows))
        }
        Filter::All(_) | Filter::Any(_) => None,
        leaf => Some(("all".to_string(), vec![row(leaf, false)?])),
    }
}
