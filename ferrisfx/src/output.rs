//! How the list and show commands print, alike for every kind of thing: a table for people by
//! default, or the API's own document for scripts (`-o json`, pretty; `-o yaml`, the same value
//! as YAML). A list can be watched (`--watch`): fetched again every `--interval`, the screen
//! redrawn on a terminal, a new snapshot printed only when it changed otherwise.
//!
//! Standard output carries only the table or the document; what is said to people besides
//! (an empty list, invalid registry entries, a cursor to the next page) goes to standard error
//! as notes, so that `ferrisfx handler list | wc -l` counts handlers.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;
use unicode_width::UnicodeWidthStr;

/// How a list or show command prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns (a list) or a readable page (a show), for people.
    Table,
    /// The API's JSON document, pretty-printed (one compact document per line with --watch).
    Json,
    /// The API's document as YAML.
    Yaml,
}

/// The output flags of every list command.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// How to print: table (for people), json or yaml (the API's document, for scripts).
    #[arg(
        short = 'o',
        long = "output",
        value_enum,
        value_name = "FORMAT",
        default_value_t = Format::Table
    )]
    pub output: Format,
    /// Fetch again every --interval and print again (on a terminal the screen is redrawn,
    /// otherwise a snapshot is printed when it changed); Ctrl-C stops.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// With --watch, how often to fetch: `2s`, `500ms`, `1m` (a bare number is seconds).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "2s",
        value_parser = parse_interval
    )]
    pub interval: Duration,
}

/// The output flag of a show command.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// How to print: table (for people), json or yaml (the API's document, for scripts);
    /// the command's help says which is the default.
    #[arg(short = 'o', long = "output", value_enum, value_name = "FORMAT")]
    pub output: Option<Format>,
}

/// What a command prints: its output, and notes for people.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Standard output: the table, the page or the document.
    pub out: String,
    /// Standard error, one line each: `no handlers`, invalid entries, the next page's cursor.
    pub notes: Vec<String>,
}

impl View {
    /// Text printed as it is.
    pub fn text(out: String) -> View {
        View {
            out,
            notes: Vec::new(),
        }
    }

    /// `table` rendered; when it has no rows, nothing on standard output and the note
    /// `no <things>` (`things` is e.g. `handlers`).
    pub fn table(table: &Table, things: &str) -> View {
        if table.is_empty() {
            return View {
                out: String::new(),
                notes: vec![format!("no {things}")],
            };
        }
        View::text(table.render())
    }

    /// This view with `notes` after its own.
    pub fn with_notes(mut self, notes: impl IntoIterator<Item = String>) -> View {
        self.notes.extend(notes);
        self
    }
}

/// Rows of cells under an uppercase header, rendered in columns two spaces apart, aligned by
/// the cells' display width (a CJK character takes two columns, a combining accent none), no
/// borders, no trailing blanks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column names (uppercased).
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_uppercase()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; control characters (a newline in a description) become spaces so that a
    /// row stays one line.
    pub fn push(&mut self, row: Vec<String>) {
        let row = row
            .into_iter()
            .map(|cell| {
                if cell.chars().any(char::is_control) {
                    cell.chars()
                        .map(|c| if c.is_control() { ' ' } else { c })
                        .collect()
                } else {
                    cell
                }
            })
            .collect();
        self.rows.push(row);
    }

    /// Whether it has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The header and the rows, one line each.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.width()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                match widths.get_mut(i) {
                    Some(width) => *width = (*width).max(cell.width()),
                    None => widths.push(cell.width()),
                }
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let pad = widths[i].saturating_sub(cell.width());
                line.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A JSON value as a table cell: strings as they are, `null` or absent as `-`, other values
/// as JSON.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An RFC 3339 time as a cell, to the second in UTC (`2025-01-31 12:00:00Z`); `-` when absent,
/// the text as it is when it is not a time.
pub fn time(value: &Value) -> String {
    match value.as_str() {
        Some(text) => match chrono::DateTime::parse_from_rfc3339(text) {
            Ok(at) => at
                .with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M:%SZ")
                .to_string(),
            Err(_) => text.to_string(),
        },
        None => cell(value),
    }
}

/// A duration in microseconds for people: `850µs`, `12ms`, `1.25s`, `2m03s`.
pub fn duration_us(us: u64) -> String {
    match us {
        0..1_000 => format!("{us}µs"),
        1_000..1_000_000 => format!("{}ms", us / 1_000),
        1_000_000..60_000_000 => format!("{:.2}s", us as f64 / 1e6),
        _ => {
            let seconds = us / 1_000_000;
            format!("{}m{:02}s", seconds / 60, seconds % 60)
        }
    }
}

