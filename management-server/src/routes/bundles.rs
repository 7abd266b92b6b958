//! `/api/v1/bundles`: chat command bundles through the generic registry API
//! ([`super::entries`]), each shown with the path its Slack app posts to; requests arrive at
//! `POST /chat/slack/{bundle}` ([`crate::chat`]).

use std::sync::Arc;

use fx_core::backends::Backends;
use fx_core::chat::Bundle;
use fx_core::identity::Action;
use fx_core::registry::Registry;
use serde_json::Value;

use super::entries::{check_secret, ApiEntry};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;

#[async_trait::async_trait]
impl ApiEntry for Bundle {
    const READ: Action = Action::BundleRead;
    const WRITE: Action = Action::BundleWrite;

    fn registry(backends: &Backends) -> &Arc<dyn Registry<Self>> {
        &backends.bundles
    }

    fn extra(&self) -> Option<(&'static str, Value)> {
        Some(("path", Value::String(self.source())))
    }

    /// The writer may use the app's secrets, which must exist.
    async fn check(&self, state: &AppState, caller: &Caller) -> Result<(), ApiError> {
        let owner = format!("bundle {}", self.name);
        let secrets = std::iter::once(&self.slack.signing_secret).chain(&self.slack.bot_token);
        for secret in secrets {
            check_secret(state, caller, &owner, secret, "slack").await?;
        }
        Ok(())
    }

    /// Requests see the change at once.
    async fn written(state: &AppState) {
        state.chat.forget().await;
    }
}
