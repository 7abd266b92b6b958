//! Workflows (issue 18, first step: the definition). A workflow is a named, versioned graph of
//! steps; a step runs a package once all the steps it depends on are done (as its edge
//! conditions say), with the trigger event and their outputs as input. This module holds the
//! definition, its validation (a cycle is named with the steps on it), the layers a run
//! starts in order (also the layout of the graph view) and the import of Gorchestrator's
//! adjacency-matrix form. [`run`] is a run's state machine, [`ledger`] where runs are stored,
//! [`conductor`] what drives them over the bus and the executors.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::Event;
use crate::handler::{Filter, PackageRef};
use crate::limits::{LimitOverrides, RetryPolicy};
use crate::validate::validate_name;

/// The most steps of a workflow.
pub const MAX_STEPS: usize = 1000;

/// A workflow definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    /// Unique name.
    pub name: String,
    /// Free text for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The steps, in any order.
    pub steps: Vec<Step>,
    /// What a failed step does to the rest of the run.
    #[serde(default)]
    pub on_failure: FailurePolicy,
    /// What starts a run besides an API call.
    #[serde(default, skip_serializing_if = "Trigger::is_empty")]
    pub trigger: Trigger,
}

/// What starts a run of a workflow, besides an API call (always possible): an event that
/// passes `event`, or a tick of schedule `schedule` (its events' source is
/// `/schedules/<name>`). A run per event: a redelivered event starts nothing new.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// Events that start a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Filter>,
    /// A schedule whose ticks start a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

impl Trigger {
    /// Whether nothing but an API call starts a run.
    pub fn is_empty(&self) -> bool {
        self.event.is_none() && self.schedule.is_none()
    }

    /// Whether `event` starts a run.
    pub fn matches(&self, event: &Event) -> bool {
        use cloudevents::AttributesReader;
        self.event.as_ref().is_some_and(|f| f.matches(event))
            || self
                .schedule
                .as_ref()
                .is_some_and(|name| *event.source() == format!("/schedules/{name}"))
    }
}

/// One step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Unique within the workflow.
    pub name: String,
    /// The package whose function runs (or `handler`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<PackageRef>,
    /// The handler whose function runs, with its package, limits, retry policy, pool,
    /// configuration, secrets and outbound hosts (or `package`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// The executor pool of a `package` step (`default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// The steps it waits for, and on what.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<Edge>,
    /// A JSON pointer into the input naming a list: the step runs once per item, in
    /// parallel, and its output is the list of their outputs in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<String>,
    /// Limits over the package manifest's.
    #[serde(default, skip_serializing_if = "LimitOverrides::is_empty")]
    pub limits: LimitOverrides,
    /// Retries of a failed attempt.
    #[serde(default)]
    pub retry: RetryPolicy,
}

/// A dependency: step `step` must have finished as `on` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    /// The step depended on.
    pub step: String,
    /// When the dependent runs.
    #[serde(default)]
    pub on: Condition,
}

/// When a dependent step runs, given how the step it waits for ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// It succeeded.
    #[default]
    Success,
    /// It failed.
    Failure,
    /// Either.
    Always,
}

/// What a failed step does to the rest of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// No new step starts; running ones finish.
    #[default]
    Stop,
    /// Branches that do not depend on the failed step go on.
    Continue,
}

