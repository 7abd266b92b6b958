//! `POST /chat/slack/{bundle}`: the Slack adapter. Slash commands (form-encoded) and Events
//! API callbacks (JSON: the URL check and `app_mention`) of the bundle's Slack app, verified
//! with its signing secret (see [`fx_core::chat`]).
//!
//! Slack wants an answer within 3 seconds, so the server answers at once: help, a refusal or a
//! usage line straight away (only the user sees it), otherwise "running" and the command's
//! event goes to `fx.events`. A task then waits for the handler's execution to finish and
//! posts the function's output as the reply: to the slash command's `response_url`, or for a
//! mention with `chat.postMessage` in the message's thread. The task lives in this process: a
//! restart while a command runs loses its reply (the execution itself is not lost).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use cloudevents::event::AttributesWriter;
use fx_core::chat::{reply_of, strip_mention, Bundle, ChatUser, CommandData, NotRun, COMMAND_TYPE};
use fx_core::execution::ExecutionId;
use fx_core::hook::Delivery;
use fx_core::telemetry::CHAT_COMMANDS;
use fx_core::ErrorKind;
use serde::Deserialize;
use serde_json::json;

use crate::error::{ApiError, ApiPath};
use crate::AppState;
use fx_core::registry::CachedTable;

/// The route's path template.
pub const PATH: &str = "/chat/slack/{bundle}";

/// The largest request Slack sends (a slash command's form, an event callback).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Replies waited for at once; beyond, commands are refused with "busy".
const MAX_PENDING: usize = 1000;

/// How long a reply is waited for: a `response_url` takes replies for 30 minutes.
const REPLY_WAIT: Duration = Duration::from_secs(30 * 60);

/// The bundles as last read, the replies waited for, and the HTTP client that posts them.
pub struct ChatGate {
    table: CachedTable<Bundle>,
    pending: Mutex<HashSet<ExecutionId>>,
    client: reqwest::Client,
}

impl Default for ChatGate {
    fn default() -> Self {
        ChatGate {
            table: CachedTable::default(),
            pending: Mutex::new(HashSet::new()),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
        }
    }
}

impl ChatGate {
    /// Drops the bundles read (after a write).
    pub async fn forget(&self) {
        self.table.forget().await;
    }

