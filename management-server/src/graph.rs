//! A workflow run's graph as SVG, drawn on the server with a layered layout: one column per
//! layer of the definition ([`Workflow::layers`](fx_core::workflow::Workflow::layers)), steps
//! in a column ordered by where the steps they wait for are (one barycentre pass, which keeps
//! most edges from crossing), edges as curves from a step to the steps that wait for it
//! (solid: on success; dashed: on failure; dotted: always). Each step is coloured by its
//! status and links to its execution (a map step to its first item's; the run page lists all).
//! No script, no external service: the page reloads the image while the run is running.

use std::collections::HashMap;
use std::fmt::Write;

use fx_core::workflow::run::{Run, RunStatus, StepRun, StepStatus};
use fx_core::workflow::{Condition, Workflow};

const COLUMN: f64 = 220.0;
const ROW: f64 = 64.0;
const NODE_W: f64 = 170.0;
const NODE_H: f64 = 44.0;
const MARGIN: f64 = 24.0;

/// Fill and stroke of a step by status.
pub fn colours(status: StepStatus) -> (&'static str, &'static str) {
    match status {
        StepStatus::Pending => ("#f3f4f6", "#9ca3af"),
        StepStatus::Running => ("#dbeafe", "#2563eb"),
        StepStatus::Succeeded => ("#dcfce7", "#16a34a"),
        StepStatus::Failed => ("#fee2e2", "#dc2626"),
        StepStatus::Skipped => ("#f9fafb", "#d1d5db"),
        StepStatus::Cancelled => ("#fef3c7", "#d97706"),
    }
}

/// Where each step is drawn: (column, row) by name.
pub fn layout(workflow: &Workflow) -> HashMap<String, (usize, usize)> {
    let mut at: HashMap<String, (usize, usize)> = HashMap::new();
    for (column, layer) in workflow.layers().into_iter().enumerate() {
        // Barycentre: a step sits near the mean row of the steps it waits for.
        let mut keyed: Vec<(f64, usize, &str)> = layer
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let rows: Vec<f64> = workflow
                    .step(name)
                    .map(|s| {
                        s.after
                            .iter()
                            .filter_map(|e| at.get(&e.step).map(|&(_, r)| r as f64))
                            .collect()
                    })
                    .unwrap_or_default();
                let key = if rows.is_empty() {
                    i as f64
                } else {
                    rows.iter().sum::<f64>() / rows.len() as f64
                };
                (key, i, *name)
            })
            .collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (row, (_, _, name)) in keyed.into_iter().enumerate() {
            at.insert(name.to_string(), (column, row));
        }
    }
    at
}

/// XML-escapes `text`.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` cut to `max` characters with an ellipsis.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(max - 1).collect();
        cut.push('…');
        cut
    }
}

/// The run's graph as a standalone SVG document.
pub fn render(run: &Run) -> String {
    draw(
        &run.definition,
        &format!("workflow {} run {}", run.workflow, run.id),
        Some(run.status),
        &run.steps,
    )
}

/// A definition's graph, as a run that has not started would be drawn (every step pending,
/// no links): what the workflow's page shows.
pub fn render_definition(workflow: &Workflow) -> String {
    // The steps of a run that has not started (all pending), whatever a step run holds.
    let steps = match fx_core::event::new_json_event(
        "definition",
        "/workflows",
        "com.ferrisfx.workflow.definition",
        serde_json::Value::Null,
    ) {
        Ok(trigger) => Run::new(workflow.clone(), 0, trigger, chrono::Utc::now()).steps,
        Err(_) => Vec::new(),
    };
    draw(
        workflow,
        &format!("workflow {}", workflow.name),
        None,
        &steps,
    )
}