/// `yes` or `no` of a JSON boolean, `default` when absent.
pub fn yes_no(value: &Value, default: bool) -> String {
    if value.as_bool().unwrap_or(default) {
        "yes".into()
    } else {
        "no".into()
    }
}

/// The invalid entries of a registry listing (`{"invalid": [{"name", "reason"}]}`) as notes:
/// `invalid handler "x": <reason>`. The service skips them; they are shown so that they are
/// fixed or deleted.
pub fn invalid_notes(listing: &Value, kind: &str) -> Vec<String> {
    listing["invalid"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|invalid| {
            format!(
                "invalid {kind} {:?} (skipped): {}",
                invalid["name"].as_str().unwrap_or("?"),
                invalid["reason"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// `value` printed as `format` asks: the view `table` makes of it, or the document itself.
pub fn render(
    format: Format,
    value: &Value,
    table: &dyn Fn(&Value) -> View,
) -> anyhow::Result<View> {
    Ok(match format {
        Format::Table => table(value),
        Format::Json => View::text(format!("{}\n", serde_json::to_string_pretty(value)?)),
        Format::Yaml => View::text(
            serde_yaml_ng::to_string(value).context("writing the server's answer as YAML")?,
        ),
    })
}

/// Writes `view`: its output to `out`, its notes to standard error.
pub fn emit(view: &View, out: &mut dyn Write) -> anyhow::Result<()> {
    out.write_all(view.out.as_bytes())?;
    out.flush()?;
    let mut err = std::io::stderr().lock();
    for note in &view.notes {
        writeln!(err, "{note}")?;
    }
    Ok(())
}

/// Prints what `fetch` answers in `format`, through `view` for a table.
pub async fn show<Fut>(
    format: Format,
    fetch: Fut,
    view: &dyn Fn(&Value) -> View,
    out: &mut dyn Write,
) -> anyhow::Result<()>
where
    Fut: Future<Output = anyhow::Result<Value>>,
{
    let value = fetch.await?;
    emit(&render(format, &value, view)?, out)
}

/// A list command: prints what `fetch` answers as `args` ask, once or, with `--watch`, every
/// interval until Ctrl-C. `command` names it in the watch header (`ferrisfx handler list`).
pub async fn list<F, Fut>(
    args: &ListArgs,
    command: &str,
    mut fetch: F,
    table: &dyn Fn(&Value) -> View,
    out: &mut dyn Write,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Value>>,
{
    if !args.watch {
        let value = fetch().await?;
        return emit(&render(args.output, &value, table)?, out);
    }
    let watch = Watch {
        format: args.output,
        interval: args.interval,
        command,
        terminal: std::io::stdout().is_terminal(),
    };
    let stop = async {
        // Without a handler for the signal, Ctrl-C would end the process with a failure.
        let _ = tokio::signal::ctrl_c().await;
    };
    watch
        .run(fetch, table, out, &mut std::io::stderr(), stop)
        .await
}

/// A watched list.
struct Watch<'a> {
    format: Format,
    interval: Duration,
    /// The command, for the header line.
    command: &'a str,
    /// Whether to redraw a screen (else print a snapshot when it changed).
    terminal: bool,
}

impl Watch<'_> {
    /// Fetches every interval and prints until `stop` ends; a failed fetch is said on `err`
    /// and the next one tried.
    async fn run<F, Fut>(
        &self,
        mut fetch: F,
        table: &dyn Fn(&Value) -> View,
        out: &mut dyn Write,
        err: &mut dyn Write,
        stop: impl Future<Output = ()>,
    ) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<Value>>,
    {
        tokio::pin!(stop);
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: Option<View> = None;
        // Whether a snapshot was printed, to separate the next from it.
        let mut printed = false;
        loop {
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = ticks.tick() => {}
            }
            let fetched = tokio::select! {
                _ = &mut stop => return Ok(()),
                fetched = fetch() => fetched,
            };
            let view = match fetched.and_then(|value| self.snapshot(&value, table)) {
                Ok(view) => view,
                Err(e) => {
                    writeln!(err, "error: {e:#}")?;
                    err.flush()?;
                    continue;
                }
            };
            if self.terminal {
                write!(
                    out,
                    "\x1b[H\x1b[2J{}\n\n{}",
                    self.header(chrono::Local::now()),
                    view.out
                )?;
            } else if last.as_ref() == Some(&view) {
                continue;
            } else {
                let separator = match self.format {
                    _ if !printed || view.out.is_empty() => "",
                    Format::Json => "",
                    Format::Table => "\n",
                    Format::Yaml => "---\n",
                };
                printed |= !view.out.is_empty();
                write!(out, "{separator}{}", view.out)?;
            }
            out.flush()?;
            for note in &view.notes {
                writeln!(err, "{note}")?;
            }
            err.flush()?;
            last = Some(view);
        }
    }

    /// The header line over a redrawn screen: `every 2s: ferrisfx handler list  12:00:03`.
    fn header<Tz: chrono::TimeZone>(&self, now: chrono::DateTime<Tz>) -> String
    where
        Tz::Offset: std::fmt::Display,
    {
        format!(
            "every {}: {}  {}",
            interval_text(self.interval),
            self.command,
            now.format("%H:%M:%S")
        )
    }

    /// One snapshot: as `render`, but JSON compact on one line when not on a terminal.
    fn snapshot(&self, value: &Value, table: &dyn Fn(&Value) -> View) -> anyhow::Result<View> {
        if self.format == Format::Json && !self.terminal {
            return Ok(View::text(format!("{value}\n")));
        }
        render(self.format, value, table)
    }
}

/// A watch interval: `2s`, `500ms`, `1m`, `1h`, or a bare number of seconds; at least 100ms.
pub fn parse_interval(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .with_context(|| format!("{text:?} is not an interval: give e.g. 2s, 500ms or 1m"))?;
    let ms = match unit {
        "ms" => n,
        "" | "s" => n.saturating_mul(1_000),
        "m" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        other => bail!("{text:?}: unknown unit {other:?} (ms, s, m or h)"),
    };
    if ms < 100 {
        bail!("{text:?} is too short: watch at most every 100ms");
    }
    Ok(Duration::from_millis(ms))
}

/// An interval as it would be typed: `2s`, `500ms`.
fn interval_text(interval: Duration) -> String {
    let ms = interval.as_millis();
    if ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

/// Test helpers of every list command's rendering.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// `-o json` and `-o yaml` print `value` itself: both read back equal to it, JSON pretty.
    pub fn assert_documents(value: &Value, table: &dyn Fn(&Value) -> View) {
        let json = render(Format::Json, value, table).unwrap();
        assert!(json.notes.is_empty(), "{json:?}");
        assert!(json.out.starts_with("{\n"), "pretty: {}", json.out);
        let back: Value = serde_json::from_str(&json.out).unwrap();
        assert_eq!(&back, value);
        let yaml = render(Format::Yaml, value, table).unwrap();
        assert!(yaml.notes.is_empty(), "{yaml:?}");
        let back: Value = serde_yaml_ng::from_str(&yaml.out).unwrap();
        assert_eq!(&back, value, "{}", yaml.out);
    }

    /// The table's lines.
    pub fn lines(view: &View) -> Vec<&str> {
        view.out.lines().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::json;

    use super::*;

    #[test]
    fn columns_align_by_display_width() {
        let mut table = Table::new(&["name", "owner", "note"]);
        table.push(vec!["a".into(), "zoë".into(), "plain".into()]);
        // 'e' and a combining acute take one column; each CJK character two.
        table.push(vec!["日本".into(), "e\u{301}".into(), String::new()]);
        table.push(vec!["bb".into(), "x".into(), "two\nlines".into()]);
        assert_eq!(
            table.render(),
            "NAME  OWNER  NOTE\n\
             a     zoë    plain\n\
             日本  e\u{301}\n\
             bb    x      two lines\n"
        );
    }

    #[test]
    fn an_empty_list_prints_nothing_and_says_so_on_stderr() {
        let table = Table::new(&["name"]);
        let view = View::table(&table, "handlers");
        assert_eq!(view.out, "");
        assert_eq!(view.notes, ["no handlers"]);
    }

    #[test]
    fn cells_read_well() {
        assert_eq!(cell(&json!(null)), "-");
        assert_eq!(cell(&json!("x")), "x");
        assert_eq!(cell(&json!(3)), "3");
        assert_eq!(
            time(&json!("2025-01-31T12:00:00.123456+01:00")),
            "2025-01-31 11:00:00Z"
        );
        assert_eq!(time(&json!(null)), "-");
        assert_eq!(time(&json!("soon")), "soon");
        assert_eq!(duration_us(850), "850µs");
        assert_eq!(duration_us(12_345), "12ms");
        assert_eq!(duration_us(1_250_000), "1.25s");
        assert_eq!(duration_us(123_000_000), "2m03s");
        assert_eq!(
            invalid_notes(
                &json!({"invalid": [{"name": "x", "reason": "bad"}]}),
                "handler"
            ),
            ["invalid handler \"x\" (skipped): bad"]
        );
    }

    #[test]
    fn intervals_read_with_units() {
        assert_eq!(parse_interval("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_interval("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_interval("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_interval("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_interval("10ms").is_err());
        assert!(parse_interval("2w").is_err());
        assert!(parse_interval("s").is_err());
        assert_eq!(interval_text(Duration::from_secs(2)), "2s");
        assert_eq!(interval_text(Duration::from_millis(500)), "500ms");
    }

    #[test]
    fn list_flags_parse_and_o_is_not_global() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            list: ListArgs,
        }
        let cli = Cli::try_parse_from(["list"]).unwrap();
        assert_eq!(cli.list.output, Format::Table);
        assert!(!cli.list.watch);
        assert_eq!(cli.list.interval, Duration::from_secs(2));
        let cli = Cli::try_parse_from(["list", "-o", "yaml", "-w", "--interval", "1s"]).unwrap();
        assert_eq!(cli.list.output, Format::Yaml);
        assert!(cli.list.watch);
        assert_eq!(cli.list.interval, Duration::from_secs(1));
        assert!(Cli::try_parse_from(["list", "-o", "xml"]).is_err());
    }

    #[test]
    fn documents_are_the_value_itself() {
        let value = json!({"items": [{"id": "a", "n": 1, "ok": true, "none": null}]});
        testing::assert_documents(&value, &|_| View::default());
    }

    /// A fetch answering `answers` in turn, then stopping the watch.
    fn scripted(
        answers: Vec<anyhow::Result<Value>>,
        stop: tokio_util::sync::CancellationToken,
    ) -> impl FnMut() -> std::future::Ready<anyhow::Result<Value>> {
        let answers = Arc::new(Mutex::new(answers.into_iter()));
        move || {
            let next = answers.lock().unwrap().next();
            if answers.lock().unwrap().len() == 0 {
                stop.cancel();
            }
            std::future::ready(next.unwrap_or_else(|| Ok(json!(null))))
        }
    }

    fn names(v: &Value) -> View {
        let mut table = Table::new(&["name"]);
        for name in v.as_array().into_iter().flatten() {
            table.push(vec![cell(name)]);
        }
        View::table(&table, "things")
    }

    async fn watched(
        format: Format,
        terminal: bool,
        answers: Vec<anyhow::Result<Value>>,
    ) -> (String, String) {
        let stop = tokio_util::sync::CancellationToken::new();
        let fetch = scripted(answers, stop.clone());
        let watch = Watch {
            format,
            interval: Duration::from_millis(100),
            command: "ferrisfx thing list",
            terminal,
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let stopped = stop.clone();
        watch
            .run(fetch, &names, &mut out, &mut err, async move {
                stopped.cancelled().await;
                // Let the last answer be printed before stopping.
                tokio::task::yield_now().await;
            })
            .await
            .unwrap();
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[tokio::test]
    async fn a_piped_watch_prints_a_snapshot_only_when_it_changed() {
        let answers = || {
            vec![
                Ok(json!(["a"])),
                Ok(json!(["a"])),
                Err(anyhow::anyhow!("server answered 503")),
                Ok(json!([])),
                Ok(json!(["a", "b"])),
                Ok(json!(["a", "b"])),
            ]
        };
        let (out, err) = watched(Format::Table, false, answers()).await;
        assert_eq!(out, "NAME\na\n\nNAME\na\nb\n");
        assert_eq!(err, "error: server answered 503\nno things\n");

        let (out, _) = watched(Format::Json, false, answers()).await;
        assert_eq!(
            out, "[\"a\"]\n[]\n[\"a\",\"b\"]\n",
            "one compact document a line"
        );
        let (out, _) = watched(Format::Yaml, false, answers()).await;
        assert_eq!(out, "- a\n---\n[]\n---\n- a\n- b\n");
    }

    #[tokio::test]
    async fn a_watch_on_a_terminal_redraws_under_a_header() {
        let (out, _) = watched(
            Format::Table,
            true,
            vec![Ok(json!(["a"])), Ok(json!(["a"]))],
        )
        .await;
        let screens: Vec<&str> = out.split("\x1b[H\x1b[2J").skip(1).collect();
        assert_eq!(screens.len(), 2, "redrawn even unchanged: {out:?}");
        for screen in screens {
            let (header, table) = screen.split_once("\n\n").unwrap();
            assert!(
                header.starts_with("every 100ms: ferrisfx thing list  "),
                "{header}"
            );
            assert_eq!(table, "NAME\na\n");
        }
        let watch = Watch {
            format: Format::Table,
            interval: Duration::from_secs(2),
            command: "ferrisfx handler list",
            terminal: true,
        };
        let at = chrono::DateTime::parse_from_rfc3339("2025-01-31T12:00:03Z").unwrap();
        assert_eq!(
            watch.header(at),
            "every 2s: ferrisfx handler list  12:00:03"
        );
    }
}
