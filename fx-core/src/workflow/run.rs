//! A workflow run and its state machine. A run keeps the definition it started with (an edit
//! of the workflow changes later runs only), the trigger event, and per step its status and
//! the executions it started. [`Run::settle`] moves a run forward from what its steps'
//! executions became: it records each finished step once, skips the steps whose edge
//! conditions cannot hold any more, applies the failure policy and names the steps that may
//! start. Pure: the [`conductor`](super::conductor) reads and writes the store around it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Condition, FailurePolicy, Workflow};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::execution::ExecutionId;

/// A run's id: 32 lowercase hex digits, derived from its trigger (so a redelivered trigger
/// finds the run it started).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(String);

impl RunId {
    /// The run of `workflow` that the event (`source`, `id`) starts.
    pub fn for_trigger(workflow: &str, source: &str, id: &str) -> RunId {
        let derived = ExecutionId::derive(source, id, &format!("workflow:{workflow}"));
        RunId(derived.as_str().to_string())
    }

    /// Parses a run id as shown in URLs.
    pub fn parse(text: &str) -> Result<RunId> {
        if text.len() != 32 || !text.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(Error::invalid(format!(
                "run id {text:?} is not 32 lowercase hex digits"
            )));
        }
        Ok(RunId(text.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A run's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Steps run or wait.
    Running,
    /// Every step that ran succeeded, or failed with its failure handled by an edge.
    Succeeded,
    /// A step failed and no edge handled it.
    Failed,
    /// Cancelled by a user: no step starts any more.
    Cancelled,
}

impl RunStatus {
    /// Every status, in list order.
    pub const ALL: [RunStatus; 4] = [
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];

    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a stored or requested status.
    pub fn parse(text: &str) -> Result<RunStatus> {
        RunStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown run status {text:?}: use running, succeeded, failed or cancelled"
                ))
            })
    }

    /// Whether the run is over (a re-drive may start it again when failed or cancelled).
    pub fn is_terminal(self) -> bool {
        self != RunStatus::Running
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A step's status within a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Waiting for the steps it depends on.
    Pending,
    /// Its executions are queued or running.
    Running,
    /// Every execution succeeded.
    Succeeded,
    /// An execution failed (after its retries).
    Failed,
    /// Its edge conditions cannot hold (a dependency ended otherwise): it never runs.
    Skipped,
    /// The run stopped (a failure under `on_failure: stop`, or a cancel) before it started.
    Cancelled,
}

impl StepStatus {
    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the step is over for this generation of the run.
    pub fn is_terminal(self) -> bool {
        !matches!(self, StepStatus::Pending | StepStatus::Running)
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRun {
    /// The step's name in the definition.
    pub name: String,
    /// Its status.
    pub status: StepStatus,
    /// The run generation it last started in (0, then one more per re-drive).
    #[serde(default)]
    pub generation: u32,
    /// The executions it started: one, or one per item of a map, in item order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub executions: Vec<ExecutionId>,
    /// The items of a map that ended so far, by index: `None` succeeded, `Some(why)` failed
    /// (so that a run with a large map reads each item's execution once, not at every end).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ended: BTreeMap<u32, Option<String>>,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached its status (its one recorded result).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed, was skipped or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A run of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Its id.
    pub id: RunId,
    /// The workflow's name.
    pub workflow: String,
    /// The registry revision of the definition it runs.
    pub revision: u64,
    /// The definition as it was when the run started.
    pub definition: Workflow,
    /// The event that started it (an API call's input is the data of one).
    pub trigger: Event,
    /// Its status.
    pub status: RunStatus,
    /// Its steps, in the definition's order.
    pub steps: Vec<StepRun>,
    /// 0, then one more per re-drive.
    #[serde(default)]
    pub generation: u32,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it reached a terminal status with no step running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// The store's version of this record; an update must carry the version it read.
    #[serde(default)]
    pub version: u64,
}

/// The list view of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Its id.
    pub id: RunId,
    /// The workflow's name.
    pub workflow: String,
    /// Its status.
    pub status: RunStatus,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Steps by status (`succeeded: 3`), only those with some.
    pub steps: BTreeMap<String, usize>,
}

impl From<&Run> for RunSummary {
    fn from(run: &Run) -> Self {
        let mut steps = BTreeMap::new();
        for step in &run.steps {
            *steps.entry(step.status.as_str().to_string()).or_insert(0) += 1;
        }
        RunSummary {
            id: run.id.clone(),
            workflow: run.workflow.clone(),
            status: run.status,
            created_at: run.created_at,
            finished_at: run.finished_at,
            steps,
        }
    }
}

/// How a step's executions ended, as [`Run::settle`] needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Succeeded.
    Succeeded,
    /// Failed after its retries, with why.
    Failed(String),
}