    /// Replies being waited for.
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<ExecutionId>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn count(bundle: &str, outcome: &'static str) {
    metrics::counter!(CHAT_COMMANDS, "bundle" => bundle.to_string(), "outcome" => outcome)
        .increment(1);
}

/// A slash command's form, as Slack posts it.
#[derive(Debug, Deserialize)]
struct SlashCommand {
    #[serde(default)]
    command: String,
    #[serde(default)]
    text: String,
    user_id: String,
    #[serde(default)]
    user_name: String,
    #[serde(default)]
    channel_id: String,
    #[serde(default)]
    team_id: String,
    response_url: String,
    #[serde(default)]
    trigger_id: String,
}

/// An Events API callback, as Slack posts it.
#[derive(Debug, Deserialize)]
struct Callback {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    challenge: String,
    #[serde(default)]
    event_id: String,
    #[serde(default)]
    team_id: String,
    #[serde(default)]
    event: Option<MessageEvent>,
}

#[derive(Debug, Deserialize)]
struct MessageEvent {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    ts: String,
}

/// Where a reply goes.
#[derive(Debug, Clone)]
enum ReplyTo {
    /// A slash command's `response_url`.
    ResponseUrl(String),
    /// A channel, in the thread of message `ts`, with the bot token in secret `token`.
    Thread {
        api_url: String,
        token: Option<String>,
        channel: String,
        ts: String,
    },
}

/// `POST /chat/slack/{bundle}`.
pub async fn slack(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let received = Utc::now();
    let arrived = std::time::Instant::now();
    let bundle = match state
        .chat
        .table
        .entry(state.backends.bundles.as_ref(), &name, |_| {})
        .await
    {
        Ok(Some(bundle)) => bundle,
        Ok(None) => {
            count("-", "not_found");
            return ApiError::not_found(format!("no command bundle {name:?}")).into_response();
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        count(&bundle.name, "too_large");
        return ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: ErrorKind::Invalid,
            message: format!("a Slack request is at most {MAX_BODY_BYTES} bytes"),
            field: None,
        }
        .into_response();
    };
    let pairs = crate::hooks::header_pairs(&headers);
    let delivery = Delivery {
        headers: &pairs,
        body: &body,
        received,
    };
    let secret = match state.vault.value(&bundle.slack.signing_secret).await {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            tracing::error!(bundle = %bundle.name, secret = %bundle.slack.signing_secret, "a command bundle's signing secret does not exist: create it (ferrisfx secret set); commands are refused until then");
            return unavailable(&bundle);
        }
        Err(e) => {
            tracing::error!(bundle = %bundle.name, error = %e.chain(), "reading a command bundle's signing secret failed");
            return unavailable(&bundle);
        }
    };
    let checked = fx_core::hook::verify_slack(
        &delivery,
        secret.expose().as_bytes(),
        bundle.slack.tolerance_seconds,
        received,
    );
    drop(secret);
    if let Err(refusal) = checked {
        count(&bundle.name, "unauthorized");
        tracing::info!(bundle = %bundle.name, reason = %refusal, "slack request refused: bad signature");
        return ApiError {
            status: StatusCode::UNAUTHORIZED,
            kind: ErrorKind::Unauthenticated,
            message: format!("bundle {}: {refusal}", bundle.name),
            field: None,
        }
        .into_response();
    }
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if json {
        // Every callback is answered 200 at once (what was said goes to the thread), so a
        // retry is one Slack sent before seeing that answer: the first is being handled.
        if headers.contains_key("x-slack-retry-num") {
            count(&bundle.name, "retry_ignored");
            return StatusCode::OK.into_response();
        }
        callback(&state, bundle, &body, arrived).await
    } else {
        slash_command(&state, bundle, &body, arrived).await
    }
}

async fn slash_command(
    state: &AppState,
    bundle: Bundle,
    body: &[u8],
    arrived: std::time::Instant,
) -> Response {
    let form: SlashCommand = match serde_urlencoded::from_bytes(body) {
        Ok(form) => form,
        Err(e) => {
            count(&bundle.name, "malformed");
            return ApiError::invalid(format!("not a Slack slash command: {e}")).into_response();
        }
    };
    if !form
        .response_url
        .starts_with(&bundle.slack.response_url_prefix)
    {
        count(&bundle.name, "malformed");
        tracing::warn!(bundle = %bundle.name, "a slash command's response_url is not under the bundle's response_url_prefix; not run");
        return ephemeral(format!(
            "bundle {} answers only on response URLs under {}",
            bundle.name, bundle.slack.response_url_prefix
        ));
    }
    let user = ChatUser {
        id: form.user_id.clone(),
        name: form.user_name.clone(),
    };
    let reply_to = ReplyTo::ResponseUrl(form.response_url.clone());
    let id = if form.trigger_id.is_empty() {
        format!("{}@{}", form.user_id, Utc::now().timestamp_micros())
    } else {
        form.trigger_id.clone()
    };
    match run(
        state,
        &bundle,
        Run {
            slash: &form.command,
            text: &form.text,
            user,
            channel: form.channel_id,
            team: form.team_id,
            via: "slash_command",
            id,
            reply_to,
        },
        arrived,
    )
    .await
    {
        Ok(text) | Err(text) => ephemeral(text),
    }
}

