//! `/api/v1/notifications`: notification rules through the generic registry API
//! ([`super::entries`]); and the notifications sent about an execution, with their attempts
//! (`GET /api/v1/executions/{id}/notifications`). The sender is [`crate::notifier`].

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use fx_core::backends::Backends;
use fx_core::identity::{Action, Resource};
use fx_core::notify::Rule;
use fx_core::registry::Registry;
use serde_json::{json, Value};

use super::entries::{check_secret, ApiEntry};
use crate::auth::Caller;
use crate::error::{ApiError, ApiPath};
use crate::AppState;

#[async_trait::async_trait]
impl ApiEntry for Rule {
    const READ: Action = Action::NotificationRead;
    const WRITE: Action = Action::NotificationWrite;

    fn registry(backends: &Backends) -> &Arc<dyn Registry<Self>> {
        &backends.notification_rules
    }

    /// The writer may read the executions the rule reports (every handler's for `*`: a rule
    /// sends their summaries out) and use its secret, which must exist.
    async fn check(&self, state: &AppState, caller: &Caller) -> Result<(), ApiError> {
        for handler in &self.handlers {
            let resource = if handler == "*" {
                Resource::All
            } else {
                Resource::Named(handler)
            };
            caller
                .check(Action::ExecutionRead, resource)
                .map_err(|e| e.on_field("handlers"))?;
        }
        if let Some(secret) = self.target.secret() {
            check_secret(
                state,
                caller,
                &format!("rule {}", self.name),
                secret,
                "target",
            )
            .await?;
        }
        Ok(())
    }
}

/// `GET /api/v1/executions/{id}/notifications`: what was sent about execution `id`, with
/// every attempt.
pub async fn of_execution(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let id = fx_core::execution::ExecutionId::parse(&id)?;
    let Some(execution) = state.backends.state.get_execution(&id).await? else {
        return Err(ApiError::not_found(format!(
            "execution {id} does not exist"
        )));
    };
    caller.check(Action::ExecutionRead, Resource::Named(&execution.handler))?;
    let notifications = state.backends.notifications.notifications_of(&id).await?;
    Ok(Json(json!({ "notifications": notifications })))
}
