//! The conductor moves workflow runs forward on the platform's own parts: a step is an
//! execution in the state store, started by an invocation on the bus that an executor runs
//! like any other (limits, retries, logs); the state router calls [`Conductor::finished`]
//! once a batch of executions' states is stored, and the conductor records the steps that
//! ended and starts those that may start.
//!
//! **Durability.** Everything a run knows is in the state store: the run record (updated by
//! compare-and-swap, so a step's result is recorded once even when two gateways move the run
//! at once) and the step executions. A step's executions have ids derived from (run, step,
//! generation, item), so starting a step twice (two gateways moving one run, a redelivered
//! state event, a crash between publishing its invocations and recording it) finds the same
//! executions. Only the conductor that created them publishes their invocations, so a
//! function runs once however many conductors race; another conductor that finds them queued
//! leaves the step to their creator, unless the creator left them unrecorded for
//! [`ABANDONED_AFTER`] (it died in between): then they are published again, and only then can
//! an execution run twice. A step recorded as succeeded never starts again.
//! After a restart, [`Conductor::sweep`] moves every unfinished run once, which also catches
//! anything no state event will announce (a cancel, a step that failed before it ran).

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::Utc;
use serde_json::{json, Value};

use super::run::{Ended, Run, RunId, StepStatus};
use super::{Step, Workflow};
use crate::backends::Backends;
use crate::bus::topics;
use crate::error::{Error, ErrorKind, Result};
use crate::event::{data_bytes, data_json, new_json_event, partition_key, Event, Message};
use crate::execution::{Execution, ExecutionId, ExecutionStatus, Invocation, ResolvedPackage};
use crate::grants::Grants;
use crate::handler::{Filter, Handler, DEFAULT_POOL};
use crate::limits::Limits;
use crate::store::Created;

/// The type of a step execution's event.
pub const STEP_EVENT_TYPE: &str = "com.ferrisfx.workflow.step";
/// The type of the event an API call starts a run with.
pub const REQUESTED_EVENT_TYPE: &str = "com.ferrisfx.workflow.requested";
/// The most items a map step fans out into.
pub const MAX_ITEMS: usize = 1000;
/// Updates of one run tried before giving up when other conductors keep winning.
const MAX_CONFLICTS: usize = 64;
/// Unfinished runs one sweep moves.
const SWEEP_LIMIT: u32 = 1000;
/// How long after another conductor created a step's executions, without recording the step
/// as started, they count as abandoned (that conductor died between creating and publishing
/// them) and are published again. Recording normally follows creation within milliseconds.
const ABANDONED_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// The source of a run's step events: `/workflows/<workflow>/runs/<run>`.
pub fn run_source(workflow: &str, run: &RunId) -> String {
    format!("/workflows/{workflow}/runs/{run}")
}

/// The name a package step's executions carry as their handler: `workflow.<workflow>.<step>`.
pub fn step_handler_name(workflow: &str, step: &str) -> String {
    format!("workflow.{workflow}.{step}")
}

/// The output of a step's execution as JSON: the data of the event its function returned
/// (`null` for none, a list for several); data that is not JSON is kept as text.
pub fn output_value(events: &[Event]) -> Value {
    let one = |event: &Event| {
        data_json(event).unwrap_or_else(|| match data_bytes(event) {
            Some(bytes) => Value::String(String::from_utf8_lossy(&bytes).into_owned()),
            None => Value::Null,
        })
    };
    match events {
        [] => Value::Null,
        [event] => one(event),
        many => Value::Array(many.iter().map(one).collect()),
    }
}

/// Moves runs forward.
#[derive(Clone)]
pub struct Conductor {
    backends: Backends,
}

/// A step about to start: its executions and the invocations that carry them.
struct Launch {
    executions: Vec<Execution>,
    invocations: Vec<(String, Message)>,
}

impl Conductor {
    /// A conductor over `backends`.
    pub fn new(backends: Backends) -> Self {
        Conductor { backends }
    }

