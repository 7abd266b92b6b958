//! The Prometheus metrics of the platform: their names, labels and descriptions, in one place.
//!
//! Parts record through the [`metrics`] facade (a no-op until a process installs a recorder);
//! `ferrisfx` installs the Prometheus recorder and serves it on `/metrics` of the management
//! server and of the operations listener of every process.

/// Invocations finished by an executor; labels `handler`, `status` (`succeeded`, `failed`).
pub const INVOCATIONS: &str = "fx_invocations_total";
/// Run time (instantiate and call) of invocations, in seconds; label `handler`.
pub const INVOCATION_DURATION: &str = "fx_invocation_duration_seconds";
/// Time from dispatch (or the end of a retry's backoff) to the start of the run, in seconds;
/// label `handler`.
pub const QUEUE_WAIT: &str = "fx_invocation_queue_wait_seconds";
/// Linear memory an invocation grew to, in bytes; label `handler`.
pub const PEAK_MEMORY: &str = "fx_invocation_peak_memory_bytes";
/// Fuel an invocation used, when its handler sets a fuel budget; label `handler`.
pub const FUEL_USED: &str = "fx_invocation_fuel_used";
/// Failed invocations by failure kind; labels `handler`, `kind`.
pub const FAILURES: &str = "fx_invocation_failures_total";
/// Attempts scheduled again by a retry policy; label `handler`.
pub const RETRIES: &str = "fx_retries_total";
/// Executions sent to the dead-letter topic after their last attempt; label `handler`.
pub const DEADLETTERED: &str = "fx_executions_deadlettered_total";
/// Compile-cache lookups; label `result`: `memory_hit`, `disk_hit`, `compiled`.
pub const COMPILE_CACHE: &str = "fx_compile_cache_lookups_total";
/// Events consumed by gateways; label `outcome`: `dispatched` (matched at least one handler),
/// `unmatched`, `deadlettered` (not a valid CloudEvent).
pub const EVENTS: &str = "fx_gateway_events_total";
/// Schedule ticks fired (claimed and published) by this gateway's scheduler; label
/// `schedule`.
pub const SCHEDULE_TICKS: &str = "fx_schedule_ticks_total";
/// Requests the management server refused with 503 because a bound was reached; label
/// `bound`: `requests`, `package uploads`, `live streams`.
pub const SERVER_BUSY: &str = "fx_server_busy_total";
/// Webhook deliveries, by hook and outcome: `accepted`, `unauthorized` (bad signature),
/// `rate_limited`, `too_large`, `malformed`, `unavailable`; deliveries to a hook that does not
/// exist count under hook `-`.
pub const WEBHOOK_DELIVERIES: &str = "fx_webhook_deliveries_total";
/// Chat commands, by bundle and outcome: `accepted`, `help`, `unknown`, `denied`, `usage`,
/// `unauthorized` (bad signature), `malformed`, `busy`, `unavailable`, `retry_ignored`.
pub const CHAT_COMMANDS: &str = "fx_chat_commands_total";
/// Notification attempts, by rule and result: `delivered`, `retrying` (failed, another
/// attempt due), `failed` (out of attempts).
pub const NOTIFICATIONS: &str = "fx_notifications_total";
/// Notifications recorded in the outbox by the state router, by rule and outcome.
pub const NOTIFICATIONS_ENQUEUED: &str = "fx_notifications_enqueued_total";
/// Workflow runs started, by workflow.
pub const WORKFLOW_RUNS: &str = "fx_workflow_runs_total";
/// Workflow step executions published, by workflow (a map's items count one each).
pub const WORKFLOW_STEPS: &str = "fx_workflow_step_invocations_total";
/// Workflow steps recorded, by workflow and status (`succeeded`, `failed`, `skipped`,
/// `cancelled`).
pub const WORKFLOW_STEP_RESULTS: &str = "fx_workflow_step_results_total";
/// Retries that found `max_waiting_retries` retries already waiting, and waited in a slot.
pub const WAITING_RETRIES_FULL: &str = "fx_executor_waiting_retries_full_total";
/// Compile-cache entries evicted to stay within their bound; label `tier`: `memory`, `disk`.
pub const COMPILE_CACHE_EVICTIONS: &str = "fx_compile_cache_evictions_total";
/// Direct reads of the handler registry by gateways; label `reason`: `stamped` (an event
/// stamped with a revision the watch had not brought yet) or `unmatched` (an event that
/// matched nothing, in case the watch lags).
pub const TABLE_READS: &str = "fx_gateway_table_reads_total";
/// Invocations published by gateways; label `pool`.
pub const DISPATCHED: &str = "fx_gateway_invocations_total";
/// Time from a state event (its `at`, the executor's clock) to the state router's write of it
/// into the state store, in seconds; label `state`.
pub const RECORD_LAG: &str = "fx_router_record_lag_seconds";
/// State events applied by the state router; label `state`.
pub const STATE_EVENTS: &str = "fx_router_state_events_total";
/// Messages a consumer sent to the dead-letter topic because handling them failed on their own
/// (a value a backend refuses, say) while the rest of their batch went on; label `topic`.
pub const POISONED: &str = "fx_consumer_deadlettered_total";
/// Documents the operational sink dropped because its buffer was full (read at scrape time).
pub const SINK_DROPPED: &str = "fx_sink_dropped_total";
/// Events the event catalogue did not count because it was full (or their source and type too
/// long); label `reason`: `observer_full`, `catalogue_full` or `key_too_long`.
pub const CATALOGUE_DROPPED: &str = "fx_catalogue_dropped_events_total";

