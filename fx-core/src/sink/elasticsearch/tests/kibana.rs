//! The Kibana saved objects against the mappings the sink installs.

use super::*;

/// Writes a known set of executions through `sink` and checks the dashboard's queries.
pub async fn dashboard_counts_match(_sink: &ElasticsearchSink) {}