    /// Starts a run of `workflow` (at registry revision `revision`) for `trigger`, or finds
    /// the run that event started before; moves it. Returns the run's id and whether it is
    /// new.
    pub async fn start(
        &self,
        workflow: &Workflow,
        revision: u64,
        trigger: Event,
    ) -> Result<(RunId, bool)> {
        let run = Run::new(workflow.clone(), revision, trigger, Utc::now());
        let id = run.id.clone();
        let created = self.backends.runs.create_run(&run).await?;
        if created {
            metrics::counter!(crate::telemetry::WORKFLOW_RUNS, "workflow" => workflow.name.clone())
                .increment(1);
            tracing::info!(run = %id, workflow = %workflow.name, "workflow run started");
        }
        self.advance(&id).await?;
        Ok((id, created))
    }

    /// Starts a run of `workflow` with `input` as an API call does: the trigger is a
    /// `com.ferrisfx.workflow.requested` event with the input as data and `key` as id (a
    /// second call with the same key finds the first run).
    pub async fn request(
        &self,
        workflow: &Workflow,
        revision: u64,
        input: Value,
        key: &str,
    ) -> Result<(RunId, bool)> {
        let trigger = new_json_event(
            key,
            format!("/api/v1/workflows/{}", workflow.name),
            REQUESTED_EVENT_TYPE,
            input,
        )?;
        self.start(workflow, revision, trigger).await
    }

    /// Moves the runs that the `executions` (whose states are stored) belong to. A run that
    /// cannot move for a reason other than an outage (a record that does not decode) is
    /// logged and left to the sweep, not held against the other runs.
    pub async fn finished(&self, executions: &[ExecutionId]) -> Result<()> {
        if executions.is_empty() {
            return Ok(());
        }
        let hint: HashSet<ExecutionId> = executions.iter().cloned().collect();
        for run in self.backends.runs.runs_of(executions).await? {
            match self.advance_knowing(&run, Some(&hint)).await {
                Ok(_) => {}
                Err(e) if e.kind().is_retryable() => return Err(e),
                Err(e) => {
                    tracing::error!(run = %run, error = %e.chain(), "moving a workflow run failed")
                }
            }
        }
        Ok(())
    }

    /// Moves every unfinished run once; returns how many there were.
    pub async fn sweep(&self) -> Result<usize> {
        let runs = self.backends.runs.unfinished_runs(SWEEP_LIMIT).await?;
        for run in &runs {
            if let Err(e) = self.advance(run).await {
                if e.kind().is_retryable() {
                    return Err(e);
                }
                tracing::warn!(run = %run, error = %e.chain(), "moving a workflow run failed");
            }
        }
        Ok(runs.len())
    }

    /// Cancels a running run: no step starts any more; running steps finish and are recorded.
    pub async fn cancel(&self, id: &RunId) -> Result<Run> {
        self.change(id, |run| run.cancel(Utc::now())).await
    }

    /// Re-drives a failed or cancelled run from the steps that did not succeed.
    pub async fn redrive(&self, id: &RunId) -> Result<Run> {
        self.change(id, |run| run.redrive(Utc::now())).await
    }

    /// Applies `change` to the run and stores it (again on a conflict), then moves it.
    async fn change(&self, id: &RunId, change: impl Fn(&mut Run) -> Result<()>) -> Result<Run> {
        for _ in 0..MAX_CONFLICTS {
            let mut run = self
                .backends
                .runs
                .get_run(id)
                .await?
                .ok_or_else(|| Error::not_found(format!("no workflow run {id}")))?;
            change(&mut run)?;
            if self.backends.runs.update_run(&run).await? {
                return Ok(self.advance(id).await?.unwrap_or(run));
            }
        }
        Err(conflicts(id))
    }

    /// Records the steps of run `id` whose executions ended, starts those that may start, and
    /// stores the run; again from a fresh read when another conductor stored it first.
    /// Returns the run as stored, or `None` when there is no such run.
    pub async fn advance(&self, id: &RunId) -> Result<Option<Run>> {
        self.advance_knowing(id, None).await
    }