/// The graph of `workflow` with its steps as `steps` say, labelled `label`.
fn draw(
    workflow: &Workflow,
    label: &str,
    run_status: Option<RunStatus>,
    steps: &[StepRun],
) -> String {
    let at = layout(workflow);
    let columns = at.values().map(|&(c, _)| c + 1).max().unwrap_or(1);
    let rows = at.values().map(|&(_, r)| r + 1).max().unwrap_or(1);
    let width = MARGIN * 2.0 + (columns as f64 - 1.0) * COLUMN + NODE_W;
    let height = MARGIN * 2.0 + (rows as f64 - 1.0) * ROW + NODE_H;
    let corner = |name: &str| {
        at.get(name)
            .map(|&(c, r)| (MARGIN + c as f64 * COLUMN, MARGIN + r as f64 * ROW))
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" viewBox="0 0 {width:.0} {height:.0}" width="{width:.0}" height="{height:.0}" role="img" aria-label="{label}"{status} font-family="system-ui, sans-serif" font-size="13">"##,
        label = escape(label),
        status = run_status
            .map(|s| format!(r#" data-run-status="{s}""#))
            .unwrap_or_default(),
    );
    svg.push_str(r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#6b7280"/></marker></defs>"##);
    for step in &workflow.steps {
        let Some((x2, y2)) = corner(&step.name) else {
            continue;
        };
        for edge in &step.after {
            let Some((x1, y1)) = corner(&edge.step) else {
                continue;
            };
            let (sx, sy) = (x1 + NODE_W, y1 + NODE_H / 2.0);
            let (ex, ey) = (x2, y2 + NODE_H / 2.0);
            let mid = (sx + ex) / 2.0;
            let (stroke, dash) = match edge.on {
                Condition::Success => ("#6b7280", ""),
                Condition::Failure => ("#dc2626", r#" stroke-dasharray="6 4""#),
                Condition::Always => ("#6b7280", r#" stroke-dasharray="2 3""#),
            };
            let _ = write!(
                svg,
                r##"<path class="edge" data-from="{from}" data-to="{to}" data-on="{on}" d="M {sx:.1} {sy:.1} C {mid:.1} {sy:.1}, {mid:.1} {ey:.1}, {ex:.1} {ey:.1}" fill="none" stroke="{stroke}" stroke-width="1.5"{dash} marker-end="url(#arrow)"/>"##,
                from = escape(&edge.step),
                to = escape(&step.name),
                on = match edge.on {
                    Condition::Success => "success",
                    Condition::Failure => "failure",
                    Condition::Always => "always",
                },
            );
        }
    }
    for step in steps {
        let Some((x, y)) = corner(&step.name) else {
            continue;
        };
        let (fill, stroke) = colours(step.status);
        let def = workflow.step(&step.name);
        let what = match def {
            Some(d) if d.map.is_some() => {
                format!("{} · {} items", step.status, step.executions.len())
            }
            _ => step.status.to_string(),
        };
        let title = match &step.reason {
            Some(reason) => format!("{}: {} ({reason})", step.name, step.status),
            None => format!("{}: {}", step.name, step.status),
        };
        let link = step
            .executions
            .first()
            .map(|id| format!("/executions/{id}"));
        if let Some(link) = &link {
            let _ = write!(
                svg,
                r#"<a href="{link}" xlink:href="{link}" target="_top">"#
            );
        }
        let _ = write!(
            svg,
            r##"<g class="step" data-step="{name}" data-status="{status}"><title>{title}</title><rect x="{x:.1}" y="{y:.1}" width="{NODE_W}" height="{NODE_H}" rx="8" fill="{fill}" stroke="{stroke}" stroke-width="2"/><text x="{tx:.1}" y="{ty1:.1}" font-weight="600" fill="#111827">{label}</text><text x="{tx:.1}" y="{ty2:.1}" font-size="11" fill="#374151">{what}</text></g>"##,
            name = escape(&step.name),
            status = step.status,
            title = escape(&title),
            label = escape(&cut(&step.name, 22)),
            what = escape(&what),
            tx = x + 10.0,
            ty1 = y + 18.0,
            ty2 = y + 34.0,
        );
        if link.is_some() {
            svg.push_str("</a>");
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn diamond() -> Run {
        let w: Workflow = serde_json::from_value(serde_json::json!({
            "name": "flow",
            "steps": [
                {"name": "a", "package": {"name": "hello"}},
                {"name": "b", "package": {"name": "hello"}, "after": [{"step": "a"}]},
                {"name": "c", "package": {"name": "hello"}, "after": [{"step": "a", "on": "failure"}]},
                {"name": "d", "package": {"name": "hello"}, "after": [{"step": "b"}, {"step": "c", "on": "always"}]},
            ],
        }))
        .unwrap();
        let trigger =
            fx_core::event::new_json_event("1", "/t", "x.y", serde_json::json!({})).unwrap();
        Run::new(w, 1, trigger, Utc::now())
    }

    #[test]
    fn a_diamond_is_drawn_in_three_columns_with_every_edge() {
        let run = diamond();
        let at = layout(&run.definition);
        assert_eq!(at["a"].0, 0);
        assert_eq!((at["b"].0, at["c"].0), (1, 1));
        assert_eq!(at["d"].0, 2);
        let svg = render(&run);
        assert_eq!(svg.matches(r#"class="edge""#).count(), 4);
        assert_eq!(svg.matches(r#"class="step""#).count(), 4);
        assert!(svg.contains(r#"data-on="failure""#));
        assert!(svg.contains(r#"data-step="d" data-status="pending""#));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }

    #[test]
    fn status_colours_and_links_follow_the_run() {
        let mut run = diamond();
        let id = fx_core::execution::ExecutionId::derive("s", "i", "h");
        run.started("a", vec![id.clone()], Utc::now());
        let svg = render(&run);
        assert!(svg.contains(r#"data-step="a" data-status="running""#));
        assert!(svg.contains(&format!(r#"href="/executions/{id}""#)));
        assert!(svg.contains(colours(StepStatus::Running).1));
    }

    #[test]
    fn a_definition_is_drawn_pending_without_links() {
        let run = diamond();
        let svg = render_definition(&run.definition);
        assert_eq!(svg.matches(r#"class="step""#).count(), 4);
        assert_eq!(svg.matches(r#"data-status="pending""#).count(), 4);
        assert_eq!(svg.matches(r#"class="edge""#).count(), 4);
        assert!(svg.contains(r#"aria-label="workflow flow""#), "{svg}");
        assert!(!svg.contains("data-run-status"));
        assert!(!svg.contains("href="));
        assert!(render(&run).contains(r#"data-run-status="running""#));
    }

    #[test]
    fn names_are_escaped() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(cut("abcdef", 4), "abc…");
    }
}
