//! `ferrisfx catalogue`: the event catalogue (`GET /api/v1/catalogue`,
//! `/api/v1/catalogue/entry`) as tables: every (source, type) seen with its counts, and one
//! entry's fields with their types, its changes (new fields, type changes) and the handlers
//! that match it. `-o json|yaml` prints the API's answer instead (`--json`, hidden, is kept
//! for the scripts that used it).

use serde_json::Value;

use crate::client::Api;
use crate::output::{self, cell as text, time, Format, ListArgs, ShowArgs, Table, View};

/// `ferrisfx catalogue …`.
#[derive(clap::Subcommand, Debug)]
pub enum CatalogueCommand {
    /// Every (source, type) seen: count, the last 24 hours, first and last seen, the last
    /// change of its data's schema.
    List {
        /// Only sources containing this.
        #[arg(long)]
        source: Option<String>,
        /// Only types containing this.
        #[arg(long = "type")]
        ty: Option<String>,
        /// Output format and watching.
        #[command(flatten)]
        list: ListArgs,
        /// The same as `-o json` (kept for older scripts).
        #[arg(long, hide = true, conflicts_with = "output")]
        json: bool,
    },
    /// One (source, type): its fields and their types, new fields and type changes with when
    /// they first appeared, the handlers that match, a sample event.
    Show {
        /// The events' source.
        #[arg(long)]
        source: String,
        /// The events' type.
        #[arg(long = "type")]
        ty: String,
        /// Output format.
        #[command(flatten)]
        output: ShowArgs,
        /// The same as `-o json` (kept for older scripts).
        #[arg(long, hide = true, conflicts_with = "output")]
        json: bool,
    },
}

/// Runs `command` against the server of `api`.
pub async fn run(api: &Api, command: CatalogueCommand) -> anyhow::Result<()> {
    match command {
        CatalogueCommand::List {
            source,
            ty,
            mut list,
            json,
        } => {
            let mut query: Vec<(&str, String)> = Vec::new();
            if let Some(source) = source {
                query.push(("source", source));
            }
            if let Some(ty) = ty {
                query.push(("type", ty));
            }
            if json {
                list.output = Format::Json;
            }
            output::list(
                &list,
                "ferrisfx catalogue list",
                || api.send(api.http().get(api.url("/catalogue")).query(&query)),
                &list_table,
                &mut std::io::stdout().lock(),
            )
            .await?;
        }
        CatalogueCommand::Show {
            source,
            ty,
            output,
            json,
        } => {
            let format = if json {
                Format::Json
            } else {
                output.output.unwrap_or(Format::Table)
            };
            output::show(
                format,
                api.send(
                    api.http()
                        .get(api.url("/catalogue/entry"))
                        .query(&[("source", &source), ("type", &ty)]),
                ),
                &|v| View::text(entry_text(v)),
                &mut std::io::stdout().lock(),
            )
            .await?;
        }
    }
    Ok(())
}

fn types(value: &Value) -> String {
    value
        .as_array()
        .map(|types| types.iter().map(text).collect::<Vec<_>>().join("|"))
        .unwrap_or_default()
}

/// `rows` under `header`, columns aligned.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut table = Table::new(header);
    for row in rows {
        table.push(row.clone());
    }
    table.render()
}

/// The list's table (`GET /api/v1/catalogue`: `{"entries": [...], "limit"}`).
fn list_table(v: &Value) -> View {
    let mut table = Table::new(&[
        "source",
        "type",
        "count",
        "last 24h",
        "first seen",
        "last seen",
        "last change",
    ]);
    for e in v["entries"].as_array().into_iter().flatten() {
        table.push(vec![
            text(&e["source"]),
            text(&e["type"]),
            text(&e["count"]),
            text(&e["last_24h"]),
            time(&e["first_seen"]),
            time(&e["last_seen"]),
            time(&e["last_change"]),
        ]);
    }
    View::table(
        &table,
        "events catalogued yet (gateways write the catalogue every few seconds)",
    )
}

/// One entry: a summary line, its fields, its changes and its handlers.
fn entry_text(v: &Value) -> String {
    let mut out = format!(
        "{} {}: {} events, first {}, last {}\n\nfields:\n",
        text(&v["source"]),
        text(&v["type"]),
        text(&v["count"]),
        text(&v["first_seen"]),
        text(&v["last_seen"]),
    );
    let fields: Vec<Vec<String>> = v["fields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|f| {
            vec![
                text(&f["path"]),
                types(&f["types"]),
                text(&f["seen"]),
                text(&f["first_seen"]),
            ]
        })
        .collect();
    out.push_str(&table(&["PATH", "TYPES", "SEEN", "FIRST SEEN"], &fields));
    let changes: Vec<Vec<String>> = v["changes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            vec![
                text(&c["at"]),
                text(&c["kind"]).replace('_', " "),
                text(&c["path"]),
                types(&c["types"]),
                types(&c["before"]),
            ]
        })
        .collect();
    out.push_str("\nchanges:\n");
    if changes.is_empty() {
        out.push_str("none\n");
    } else {
        out.push_str(&table(&["AT", "KIND", "PATH", "TYPES", "BEFORE"], &changes));
    }
    let handlers: Vec<String> = v["handlers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|h| {
            let name = text(&h["name"]);
            if h["enabled"] == Value::Bool(false) {
                format!("{name} (disabled)")
            } else {
                name
            }
        })
        .collect();
    out.push_str(&format!(
        "\nhandlers that match: {}\n",
        if handlers.is_empty() {
            "none".to_string()
        } else {
            handlers.join(", ")
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_list_and_an_entry_read_as_tables() {
        let list = json!({"entries": [
            {"source": "/shop", "type": "order.created", "count": 3, "last_24h": 3,
             "first_seen": "2026-12-04T10:00:00Z", "last_seen": "2026-12-04T10:05:00Z",
             "last_change": null},
        ]});
        let view = list_table(&list);
        assert_eq!(
            crate::output::testing::lines(&view),
            [
                "SOURCE  TYPE           COUNT  LAST 24H  FIRST SEEN            LAST SEEN             LAST CHANGE",
                "/shop   order.created  3      3         2026-12-04 10:00:00Z  2026-12-04 10:05:00Z  -",
            ]
        );
        let empty = list_table(&json!({"entries": [], "limit": 100}));
        assert_eq!(empty.out, "");
        assert!(
            empty.notes[0].starts_with("no events catalogued yet"),
            "{empty:?}"
        );
        crate::output::testing::assert_documents(&list, &list_table);

        let entry = json!({
            "source": "/shop", "type": "order.created", "count": 4,
            "first_seen": "2026-12-04T10:00:00Z", "last_seen": "2026-12-04T10:06:00Z",
            "fields": [{"path": "$.id", "types": ["integer", "string"], "seen": 4,
                        "first_seen": "2026-12-04T10:00:00Z"}],
            "changes": [{"path": "$.id", "kind": "type_change", "at": "2026-12-04T10:06:00Z",
                         "types": ["string"], "before": ["integer"]}],
            "handlers": [{"name": "orders", "enabled": true}, {"name": "old", "enabled": false}],
        });
        let out = entry_text(&entry);
        assert!(out.contains("$.id  integer|string  4"), "{out}");
        assert!(out.contains("type change  $.id  string  integer"), "{out}");
        assert!(
            out.contains("handlers that match: orders, old (disabled)"),
            "{out}"
        );
    }
}