    /// [`Conductor::advance`] when only the executions in `ended` (if given) may have ended
    /// since the run was last moved: only those (and executions found already started when a
    /// step starts) are read, not every execution of every running step. Without it (a sweep,
    /// a user's change) every execution not yet known to have ended is read.
    async fn advance_knowing(
        &self,
        id: &RunId,
        ended: Option<&HashSet<ExecutionId>>,
    ) -> Result<Option<Run>> {
        // The executions whose invocations this move published, kept across its tries.
        let mut published: HashSet<ExecutionId> = HashSet::new();
        for _ in 0..MAX_CONFLICTS {
            let Some(mut run) = self.backends.runs.get_run(id).await? else {
                return Ok(None);
            };
            let before = run.clone();
            self.settle(&mut run, ended, &mut published).await?;
            if run == before {
                return Ok(Some(run));
            }
            if self.backends.runs.update_run(&run).await? {
                run.version += 1;
                self.record(&before, &run).await;
                return Ok(Some(run));
            }
            tracing::debug!(run = %id, "another conductor moved the run first; reading it again");
        }
        Err(conflicts(id))
    }

    /// Settles `run` in memory: steps that ended recorded, ready ones started (their
    /// executions created and invocations published), until nothing more can start.
    async fn settle(
        &self,
        run: &mut Run,
        hint: Option<&HashSet<ExecutionId>>,
        published: &mut HashSet<ExecutionId>,
    ) -> Result<()> {
        // How the executions of running steps ended; `None` = not yet. The items of a map
        // recorded as ended are known without a read.
        let mut known: HashMap<ExecutionId, Option<Ended>> = HashMap::new();
        for step in run.steps.iter().filter(|s| s.status == StepStatus::Running) {
            for (&i, why) in &step.ended {
                if let Some(id) = step.executions.get(i as usize) {
                    let end = match why {
                        None => Ended::Succeeded,
                        Some(why) => Ended::Failed(why.clone()),
                    };
                    known.insert(id.clone(), Some(end));
                }
            }
        }
        // Executions found started or finished when their step started: read them anyway.
        let mut existing: HashSet<ExecutionId> = HashSet::new();
        // Steps another conductor is starting: not started again by this one.
        let mut deferred: HashSet<String> = HashSet::new();
        // Each pass starts at least one step, so this ends within the step count.
        for _ in 0..=run.steps.len() {
            for id in run.running_executions() {
                if known.contains_key(&id) {
                    continue;
                }
                let read = hint.is_none_or(|h| h.contains(&id)) || existing.contains(&id);
                let ended = if read {
                    match self.backends.state.get_execution(&id).await? {
                        Some(execution) => ended(&execution),
                        None => None,
                    }
                } else {
                    None
                };
                known.insert(id, ended);
            }
            // A map's items that ended are recorded, so that later moves need not read them.
            for step in run.steps.iter_mut() {
                if step.status != StepStatus::Running || step.executions.len() < 2 {
                    continue;
                }
                for (i, id) in step.executions.iter().enumerate() {
                    if let Some(Some(end)) = known.get(id) {
                        step.ended.entry(i as u32).or_insert_with(|| match end {
                            Ended::Succeeded => None,
                            Ended::Failed(why) => Some(why.clone()),
                        });
                    }
                }
            }
            let ended: HashMap<ExecutionId, Ended> = known
                .iter()
                .filter_map(|(id, e)| e.clone().map(|e| (id.clone(), e)))
                .collect();
            let (ready, _) = run.settle(&ended, Utc::now());
            let ready: Vec<String> = ready
                .into_iter()
                .filter(|name| !deferred.contains(name))
                .collect();
            if ready.is_empty() {
                return Ok(());
            }
            for name in ready {
                match self.launch(run, &name).await {
                    Ok(launch) => {
                        let ids: Vec<ExecutionId> =
                            launch.executions.iter().map(|e| e.id.clone()).collect();
                        let Some(fresh) = self.publish(run, &name, launch, published).await? else {
                            tracing::debug!(run = %run.id, step = %name, "another conductor is starting the step");
                            deferred.insert(name);
                            continue;
                        };
                        for id in &ids {
                            if fresh.contains(id) {
                                known.insert(id.clone(), None);
                            } else {
                                existing.insert(id.clone());
                            }
                        }
                        tracing::debug!(run = %run.id, step = %name, executions = ids.len(), "step started");
                        run.started(&name, ids, Utc::now());
                    }
                    Err(e) if e.kind() == ErrorKind::Invalid || e.kind() == ErrorKind::NotFound => {
                        tracing::info!(run = %run.id, step = %name, reason = %e.chain(), "step could not start");
                        run.not_started(&name, e.chain(), Utc::now());
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Builds the executions and invocations of step `name` of `run`: its input (the trigger
    /// and the outputs of the steps it waits for), one execution per item of a map. An
    /// `Invalid` or `NotFound` error means the step cannot start (a missing package or
    /// handler, a map over something that is not a list, an input too large for the bus).
    async fn launch(&self, run: &Run, name: &str) -> Result<Launch> {
        let def = run
            .definition
            .step(name)
            .ok_or_else(|| Error::internal(format!("run {} has no step {name}", run.id)))?;
        let handler = self.handler(&run.workflow, def).await?;
        let version = self
            .backends
            .state
            .resolve_package(&handler.package)
            .await
            .map_err(|e| {
                if e.kind() == ErrorKind::NotFound {
                    Error::not_found(format!(
                        "package {} does not exist: upload it or change the step",
                        handler.package
                    ))
                } else {
                    e
                }
            })?;
        let input = self.input(run, def).await?;
        let items: Vec<Option<(usize, Value)>> = match &def.map {
            None => vec![None],
            Some(pointer) => {
                let list = input.pointer(pointer).ok_or_else(|| {
                    Error::invalid(format!(
                        "map {pointer:?}: the step's input has nothing there"
                    ))
                })?;
                let Value::Array(list) = list else {
                    return Err(Error::invalid(format!(
                        "map {pointer:?}: the step's input has a {} there, not a list",
                        kind_of(list)
                    )));
                };
                if list.len() > MAX_ITEMS {
                    return Err(Error::invalid(format!(
                        "map {pointer:?}: {} items, at most {MAX_ITEMS}",
                        list.len()
                    )));
                }
                list.iter().cloned().enumerate().map(Some).collect()
            }
        };
        let source = run_source(&run.workflow, &run.id);
        let package = ResolvedPackage {
            name: version.name.clone(),
            version: version.version.clone(),
            digest: version.digest.clone(),
        };
        let limits = Limits::resolve(&version.manifest.limits, &handler.limits);
        let grants = Grants::resolve(&version.manifest, &handler);
        let room = self.backends.bus.max_message_bytes();
        let mut launch = Launch {
            executions: Vec::with_capacity(items.len()),
            invocations: Vec::with_capacity(items.len()),
        };
        for item in items {
            let mut data = input.clone();
            let id = match &item {
                None => format!("{name}/{}", run.generation),
                Some((i, value)) => {
                    data["item"] = value.clone();
                    data["index"] = json!(i);
                    format!("{name}/{}/{i}", run.generation)
                }
            };
            let mut event = new_json_event(id, source.clone(), STEP_EVENT_TYPE, data)?;
            cloudevents::event::AttributesWriter::set_subject(&mut event, Some(name.to_string()));
            // A step continues the trace of the event that started its run.
            if let Some(trace) = crate::trace::TraceContext::of_event(&run.trigger) {
                trace.apply_to(&mut event);
            }
            let execution_id = ExecutionId::for_event(&event, &handler.name);
            let invocation = Invocation {
                execution_id: execution_id.clone(),
                handler: handler.clone(),
                package: package.clone(),
                event: event.clone(),
                attempt: 1,
                limits,
                dispatched_at: Utc::now(),
                not_before: None,
                attempt_base: 0,
                grants: grants.clone(),
                publish_output: false,
                trace: crate::trace::TraceContext::of_event(&event),
            };
            let message = Message::json(Some(partition_key(&event)), &invocation)?;
            if message.payload.len() > room {
                return Err(Error::invalid(format!(
                    "the input of step {name} is {} bytes with its invocation; the event bus carries at most {room} (lower the outputs it receives)",
                    message.payload.len()
                )));
            }
            launch
                .invocations
                .push((topics::invocations(&handler.pool), message));
            launch.executions.push(Execution {
                id: execution_id,
                handler: handler.name.clone(),
                package: Some(package.clone()),
                event,
                status: ExecutionStatus::Queued,
                attempts: 0,
                output: Vec::new(),
                error: None,
                created_at: Utc::now(),
                started_at: None,
                finished_at: None,
                duration_us: None,
                attempt_history: vec![],
            });
        }
        Ok(launch)
    }

    /// Indexes and creates the launch's executions, then publishes the invocations of those
    /// this conductor created. Returns the ids it published (now or earlier in this move, in
    /// `published`), or `None` when another conductor created the executions and has not yet
    /// recorded the step (it publishes them; the step is left to it).
    async fn publish(
        &self,
        run: &Run,
        step: &str,
        launch: Launch,
        published: &mut HashSet<ExecutionId>,
    ) -> Result<Option<HashSet<ExecutionId>>> {
        let ids: Vec<ExecutionId> = launch.executions.iter().map(|e| e.id.clone()).collect();
        if ids.is_empty() {
            return Ok(Some(HashSet::new()));
        }
        // Indexed first: a state event of one of them finds its run even if this conductor
        // dies right after publishing.
        self.backends
            .runs
            .index_step_executions(&run.id, &ids)
            .await?;
        let created = self
            .backends
            .state
            .create_executions(&launch.executions)
            .await?;
        let mut fresh = HashSet::new();
        let mut owed = Vec::new();
        let mut theirs = Vec::new();
        for ((id, created), invocation) in ids.into_iter().zip(created).zip(launch.invocations) {
            match created {
                Created::New => owed.push((id, invocation)),
                Created::Existing(ExecutionStatus::Queued) if published.contains(&id) => {
                    fresh.insert(id);
                }
                Created::Existing(ExecutionStatus::Queued) => theirs.push((id, invocation)),
                Created::Existing(_) => {}
            }
        }
        let mut deferred = false;
        if let Some((first, _)) = theirs.first() {
            // Created together, so the first tells the age of all.
            let abandoned = match self.backends.state.get_execution(first).await? {
                Some(execution) => Utc::now() - execution.created_at > ABANDONED_AFTER,
                None => true,
            };
            if abandoned {
                tracing::warn!(run = %run.id, step = %step, executions = theirs.len(), "publishing step executions that another conductor created but never recorded");
                owed.append(&mut theirs);
            } else {
                deferred = true;
            }
        }
        if !owed.is_empty() {
            metrics::counter!(crate::telemetry::WORKFLOW_STEPS, "workflow" => run.workflow.clone())
                .increment(owed.len() as u64);
            let (owed_ids, messages): (Vec<ExecutionId>, Vec<(String, Message)>) =
                owed.into_iter().unzip();
            self.backends.bus.publish_all(messages).await?;
            published.extend(owed_ids.iter().cloned());
            fresh.extend(owed_ids);
        }
        Ok((!deferred).then_some(fresh))
    }

    /// The handler a step runs as: the named handler, or one made for a package step.
    async fn handler(&self, workflow: &str, step: &Step) -> Result<Handler> {
        if let Some(name) = &step.handler {
            let stored = self.backends.registry.get(name).await?.ok_or_else(|| {
                Error::not_found(format!(
                    "handler {name} does not exist: create it or change the step"
                ))
            })?;
            return Ok(stored.handler);
        }
        let package = step.package.clone().ok_or_else(|| {
            Error::invalid(format!(
                "step {} names neither package nor handler",
                step.name
            ))
        })?;
        Ok(Handler {
            name: step_handler_name(workflow, &step.name),
            description: String::new(),
            filter: Filter::All(Vec::new()),
            package,
            pool: step
                .pool
                .clone()
                .unwrap_or_else(|| DEFAULT_POOL.to_string()),
            limits: step.limits.clone(),
            retry: step.retry.clone(),
            enabled: true,
            reuse_instances: false,
            config: BTreeMap::new(),
            secrets: Default::default(),
            http_allow: Default::default(),
        })
    }

    /// A step's input: `{"workflow", "run", "step", "input": <trigger data>, "trigger":
    /// {id, source, type, subject}, "steps": {<dependency>: <its output>}, "failed":
    /// {<dependency>: <why>}}`; a map item adds `item` and `index`.
    async fn input(&self, run: &Run, step: &Step) -> Result<Value> {
        use cloudevents::AttributesReader;
        let mut outputs = serde_json::Map::new();
        let mut failed = serde_json::Map::new();
        for edge in &step.after {
            let Some(dep) = run.step(&edge.step) else {
                continue;
            };
            match dep.status {
                StepStatus::Succeeded => {
                    let mapped = run
                        .definition
                        .step(&edge.step)
                        .is_some_and(|d| d.map.is_some());
                    let mut values = Vec::with_capacity(dep.executions.len());
                    for id in &dep.executions {
                        let execution =
                            self.backends
                                .state
                                .get_execution(id)
                                .await?
                                .ok_or_else(|| {
                                    Error::internal(format!(
                                        "execution {id} of step {} of run {} is missing",
                                        edge.step, run.id
                                    ))
                                })?;
                        values.push(output_value(&execution.output));
                    }
                    let value = if mapped {
                        Value::Array(values)
                    } else {
                        values.pop().unwrap_or(Value::Null)
                    };
                    outputs.insert(edge.step.clone(), value);
                }
                StepStatus::Failed => {
                    failed.insert(
                        edge.step.clone(),
                        Value::String(dep.reason.clone().unwrap_or_default()),
                    );
                }
                _ => {}
            }
        }
        let trigger = &run.trigger;
        Ok(json!({
            "workflow": run.workflow,
            "run": run.id,
            "step": step.name,
            "input": data_json(trigger).unwrap_or_else(|| match data_bytes(trigger) {
                Some(bytes) => Value::String(String::from_utf8_lossy(&bytes).into_owned()),
                None => Value::Null,
            }),
            "trigger": {
                "id": trigger.id(),
                "source": trigger.source().to_string(),
                "type": trigger.ty(),
                "subject": trigger.subject(),
            },
            "steps": outputs,
            "failed": failed,
        }))
    }

    /// Logs, counts and writes the sink documents of what changed from `before` to `after`.
    async fn record(&self, before: &Run, after: &Run) {
        let mut steps = Vec::new();
        for (old, new) in before.steps.iter().zip(&after.steps) {
            if new.status != old.status && new.status.is_terminal() {
                metrics::counter!(crate::telemetry::WORKFLOW_STEP_RESULTS, "workflow" => after.workflow.clone(), "status" => new.status.as_str())
                    .increment(1);
                steps.push(crate::sink::StepDoc::of(after, new));
            }
        }
        let finished = before.finished_at.is_none() && after.finished_at.is_some();
        if finished {
            tracing::info!(run = %after.id, workflow = %after.workflow, status = %after.status, "workflow run finished");
        }
        let runs: Vec<crate::sink::RunDoc> = if finished || before.status != after.status {
            vec![crate::sink::RunDoc::of(after)]
        } else {
            Vec::new()
        };
        if runs.is_empty() && steps.is_empty() {
            return;
        }
        if let Err(e) = self.backends.sink.write_workflow_docs(&runs, &steps).await {
            tracing::warn!(run = %after.id, error = %e.chain(), "writing workflow documents to the sink failed");
        }
    }
}

/// How an execution ended, if it did.
fn ended(execution: &Execution) -> Option<Ended> {
    match execution.status {
        ExecutionStatus::Succeeded => Some(Ended::Succeeded),
        ExecutionStatus::Failed => Some(Ended::Failed(
            execution
                .error
                .as_ref()
                .map(|f| format!("{}: {}", f.kind.as_str(), f.message))
                .unwrap_or_else(|| "failed".into()),
        )),
        _ => None,
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

fn conflicts(id: &RunId) -> Error {
    Error::unavailable(format!(
        "workflow run {id}: {MAX_CONFLICTS} updates in a row lost to other conductors; try again"
    ))
}

#[cfg(test)]
#[path = "conductor_tests.rs"]
mod tests;
