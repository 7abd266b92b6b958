//! `ferrisfx handler list`: the handlers as a table (name, package, what they match, pool,
//! enabled, revision), or the API's document (`GET /api/v1/handlers`).

use fx_core::handler::Filter;
use serde_json::Value;

use crate::client::Api;
use crate::output::{self, cell, yes_no, ListArgs, Table, View};

/// `handler list`.
pub async fn list(api: &Api, args: &ListArgs) -> anyhow::Result<()> {
    output::list(
        args,
        "ferrisfx handler list",
        || api.send(api.http().get(api.url("/handlers"))),
        &table,
        &mut std::io::stdout().lock(),
    )
    .await
}

/// The handlers of `GET /api/v1/handlers` (`{"handlers": [{"handler", "revision"}],
/// "invalid"}`) as a table.
pub fn table(v: &Value) -> View {
    let mut table = Table::new(&["name", "package", "matches", "pool", "enabled", "revision"]);
    for stored in v["handlers"].as_array().into_iter().flatten() {
        let handler = &stored["handler"];
        let package = &handler["package"];
        table.push(vec![
            cell(&handler["name"]),
            format!("{}@{}", cell(&package["name"]), cell(&package["version"])),
            serde_json::from_value::<Filter>(handler["filter"].clone())
                .map_or_else(|_| "?".to_string(), |filter| matches(&filter)),
            handler["pool"]
                .as_str()
                .unwrap_or(fx_core::handler::DEFAULT_POOL)
                .to_string(),
            yes_no(&handler["enabled"], true),
            cell(&stored["revision"]),
        ]);
    }
    View::table(&table, "handlers").with_notes(output::invalid_notes(v, "handler"))
}

/// A filter in a few characters: `type=com.x` (equals), `type^=com.` (starts with),
/// `source$=/x` (ends with), `a,b` (all), `a | b` (any), `!a` (not), `*` (every event).
pub fn matches(filter: &Filter) -> String {
    compact(filter, false)
}

/// `filter` compact; a compound one inside another (`nested`) in parentheses.
fn compact(filter: &Filter, nested: bool) -> String {
    let group = |filters: &[Filter], separator: &str| {
        let text = filters
            .iter()
            .map(|f| compact(f, true))
            .collect::<Vec<_>>()
            .join(separator);
        if nested && filters.len() > 1 {
            format!("({text})")
        } else {
            text
        }
    };
    match filter {
        Filter::All(filters) if filters.is_empty() => "*".into(),
        Filter::All(filters) => group(filters, ","),
        Filter::Any(filters) if filters.is_empty() => "nothing".into(),
        Filter::Any(filters) => group(filters, " | "),
        Filter::Not(filter) => format!("!{}", compact(filter, true)),
        Filter::Exact(m) => format!("{}={}", m.attribute, m.value),
        Filter::Prefix(m) => format!("{}^={}", m.attribute, m.value),
        Filter::Suffix(m) => format!("{}$={}", m.attribute, m.value),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::output::testing::{assert_documents, lines};

    fn filter(v: Value) -> String {
        matches(&serde_json::from_value(v).unwrap())
    }

    #[test]
    fn filters_read_compactly() {
        let exact = json!({"exact": {"attribute": "type", "value": "com.x"}});
        let prefix = json!({"prefix": {"attribute": "type", "value": "com."}});
        let source = json!({"prefix": {"attribute": "source", "value": "/x"}});
        let suffix = json!({"suffix": {"attribute": "subject", "value": ".png"}});
        assert_eq!(filter(exact.clone()), "type=com.x");
        assert_eq!(filter(json!({"all": [exact.clone()]})), "type=com.x");
        assert_eq!(
            filter(json!({"all": [prefix.clone(), source.clone()]})),
            "type^=com.,source^=/x"
        );
        assert_eq!(
            filter(json!({"any": [exact, {"all": [prefix, source]}]})),
            "type=com.x | (type^=com.,source^=/x)"
        );
        assert_eq!(filter(json!({"not": suffix})), "!subject$=.png");
        assert_eq!(filter(json!({"all": []})), "*");
    }

    /// `GET /api/v1/handlers` as the API answers it (`fx_core::registry::HandlerTable`).
    fn listing() -> Value {
        json!({
            "revision": 7,
            "handlers": [
                {"handler": {
                    "name": "hello", "description": "",
                    "filter": {"all": [{"exact": {"attribute": "type", "value": "com.example.hello"}}]},
                    "package": {"name": "hello", "version": "latest"},
                    "pool": "default", "limits": {}, "retry": {"max_attempts": 1},
                    "enabled": true, "config": {}, "secrets": [], "http_allow": [],
                 }, "revision": 3},
                {"handler": {
                    "name": "thumbnails",
                    "filter": {"prefix": {"attribute": "source", "value": "/uploads"}},
                    "package": {"name": "resize", "version": "2.1.0"},
                    "pool": "gpu", "enabled": false,
                 }, "revision": 12},
            ],
            "invalid": [{"name": "broken", "reason": "unknown field `filtre`"}],
        })
    }

    #[test]
    fn the_list_is_a_table_and_the_documents_the_answer() {
        let view = table(&listing());
        assert_eq!(
            lines(&view),
            [
                "NAME        PACKAGE       MATCHES                 POOL     ENABLED  REVISION",
                "hello       hello@latest  type=com.example.hello  default  yes      3",
                "thumbnails  resize@2.1.0  source^=/uploads        gpu      no       12",
            ]
        );
        assert_eq!(
            view.notes,
            ["invalid handler \"broken\" (skipped): unknown field `filtre`"]
        );
        let empty = table(&json!({"revision": 0, "handlers": [], "invalid": []}));
        assert_eq!(
            (empty.out.as_str(), empty.notes),
            ("", vec!["no handlers".to_string()])
        );
        assert_documents(&listing(), &table);
    }
}
