//! `ferrisfx schedule`: create, list, pause, resume and delete schedules on the management
//! server. A tick is a `com.ferrisfx.schedule.fired` event from `/schedules/<name>`: a handler
//! filtered on that type (and source) runs on it.

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::client::Api;
use crate::output::{self, cell, time, Format, ListArgs, ShowArgs, Table, View};

/// Schedule commands.
#[derive(Debug, clap::Subcommand)]
pub enum ScheduleCommand {
    /// Create a schedule: one of --cron, --every or --at.
    Create(CreateArgs),
    /// List the schedules with their next ticks and the last tick fired.
    List(ListArgs),
    /// Show one schedule (JSON by default; `-o table` for its row of the list).
    Show {
        /// Schedule name.
        name: String,
        /// Output format.
        #[command(flatten)]
        output: ShowArgs,
    },
    /// Stop a schedule firing until it is resumed.
    Pause {
        /// Schedule name.
        name: String,
    },
    /// Fire a paused schedule again from its next tick (what it missed is not caught up).
    Resume {
        /// Schedule name.
        name: String,
    },
    /// Delete a schedule.
    Delete {
        /// Schedule name.
        name: String,
    },
}

/// Flags of `ferrisfx schedule create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Schedule name (lowercase letters, digits, '-').
    pub name: String,
    /// A cron expression: 5 fields, or 6 with seconds first (`"*/10 * * * * *"`), or `@daily`.
    #[arg(long, conflicts_with_all = ["every", "at"])]
    pub cron: Option<String>,
    /// A fixed period: seconds, or with a unit (`30s`, `5m`, `2h`, `1d`).
    #[arg(long, conflicts_with = "at")]
    pub every: Option<String>,
    /// One tick at this time (RFC 3339, e.g. `2026-12-24T18:00:00Z`).
    #[arg(long)]
    pub at: Option<String>,
    /// The IANA time zone of --cron (default UTC).
    #[arg(long)]
    pub timezone: Option<String>,
    /// The ticks' event data, as JSON.
    #[arg(long)]
    pub data: Option<String>,
    /// What ticks missed while no gateway ran become: skip (default), once or catch_up.
    #[arg(long)]
    pub missed: Option<String>,
    /// With --missed catch_up: at most this many missed ticks fire (default 10).
    #[arg(long)]
    pub catch_up_limit: Option<u32>,
    /// Free text for people.
    #[arg(long)]
    pub description: Option<String>,
}

/// Runs a schedule command against `api`.
pub async fn run(api: &Api, command: ScheduleCommand) -> anyhow::Result<()> {
    match command {
        ScheduleCommand::Create(args) => {
            let body = body_of(&args)?;
            let v = api
                .send(api.http().post(api.url("/schedules")).json(&body))
                .await?;
            println!("created schedule {}", args.name);
            print_next(&v);
        }
        ScheduleCommand::List(args) => {
            output::list(
                &args,
                "ferrisfx schedule list",
                || api.send(api.http().get(api.url("/schedules"))),
                &table,
                &mut std::io::stdout().lock(),
            )
            .await?;
        }
        ScheduleCommand::Show { name, output } => {
            output::show(
                output.output.unwrap_or(Format::Json),
                api.send(api.http().get(api.entry_url("/schedules", &name)?)),
                &|v| table(&json!({ "schedules": [v] })),
                &mut std::io::stdout().lock(),
            )
            .await?;
        }
        ScheduleCommand::Pause { name } => {
            api.send(
                api.http()
                    .post(api.url(&format!("/schedules/{name}/pause"))),
            )
            .await?;
            println!("paused schedule {name}");
        }
        ScheduleCommand::Resume { name } => {
            let v = api
                .send(
                    api.http()
                        .post(api.url(&format!("/schedules/{name}/resume"))),
                )
                .await?;
            println!("resumed schedule {name}");
            print_next(&v);
        }
        ScheduleCommand::Delete { name } => {
            api.send(api.http().delete(api.url(&format!("/schedules/{name}"))))
                .await?;
            println!("deleted schedule {name}");
        }
    }
    Ok(())
}

/// The schedule document of `create`'s flags.
fn body_of(args: &CreateArgs) -> anyhow::Result<Value> {
    let mut body = json!({ "name": args.name });
    match (&args.cron, &args.every, &args.at) {
        (Some(cron), None, None) => body["cron"] = json!(cron),
        (None, Some(every), None) => body["every_seconds"] = json!(seconds(every)?),
        (None, None, Some(at)) => body["at"] = json!(at),
        _ => bail!("give one of --cron, --every and --at"),
    }
    if let Some(tz) = &args.timezone {
        body["timezone"] = json!(tz);
    }
    if let Some(data) = &args.data {
        body["data"] = serde_json::from_str(data).context("--data is not JSON")?;
    }
    if let Some(missed) = &args.missed {
        body["missed"] = json!(missed);
    }
    if let Some(limit) = args.catch_up_limit {
        body["catch_up_limit"] = json!(limit);
    }
    if let Some(description) = &args.description {
        body["description"] = json!(description);
    }
    Ok(body)
}