async fn callback(
    state: &AppState,
    bundle: Bundle,
    body: &[u8],
    arrived: std::time::Instant,
) -> Response {
    let callback: Callback = match serde_json::from_slice(body) {
        Ok(callback) => callback,
        Err(e) => {
            count(&bundle.name, "malformed");
            return ApiError::invalid(format!("not a Slack Events API request: {e}"))
                .into_response();
        }
    };
    match callback.ty.as_str() {
        "url_verification" => {
            return Json(json!({ "challenge": callback.challenge })).into_response()
        }
        "event_callback" => {}
        other => {
            tracing::debug!(bundle = %bundle.name, kind = other, "slack callback ignored");
            return StatusCode::OK.into_response();
        }
    }
    let Some(event) = callback.event.filter(|e| e.ty == "app_mention") else {
        return StatusCode::OK.into_response();
    };
    let reply_to = ReplyTo::Thread {
        api_url: bundle.slack.api_url.clone(),
        token: bundle.slack.bot_token.clone(),
        channel: event.channel.clone(),
        ts: event.ts.clone(),
    };
    let id = if callback.event_id.is_empty() {
        format!("{}@{}", event.channel, event.ts)
    } else {
        callback.event_id
    };
    let outcome = run(
        state,
        &bundle,
        Run {
            slash: "",
            text: strip_mention(&event.text),
            user: ChatUser {
                id: event.user,
                name: String::new(),
            },
            channel: event.channel,
            team: callback.team_id,
            via: "app_mention",
            id,
            reply_to: reply_to.clone(),
        },
        arrived,
    )
    .await;
    // A mention has no answer of its own: what was said goes in the thread.
    if let Err(text) = outcome {
        let state = state.clone();
        tokio::spawn(async move {
            post_reply(&state, &reply_to, json!({ "text": text })).await;
        });
    }
    StatusCode::OK.into_response()
}

struct Run<'a> {
    slash: &'a str,
    text: &'a str,
    user: ChatUser,
    channel: String,
    team: String,
    via: &'static str,
    id: String,
    reply_to: ReplyTo,
}

/// Resolves, publishes and waits for the reply in the background: `Ok` with the "running"
/// line, `Err` with what to tell the user instead.
async fn run(
    state: &AppState,
    bundle: &Bundle,
    run: Run<'_>,
    arrived: std::time::Instant,
) -> Result<String, String> {
    if run.text.len() > fx_core::chat::MAX_TEXT {
        count(&bundle.name, "malformed");
        return Err(format!(
            "a command is at most {} characters",
            fx_core::chat::MAX_TEXT
        ));
    }
    let (command, args, text) = match bundle.resolve(run.slash, run.text, &run.user) {
        Ok(found) => found,
        Err(not_run) => {
            let outcome = match &not_run {
                NotRun::Help(_) => "help",
                NotRun::Unknown(_) => "unknown",
                NotRun::Denied(_) => "denied",
                NotRun::Usage(_) => "usage",
            };
            count(&bundle.name, outcome);
            if let NotRun::Denied(_) = not_run {
                tracing::info!(bundle = %bundle.name, user = %run.user.id, "chat command refused: not on the allow-list");
                audit_denied(state, bundle, &run.user.id).await;
            }
            return Err(not_run.text().to_string());
        }
    };
    let source = bundle.source();
    let execution = ExecutionId::derive(&source, &run.id, &command.handler);
    {
        let mut pending = state.chat.lock();
        if pending.contains(&execution) {
            // Slack retried a request already taken: one run, one reply.
            return Ok(format!("running `{}`…", command.name));
        }
        if pending.len() >= MAX_PENDING {
            count(&bundle.name, "busy");
            return Err("busy: too many commands running; try again in a minute".into());
        }
        pending.insert(execution.clone());
    }
    let data = CommandData {
        bundle: bundle.name.clone(),
        command: command.name.clone(),
        args,
        text,
        user: run.user,
        channel: run.channel,
        team: run.team,
        via: run.via.to_string(),
    };
    let published = async {
        let data = serde_json::to_value(&data).map_err(|e| {
            fx_core::Error::internal("encoding a chat command's data").with_source(e)
        })?;
        let mut event = fx_core::event::new_json_event(run.id.clone(), source, COMMAND_TYPE, data)?;
        event.set_subject(Some(bundle.subject(&command.name)));
        event.set_time(Some(Utc::now()));
        crate::routes::events::publish(state, &event, arrived).await
    }
    .await;
    if let Err(e) = published {
        state.chat.lock().remove(&execution);
        count(&bundle.name, "unavailable");
        tracing::warn!(bundle = %bundle.name, error = %e.chain(), "publishing a chat command failed");
        return Err(format!(
            "the platform cannot take the command now ({})",
            e.kind()
        ));
    }
    count(&bundle.name, "accepted");
    tracing::info!(bundle = %bundle.name, command = %command.name, execution_id = %execution, "chat command accepted");
    let task_state = state.clone();
    let reply_to = run.reply_to;
    tokio::spawn(async move {
        let message = wait_for_reply(&task_state, &execution).await;
        post_reply(&task_state, &reply_to, message).await;
        task_state.chat.lock().remove(&execution);
    });
    Ok(format!("running `{}`…", command.name))
}