impl Workflow {
    /// Checks the structure: names, at most [`MAX_STEPS`] steps, unique step names, every
    /// dependency a step of the workflow, no cycle (named with the steps on it).
    pub fn validate(&self) -> Result<()> {
        validate_name("workflow name", &self.name)?;
        if let Some(filter) = &self.trigger.event {
            filter.validate()?;
        }
        if let Some(schedule) = &self.trigger.schedule {
            validate_name("trigger.schedule", schedule)?;
        }
        if self.steps.is_empty() || self.steps.len() > MAX_STEPS {
            return Err(Error::invalid(format!(
                "steps: a workflow has 1 to {MAX_STEPS} steps, got {}",
                self.steps.len()
            )));
        }
        let mut names = BTreeSet::new();
        for step in &self.steps {
            validate_name("steps.name", &step.name)?;
            if !names.insert(step.name.as_str()) {
                return Err(Error::invalid(format!(
                    "steps.name: {} appears twice",
                    step.name
                )));
            }
            match (&step.package, &step.handler) {
                (Some(package), None) => validate_name("steps.package.name", &package.name)?,
                (None, Some(handler)) => validate_name("steps.handler", handler)?,
                _ => {
                    return Err(Error::invalid(format!(
                        "steps of {}: give exactly one of package and handler",
                        step.name
                    )))
                }
            }
            if let Some(pool) = &step.pool {
                validate_name("steps.pool", pool)?;
                if step.handler.is_some() {
                    return Err(Error::invalid(format!(
                        "steps.pool of {}: a handler step runs in its handler's pool",
                        step.name
                    )));
                }
            }
            if let Some(p) = &step.map {
                if !(p.is_empty() || p.starts_with('/')) {
                    return Err(Error::invalid(format!(
                        "steps.map of {}: {p:?} is not a JSON pointer",
                        step.name
                    )));
                }
            }
            step.limits.validate()?;
            step.retry.validate()?;
        }
        for step in &self.steps {
            let mut seen = BTreeSet::new();
            for edge in &step.after {
                if !names.contains(edge.step.as_str()) {
                    return Err(Error::invalid(format!(
                        "steps.after of {}: no step {:?} in workflow {}",
                        step.name, edge.step, self.name
                    )));
                }
                if edge.step == step.name {
                    return Err(Error::invalid(format!(
                        "steps.after of {}: a step cannot wait for itself (cycle: {0} → {0})",
                        step.name
                    )));
                }
                if !seen.insert(edge.step.as_str()) {
                    return Err(Error::invalid(format!(
                        "steps.after of {}: {} appears twice",
                        step.name, edge.step
                    )));
                }
            }
        }
        if let Some(cycle) = self.cycle() {
            return Err(Error::invalid(format!(
                "workflow {} has a cycle: {}",
                self.name,
                cycle.join(" → ")
            )));
        }
        Ok(())
    }

    /// A definition written as JSON or YAML (what the CLI and the web UI take), validated.
    pub fn parse(text: &str) -> Result<Workflow> {
        let workflow: Workflow = if text.trim_start().starts_with('{') {
            serde_json::from_str(text)
                .map_err(|e| Error::invalid(format!("the workflow is not valid JSON: {e}")))?
        } else {
            // Through a JSON value, so that YAML reads as the JSON form does (enums as maps:
            // `event: {exact: {...}}`, not YAML tags).
            let value: serde_json::Value = serde_yaml_ng::from_str(text)
                .map_err(|e| Error::invalid(format!("the workflow is not valid YAML: {e}")))?;
            serde_json::from_value(value)
                .map_err(|e| Error::invalid(format!("the workflow is not valid: {e}")))?
        };
        workflow.validate()?;
        Ok(workflow)
    }

    /// The step named `name`.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// A cycle of dependencies, as the steps on it with the first repeated at the end, if any.
    fn cycle(&self) -> Option<Vec<String>> {
        // Depth-first over "runs after" edges, iteratively (1,000 steps deep is fine either
        // way, but no recursion keeps the stack bounded).
        let index: BTreeMap<&str, usize> = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        let deps: Vec<Vec<usize>> = self
            .steps
            .iter()
            .map(|s| {
                s.after
                    .iter()
                    .filter_map(|e| index.get(e.step.as_str()).copied())
                    .collect()
            })
            .collect();
        // 0 unvisited, 1 on the current path, 2 done.
        let mut mark = vec![0u8; self.steps.len()];
        for start in 0..self.steps.len() {
            if mark[start] != 0 {
                continue;
            }
            let mut path: Vec<(usize, usize)> = vec![(start, 0)];
            mark[start] = 1;
            while let Some(&mut (node, ref mut next)) = path.last_mut() {
                if let Some(&dep) = deps[node].get(*next) {
                    *next += 1;
                    match mark[dep] {
                        0 => {
                            mark[dep] = 1;
                            path.push((dep, 0));
                        }
                        1 => {
                            let from = path.iter().position(|&(n, _)| n == dep).unwrap_or(0);
                            // The path runs against the edges ("waits for"): reverse it so
                            // the cycle reads in run order.
                            let mut cycle: Vec<String> = path[from..]
                                .iter()
                                .rev()
                                .map(|&(n, _)| self.steps[n].name.clone())
                                .collect();
                            cycle.push(cycle[0].clone());
                            return Some(cycle);
                        }
                        _ => {}
                    }
                } else {
                    mark[node] = 2;
                    path.pop();
                }
            }
        }
        None
    }