impl Run {
    /// A new run of `definition` (revision `revision`) started by `trigger`, all steps pending.
    pub fn new(definition: Workflow, revision: u64, trigger: Event, now: DateTime<Utc>) -> Run {
        use cloudevents::AttributesReader;
        let id = RunId::for_trigger(
            &definition.name,
            &trigger.source().to_string(),
            trigger.id(),
        );
        let steps = definition
            .steps
            .iter()
            .map(|s| StepRun {
                name: s.name.clone(),
                status: StepStatus::Pending,
                generation: 0,
                executions: Vec::new(),
                ended: BTreeMap::new(),
                started_at: None,
                finished_at: None,
                reason: None,
            })
            .collect();
        Run {
            id,
            workflow: definition.name.clone(),
            revision,
            definition,
            trigger,
            status: RunStatus::Running,
            steps,
            generation: 0,
            created_at: now,
            updated_at: now,
            finished_at: None,
            version: 0,
        }
    }

    /// The step run named `name`.
    pub fn step(&self, name: &str) -> Option<&StepRun> {
        self.steps.iter().find(|s| s.name == name)
    }

    fn index(&self) -> HashMap<&str, usize> {
        self.steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect()
    }

    /// The executions of the running steps: what [`Run::settle`] needs to know the end of.
    pub fn running_executions(&self) -> Vec<ExecutionId> {
        self.steps
            .iter()
            .filter(|s| s.status == StepStatus::Running)
            .flat_map(|s| s.executions.iter().cloned())
            .collect()
    }

    /// Whether some step waits for `step` on failure (or always): its failure is handled.
    fn failure_handled(&self, step: &str) -> bool {
        self.definition.steps.iter().any(|s| {
            s.after
                .iter()
                .any(|e| e.step == step && matches!(e.on, Condition::Failure | Condition::Always))
        })
    }

    /// Moves the run forward at `now`. `ended` says how the executions that finished ended
    /// (absent ones have not). Records each running step whose executions all ended (once:
    /// a step already recorded is left as it is), skips the pending steps whose conditions
    /// cannot hold any more, stops the pending ones when the failure policy says so, and
    /// finishes the run when no step is left to run. Returns the steps that may start now
    /// (every dependency over and every edge condition holding); the caller starts them with
    /// [`Run::started`]. Returns whether anything changed too.
    pub fn settle(
        &mut self,
        ended: &HashMap<ExecutionId, Ended>,
        now: DateTime<Utc>,
    ) -> (Vec<String>, bool) {
        let mut changed = false;
        let generation = self.generation;
        for step in &mut self.steps {
            if step.status != StepStatus::Running {
                continue;
            }
            let mut failure = None;
            let mut all = true;
            for (i, id) in step.executions.iter().enumerate() {
                match ended.get(id) {
                    None => all = false,
                    Some(Ended::Succeeded) => {}
                    Some(Ended::Failed(why)) => {
                        if failure.is_none() {
                            failure = Some(if step.executions.len() > 1 {
                                format!("item {i}: {why}")
                            } else {
                                why.clone()
                            });
                        }
                    }
                }
            }
            if all {
                step.status = if failure.is_some() {
                    StepStatus::Failed
                } else {
                    StepStatus::Succeeded
                };
                step.reason = failure;
                step.finished_at = Some(now);
                changed = true;
            }
        }
        let ready = if self.status == RunStatus::Running {
            self.plan(now, &mut changed)
        } else {
            // Cancelled: nothing new starts.
            for step in &mut self.steps {
                if step.status == StepStatus::Pending {
                    step.status = StepStatus::Cancelled;
                    step.generation = generation;
                    step.reason = Some("the run was cancelled".into());
                    step.finished_at = Some(now);
                    changed = true;
                }
            }
            Vec::new()
        };
        if self.finished_at.is_none() && self.steps.iter().all(|s| s.status.is_terminal()) {
            if self.status == RunStatus::Running {
                let failed = self
                    .steps
                    .iter()
                    .any(|s| s.status == StepStatus::Failed && !self.failure_handled(&s.name));
                self.status = if failed {
                    RunStatus::Failed
                } else {
                    RunStatus::Succeeded
                };
            }
            self.finished_at = Some(now);
            changed = true;
        }
        if changed {
            self.updated_at = now;
        }
        (ready, changed)
    }

