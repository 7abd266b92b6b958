//! Settings of the management server.

use serde::{Deserialize, Serialize};

/// Settings of the management server: the `[server]` table of the settings file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Largest package archive accepted by `POST /api/v1/packages`, in bytes. An upload a
    /// little over it is refused with 400 and the reason; one far over it with 413.
    pub max_package_bytes: u64,
    /// Largest CloudEvent body accepted by `POST /api/v1/events` and `POST /events`, in bytes.
    pub max_event_bytes: u64,
    /// Rows per page on the executions page of the web UI.
    pub page_size: u32,
    /// Requests handled at once (health, readiness and metrics aside); beyond, `503` with
    /// `Retry-After`, counted in `fx_server_busy_total`.
    pub max_concurrent_requests: usize,
    /// Package uploads handled at once (each may hold `max_package_bytes` in memory); beyond,
    /// `503` with `Retry-After`.
    pub max_concurrent_uploads: usize,
    /// Live streams of the web UI open at once; beyond, `503` with `Retry-After`: the page
    /// still loads but shows no live updates until it is reloaded.
    pub max_live_streams: usize,
    /// Whether `ferrisfx server` compiles and links each uploaded package with the executors'
    /// engine settings (`[executor]`) before accepting it, one at a time, refusing one that
    /// cannot run with the reason. `ferrisfx dev` always does, with its own executor.
    pub check_packages: bool,
    /// The web UI's address as people reach it (`https://fx.example.com`), for the links in
    /// notifications; `http://<the listen address>` when unset.
    pub public_url: Option<String>,
    /// Authentication and permissions: the `[server.auth]` table.
    pub auth: crate::auth::AuthSettings,
    /// The keys that seal platform secrets: the `[server.secrets]` table.
    pub secrets: fx_core::secrets::SecretsSettings,
    /// How long executions are kept: the `[server.retention]` table.
    pub retention: crate::retention::RetentionSettings,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            max_package_bytes: fx_core::package::DEFAULT_MAX_PACKAGE_BYTES,
            max_event_bytes: 1024 * 1024,
            page_size: 50,
            max_concurrent_requests: 512,
            max_concurrent_uploads: 4,
            max_live_streams: 256,
            check_packages: true,
            public_url: None,
            auth: crate::auth::AuthSettings::default(),
            secrets: fx_core::secrets::SecretsSettings::default(),
            retention: crate::retention::RetentionSettings::default(),
        }
    }
}

impl ServerSettings {
    /// Checks the settings; the message names the offending field.
    pub fn validate(&self) -> fx_core::Result<()> {
        if self.max_package_bytes == 0 {
            return Err(fx_core::Error::invalid(
                "server.max_package_bytes must be greater than 0",
            ));
        }
        if self.max_event_bytes == 0 {
            return Err(fx_core::Error::invalid(
                "server.max_event_bytes must be greater than 0",
            ));
        }
        if !(1..=720).contains(&self.auth.session_hours) {
            return Err(fx_core::Error::invalid(format!(
                "server.auth.session_hours must be 1 to 720, got {}",
                self.auth.session_hours
            )));
        }
        if !(1..=500).contains(&self.page_size) {
            return Err(fx_core::Error::invalid(format!(
                "server.page_size must be 1 to 500, got {}",
                self.page_size
            )));
        }
        if let Some(url) = &self.public_url {
            let fine = url::Url::parse(url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
            if !fine {
                return Err(fx_core::Error::invalid(format!(
                    "server.public_url {url:?} is not an http or https URL"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_refused_and_missing_ones_defaulted() {
        let settings: ServerSettings =
            serde_json::from_str(r#"{"max_package_bytes": 10}"#).unwrap();
        assert_eq!(settings.max_package_bytes, 10);
        assert_eq!(settings.page_size, ServerSettings::default().page_size);
        assert!(serde_json::from_str::<ServerSettings>(r#"{"max_bytes": 10}"#).is_err());
        assert!(ServerSettings::default().validate().is_ok());
    }
}