    /// The steps by layer: the first layer depends on nothing, each next one only on earlier
    /// layers (a step is in the layer after its deepest dependency). A run can start a layer's
    /// steps together; the graph view draws one column per layer. Assumes a valid workflow.
    pub fn layers(&self) -> Vec<Vec<&str>> {
        let mut depth: BTreeMap<&str, usize> = BTreeMap::new();
        let mut left: Vec<&Step> = self.steps.iter().collect();
        while !left.is_empty() {
            let before = left.len();
            left.retain(|step| {
                let ready = step
                    .after
                    .iter()
                    .all(|e| depth.contains_key(e.step.as_str()));
                if ready {
                    let d = step
                        .after
                        .iter()
                        .map(|e| depth[e.step.as_str()] + 1)
                        .max()
                        .unwrap_or(0);
                    depth.insert(step.name.as_str(), d);
                }
                !ready
            });
            if left.len() == before {
                break; // a cycle: validate refuses it
            }
        }
        let mut layers: Vec<Vec<&str>> = Vec::new();
        for step in &self.steps {
            if let Some(&d) = depth.get(step.name.as_str()) {
                if layers.len() <= d {
                    layers.resize(d + 1, Vec::new());
                }
                layers[d].push(step.name.as_str());
            }
        }
        layers
    }

    /// A workflow from Gorchestrator's adjacency-matrix form: `steps[i]` runs package
    /// `packages[i]`, and `matrix[i][j] == 1` means step `j` runs after step `i` (on success).
    pub fn from_matrix(
        name: &str,
        steps: &[String],
        packages: &[String],
        matrix: &[Vec<u8>],
    ) -> Result<Workflow> {
        let n = steps.len();
        if packages.len() != n || matrix.len() != n || matrix.iter().any(|row| row.len() != n) {
            return Err(Error::invalid(format!(
                "the adjacency matrix must be {n} × {n}, one row and one package per step"
            )));
        }
        let mut built: Vec<Step> = steps
            .iter()
            .zip(packages)
            .map(|(step, package)| Step {
                name: step.clone(),
                package: Some(PackageRef {
                    name: package.clone(),
                    version: crate::package::LATEST_ALIAS.to_string(),
                }),
                handler: None,
                pool: None,
                after: Vec::new(),
                map: None,
                limits: LimitOverrides::default(),
                retry: RetryPolicy::default(),
            })
            .collect();
        for (i, row) in matrix.iter().enumerate() {
            for (j, &cell) in row.iter().enumerate() {
                match cell {
                    0 => {}
                    1 => built[j].after.push(Edge {
                        step: steps[i].clone(),
                        on: Condition::Success,
                    }),
                    other => {
                        return Err(Error::invalid(format!(
                            "adjacency matrix cell [{i}][{j}] is {other}: only 0 and 1"
                        )))
                    }
                }
            }
        }
        let workflow = Workflow {
            name: name.to_string(),
            description: String::new(),
            steps: built,
            on_failure: FailurePolicy::Stop,
            trigger: Trigger::default(),
        };
        workflow.validate()?;
        Ok(workflow)
    }
}

pub mod conductor;
pub mod ledger;
pub mod run;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

#[cfg(test)]
mod tests;