    /// Skips and stops pending steps; returns those that may start.
    fn plan(&mut self, now: DateTime<Utc>, changed: &mut bool) -> Vec<String> {
        let generation = self.generation;
        let index: HashMap<String, usize> = self
            .index()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let unhandled: Vec<String> = self
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Failed && !self.failure_handled(&s.name))
            .map(|s| s.name.clone())
            .collect();
        if !unhandled.is_empty() && self.definition.on_failure == FailurePolicy::Stop {
            let why = format!(
                "not started: step {} failed and the workflow stops on a failure",
                unhandled.join(", ")
            );
            for step in &mut self.steps {
                if step.status == StepStatus::Pending {
                    step.status = StepStatus::Cancelled;
                    step.generation = generation;
                    step.reason = Some(why.clone());
                    step.finished_at = Some(now);
                    *changed = true;
                }
            }
            return Vec::new();
        }
        // Skips cascade: a skipped step can make its dependents skip; the definition is
        // acyclic, so this ends within as many passes as the graph is deep.
        loop {
            let mut ready = Vec::new();
            let mut skipped = false;
            for (i, def) in self.definition.steps.iter().enumerate() {
                if self.steps[i].status != StepStatus::Pending {
                    continue;
                }
                let mut over = true;
                let mut blocked = None;
                for edge in &def.after {
                    let dep = self.steps[index[&edge.step]].status;
                    if !dep.is_terminal() {
                        over = false;
                        break;
                    }
                    let holds = match edge.on {
                        Condition::Success => dep == StepStatus::Succeeded,
                        Condition::Failure => dep == StepStatus::Failed,
                        Condition::Always => dep != StepStatus::Cancelled,
                    };
                    if !holds && blocked.is_none() {
                        blocked = Some(format!(
                            "skipped: {} is {dep}, and this step runs after it on {}",
                            edge.step,
                            match edge.on {
                                Condition::Success => "success",
                                Condition::Failure => "failure",
                                Condition::Always => "any end but a cancel",
                            }
                        ));
                    }
                }
                if !over {
                    continue;
                }
                match blocked {
                    Some(why) => {
                        let step = &mut self.steps[i];
                        step.status = StepStatus::Skipped;
                        step.generation = generation;
                        step.reason = Some(why);
                        step.finished_at = Some(now);
                        skipped = true;
                        *changed = true;
                    }
                    None => ready.push(def.name.clone()),
                }
            }
            if !skipped {
                return ready;
            }
        }
    }

    /// Records that step `name` started at `now` with `executions` (none: a map over an
    /// empty list, which succeeds at once).
    pub fn started(&mut self, name: &str, executions: Vec<ExecutionId>, now: DateTime<Utc>) {
        let generation = self.generation;
        if let Some(step) = self.steps.iter_mut().find(|s| s.name == name) {
            step.generation = generation;
            step.started_at = Some(now);
            step.reason = None;
            step.ended.clear();
            if executions.is_empty() {
                step.status = StepStatus::Succeeded;
                step.finished_at = Some(now);
            } else {
                step.status = StepStatus::Running;
                step.finished_at = None;
            }
            step.executions = executions;
            self.updated_at = now;
        }
    }

    /// Records that step `name` could not start (its input, package or handler): it failed
    /// with `why`.
    pub fn not_started(&mut self, name: &str, why: String, now: DateTime<Utc>) {
        let generation = self.generation;
        if let Some(step) = self.steps.iter_mut().find(|s| s.name == name) {
            step.generation = generation;
            step.status = StepStatus::Failed;
            step.started_at = Some(now);
            step.finished_at = Some(now);
            step.reason = Some(why);
            step.executions.clear();
            step.ended.clear();
            self.updated_at = now;
        }
    }

    /// Cancels a running run: no step starts any more; running ones finish and are recorded.
    pub fn cancel(&mut self, now: DateTime<Utc>) -> Result<()> {
        if self.status != RunStatus::Running {
            return Err(Error::conflict(format!(
                "run {} is {}: only a running run can be cancelled",
                self.id, self.status
            )));
        }
        self.status = RunStatus::Cancelled;
        self.updated_at = now;
        Ok(())
    }

    /// Starts a failed or cancelled run again from the steps that did not succeed: they go
    /// back to pending in a new generation (new executions); succeeded steps keep their
    /// results and do not run again.
    pub fn redrive(&mut self, now: DateTime<Utc>) -> Result<()> {
        if !matches!(self.status, RunStatus::Failed | RunStatus::Cancelled)
            || self.finished_at.is_none()
        {
            return Err(Error::conflict(format!(
                "run {} is {}{}: only a finished failed or cancelled run can be re-driven",
                self.id,
                self.status,
                if self.finished_at.is_none() && self.status.is_terminal() {
                    " with steps still running"
                } else {
                    ""
                }
            )));
        }
        self.generation += 1;
        self.status = RunStatus::Running;
        self.finished_at = None;
        self.updated_at = now;
        for step in &mut self.steps {
            if step.status != StepStatus::Succeeded {
                step.status = StepStatus::Pending;
                step.executions.clear();
                step.ended.clear();
                step.started_at = None;
                step.finished_at = None;
                step.reason = None;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