/// Seconds of a period: `90`, `30s`, `5m`, `2h`, `1d`.
fn seconds(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .with_context(|| format!("--every {text:?}: give seconds or a number with s, m, h or d"))?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        other => bail!("--every {text:?}: unknown unit {other:?} (s, m, h or d)"),
    };
    n.checked_mul(factor)
        .with_context(|| format!("--every {text:?} is too long"))
}

/// The schedules of `GET /api/v1/schedules` (`{"schedules": [{"schedule", "revision",
/// "next", "last_tick"}], "invalid"}`) as a table.
pub fn table(v: &Value) -> View {
    let mut table = Table::new(&["name", "when", "status", "next", "last tick", "revision"]);
    for s in v["schedules"].as_array().into_iter().flatten() {
        let schedule = &s["schedule"];
        let when = if let Some(cron) = schedule["cron"].as_str() {
            let tz = schedule["timezone"].as_str().unwrap_or("UTC");
            format!("cron {cron} {tz}")
        } else if let Some(every) = schedule["every_seconds"].as_u64() {
            format!("every {every}s")
        } else {
            format!("at {}", time(&schedule["at"]))
        };
        let paused = schedule["paused"].as_bool() == Some(true);
        table.push(vec![
            cell(&schedule["name"]),
            when,
            if paused { "paused" } else { "active" }.into(),
            if paused {
                "-".into()
            } else {
                time(&s["next"][0])
            },
            match s["last_tick"] {
                Value::Null => "never".into(),
                ref at => time(at),
            },
            cell(&s["revision"]),
        ]);
    }
    View::table(&table, "schedules").with_notes(output::invalid_notes(v, "schedule"))
}

fn print_next(v: &Value) {
    for at in v["next"].as_array().into_iter().flatten().take(3) {
        println!("  next: {}", at.as_str().unwrap_or("?"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `GET /api/v1/schedules` as the API answers it.
    fn listing() -> Value {
        json!({
            "revision": 4,
            "schedules": [
                {"schedule": {"name": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Paris",
                              "data": null, "missed": "skip", "paused": false},
                 "revision": 2, "next": ["2025-02-01T02:00:00Z", "2025-02-02T02:00:00Z"],
                 "last_tick": "2025-01-31T02:00:00Z"},
                {"schedule": {"name": "poll", "every_seconds": 30, "paused": true},
                 "revision": 3, "next": [], "last_tick": null},
                {"schedule": {"name": "launch", "at": "2026-12-24T18:00:00Z"},
                 "revision": 4, "next": ["2026-12-24T18:00:00Z"], "last_tick": null},
            ],
            "invalid": [{"name": "old", "reason": "unknown time zone \"Mars/Olympus\""}],
        })
    }

    #[test]
    fn the_list_is_a_table_and_the_documents_the_answer() {
        let view = table(&listing());
        assert_eq!(
            crate::output::testing::lines(&view),
            [
                "NAME     WHEN                         STATUS  NEXT                  LAST TICK             REVISION",
                "nightly  cron 0 3 * * * Europe/Paris  active  2025-02-01 02:00:00Z  2025-01-31 02:00:00Z  2",
                "poll     every 30s                    paused  -                     never                 3",
                "launch   at 2026-12-24 18:00:00Z      active  2026-12-24 18:00:00Z  never                 4",
            ]
        );
        assert_eq!(
            view.notes,
            ["invalid schedule \"old\" (skipped): unknown time zone \"Mars/Olympus\""]
        );
        let empty = table(&json!({"revision": 0, "schedules": [], "invalid": []}));
        assert_eq!(empty.notes, ["no schedules"]);
        crate::output::testing::assert_documents(&listing(), &table);
    }

    #[test]
    fn periods_read_with_units() {
        assert_eq!(seconds("90").unwrap(), 90);
        assert_eq!(seconds("30s").unwrap(), 30);
        assert_eq!(seconds("5m").unwrap(), 300);
        assert_eq!(seconds("2h").unwrap(), 7_200);
        assert_eq!(seconds("1d").unwrap(), 86_400);
        assert!(seconds("5w").is_err());
        assert!(seconds("m").is_err());
    }
}
