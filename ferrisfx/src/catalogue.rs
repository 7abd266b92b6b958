//! `ferrisfx catalogue`: the event catalogue (`GET /api/v1/catalogue`,
//! `/api/v1/catalogue/entry`) as tables: every (source, type) seen with its counts, and one
//! entry's fields with their types, its changes (new fields, type changes) and the handlers
//! that match it. `--json` prints the API's answer instead.

use serde_json::Value;

use crate::client::Api;

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
        /// The API's JSON instead of a table.
        #[arg(long)]
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
        /// The API's JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `command` against the server of `api`.
pub async fn run(api: &Api, command: CatalogueCommand) -> anyhow::Result<()> {
    match command {
        CatalogueCommand::List { source, ty, json } => {
            let mut query: Vec<(&str, String)> = Vec::new();
            if let Some(source) = source {
                query.push(("source", source));
            }
            if let Some(ty) = ty {
                query.push(("type", ty));
            }
            let v = api
                .send(api.http().get(api.url("/catalogue")).query(&query))
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", list_table(&v));
            }
        }
        CatalogueCommand::Show { source, ty, json } => {
            let v = api
                .send(
                    api.http()
                        .get(api.url("/catalogue/entry"))
                        .query(&[("source", &source), ("type", &ty)]),
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", entry_text(&v));
            }
        }
    }
    Ok(())
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn types(value: &Value) -> String {
    value
        .as_array()
        .map(|types| types.iter().map(text).collect::<Vec<_>>().join("|"))
        .unwrap_or_default()
}

/// `rows` under `header`, columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The list's table; `no events catalogued yet` when empty.
fn list_table(v: &Value) -> String {
    let entries = v["entries"].as_array().cloned().unwrap_or_default();
    if entries.is_empty() {
        return "no events catalogued yet (gateways write the catalogue every few seconds)\n"
            .into();
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                text(&e["source"]),
                text(&e["type"]),
                text(&e["count"]),
                text(&e["last_24h"]),
                text(&e["first_seen"]),
                text(&e["last_seen"]),
                text(&e["last_change"]),
            ]
        })
        .collect();
    table(
        &[
            "SOURCE",
            "TYPE",
            "COUNT",
            "LAST 24H",
            "FIRST SEEN",
            "LAST SEEN",
            "LAST CHANGE",
        ],
        &rows,
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
        let out = list_table(&list);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("SOURCE  TYPE"), "{out}");
        assert!(lines[1].starts_with("/shop   order.created  3"), "{out}");
        assert!(lines[1].ends_with('-'), "no change yet: {out}");
        assert!(list_table(&json!({"entries": []})).starts_with("no events"));

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