/// Histogram buckets of durations in seconds: 10 µs to 60 s.
pub const DURATION_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Histogram buckets of memory in bytes: 64 KiB to 4 GiB, by powers of four.
pub const MEMORY_BUCKETS: &[f64] = &[
    65536.0,
    262144.0,
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
    268435456.0,
    1073741824.0,
    4294967296.0,
];

/// Registers the descriptions (the `# HELP` lines) with the installed recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(INVOCATIONS, "Invocations finished, by handler and status.");
    describe_histogram!(
        INVOCATION_DURATION,
        Unit::Seconds,
        "Run time of invocations (instantiate and call)."
    );
    describe_histogram!(
        RECORD_LAG,
        Unit::Seconds,
        "Time from a state event to its write into the state store (the executor's clock)."
    );
    describe_histogram!(
        QUEUE_WAIT,
        Unit::Seconds,
        "Time from dispatch to the start of the run."
    );
    describe_histogram!(
        PEAK_MEMORY,
        Unit::Bytes,
        "Linear memory an invocation grew to."
    );
    describe_histogram!(
        FUEL_USED,
        "Fuel an invocation used, when its handler meters fuel."
    );
    describe_counter!(FAILURES, "Failed invocations, by handler and failure kind.");
    describe_counter!(
        SCHEDULE_TICKS,
        "Schedule ticks fired by this gateway's scheduler, by schedule."
    );
    describe_counter!(
        WEBHOOK_DELIVERIES,
        "Webhook deliveries, by hook and outcome (accepted, unauthorized, rate_limited, too_large, malformed, unavailable)."
    );
    describe_counter!(
        CHAT_COMMANDS,
        "Chat commands, by bundle and outcome (accepted, help, unknown, denied, usage, unauthorized, malformed, busy, unavailable)."
    );
    describe_counter!(
        NOTIFICATIONS,
        "Notification attempts, by rule and result (delivered, retrying, failed)."
    );
    describe_counter!(
        NOTIFICATIONS_ENQUEUED,
        "Notifications recorded by the state router, by rule and outcome."
    );
    describe_counter!(
        SERVER_BUSY,
        "Requests the management server refused with 503 at a bound, by bound."
    );
    describe_counter!(
        WAITING_RETRIES_FULL,
        "Retries that waited out their backoff in a slot because max_waiting_retries were waiting."
    );
    describe_counter!(
        COMPILE_CACHE_EVICTIONS,
        "Compile-cache entries evicted to stay within their bound, by tier."
    );
    describe_counter!(
        TABLE_READS,
        "Direct reads of the handler registry by the gateway, by reason."
    );
    describe_counter!(RETRIES, "Attempts scheduled again by a retry policy.");
    describe_counter!(
        DEADLETTERED,
        "Executions dead-lettered after their last attempt."
    );
    describe_counter!(
        COMPILE_CACHE,
        "Compile-cache lookups: memory_hit, disk_hit or compiled."
    );
    describe_counter!(EVENTS, "Events consumed by gateways, by outcome.");
    describe_counter!(
        DISPATCHED,
        "Invocations published by gateways, by executor pool."
    );
    describe_counter!(
        STATE_EVENTS,
        "State events applied by the state router, by state."
    );
    describe_gauge!(
        SINK_DROPPED,
        "Documents the operational sink dropped because its buffer was full."
    );
    describe_counter!(
        CATALOGUE_DROPPED,
        "Events the event catalogue did not count, by reason."
    );
}
