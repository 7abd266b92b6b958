//! `/api/v1/hooks`: webhooks through the generic registry API ([`super::entries`]), each
//! shown with the path senders post to. Deliveries arrive at `POST /hooks/{name}`
//! ([`crate::hooks`]).

use std::sync::Arc;

use fx_core::backends::Backends;
use fx_core::hook::Hook;
use fx_core::identity::Action;
use fx_core::registry::Registry;
use serde_json::Value;

use super::entries::{check_secret, ApiEntry};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;

#[async_trait::async_trait]
impl ApiEntry for Hook {
    const READ: Action = Action::HookRead;
    const WRITE: Action = Action::HookWrite;

    fn registry(backends: &Backends) -> &Arc<dyn Registry<Self>> {
        &backends.hooks
    }

    fn extra(&self) -> Option<(&'static str, Value)> {
        Some(("path", Value::String(self.source())))
    }

    /// The writer may use the signing secret, which must exist.
    async fn check(&self, state: &AppState, caller: &Caller) -> Result<(), ApiError> {
        if let Some(secret) = self.verify.secret() {
            check_secret(
                state,
                caller,
                &format!("hook {}", self.name),
                secret,
                "verify",
            )
            .await?;
        }
        Ok(())
    }

    /// Deliveries see the change at once.
    async fn written(state: &AppState) {
        state.hooks.forget().await;
    }
}