/// Waits for the execution to finish; its reply, or a line saying it did not in time.
async fn wait_for_reply(state: &AppState, execution: &ExecutionId) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + REPLY_WAIT;
    let mut pause = Duration::from_millis(100);
    loop {
        match state.backends.state.get_execution(execution).await {
            Ok(Some(found)) if found.status.is_terminal() => {
                let failure = found.error.as_ref().map(|f| f.message.as_str());
                let failure = (found.status == fx_core::execution::ExecutionStatus::Failed)
                    .then(|| failure.unwrap_or("the function failed"));
                return reply_of(&found.output, failure);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(execution_id = %execution, error = %e.chain(), "reading a chat command's execution failed; retrying")
            }
        }
        if tokio::time::Instant::now() + pause > deadline {
            return json!({"text": format!(":hourglass: still running after {} minutes; see execution {execution} in the web UI", REPLY_WAIT.as_secs() / 60)});
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// Posts `message` where the reply goes, retrying three times with backoff.
async fn post_reply(state: &AppState, to: &ReplyTo, message: serde_json::Value) {
    let client = &state.chat.client;
    for attempt in 1..=3u32 {
        let request = match to {
            ReplyTo::ResponseUrl(url) => {
                let mut body = message.clone();
                if body.get("response_type").is_none() {
                    body["response_type"] = json!("ephemeral");
                }
                client.post(url).json(&body)
            }
            ReplyTo::Thread {
                api_url,
                token,
                channel,
                ts,
            } => {
                let Some(token) = token else {
                    tracing::warn!(
                        channel,
                        "a mention cannot be answered: the bundle names no bot_token secret"
                    );
                    return;
                };
                let token = match state.vault.value(token).await {
                    Ok(Some(token)) => token,
                    _ => {
                        tracing::warn!(channel, "a mention cannot be answered: the bundle's bot_token secret cannot be read");
                        return;
                    }
                };
                let mut body = message.clone();
                body["channel"] = json!(channel);
                body["thread_ts"] = json!(ts);
                client
                    .post(format!(
                        "{}/chat.postMessage",
                        api_url.trim_end_matches('/')
                    ))
                    .bearer_auth(token.expose())
                    .json(&body)
            }
        };
        match request.send().await {
            Ok(response) if response.status().is_success() => return,
            Ok(response) if response.status().is_client_error() => {
                tracing::warn!(status = %response.status(), "slack refused a reply; not retried");
                return;
            }
            Ok(response) => {
                tracing::warn!(status = %response.status(), attempt, "posting a reply to slack failed")
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, "posting a reply to slack failed")
            }
        }
        tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt))).await;
    }
}

async fn audit_denied(state: &AppState, bundle: &Bundle, user: &str) {
    let entry = fx_core::identity::AuditRecord {
        id: 0,
        at: Utc::now(),
        principal: format!("slack:{user}"),
        action: "chat:command".into(),
        resource: format!("bundle {}", bundle.name),
        source: "slack".into(),
        outcome: fx_core::identity::AuditOutcome::Denied,
        detail: "not on the allow-list".into(),
    };
    if let Err(e) = state.backends.identity.append_audit(&entry).await {
        tracing::warn!(error = %e.chain(), "writing the audit log failed");
    }
}

fn ephemeral(text: String) -> Response {
    Json(json!({"response_type": "ephemeral", "text": text})).into_response()
}

fn unavailable(bundle: &Bundle) -> Response {
    ApiError::new(
        ErrorKind::Unavailable,
        format!(
            "bundle {} cannot check requests now; the server's log says why",
            bundle.name
        ),
    )
    .into_response()
}
