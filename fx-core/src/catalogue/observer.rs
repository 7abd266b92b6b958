//! A gateway's tally of the events it dispatches, between two flushes to the store.
//!
//! Every event is counted (a hash map lookup under a short lock); only the first
//! [`SAMPLED_PER_FLUSH`] events of each key per flush have their data's schema inferred (and the
//! first of them becomes the sample), so a busy type costs a counter increment per event. At most `max_keys`
//! keys are held between flushes: events of further keys are counted as dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use cloudevents::{AttributesReader, Data, Event};
use serde_json::Value;

use super::schema::Schema;
use super::{hour_of, Observation, MAX_KEY_BYTES, MAX_SAMPLE_BYTES};
use crate::event::{data_json, is_json_content_type};

/// Events per key and flush whose data is looked at (schema and sample).
pub const SAMPLED_PER_FLUSH: u32 = 32;

/// What one key collected since the last flush.
struct Pending {
    observation: Observation,
    sampled: u32,
}

/// The tally of one gateway.
pub struct Observer {
    max_keys: usize,
    pending: Mutex<HashMap<(String, String), Pending>>,
    dropped: AtomicU64,
}

impl Observer {
    /// A tally holding at most `max_keys` keys between flushes.
    pub fn new(max_keys: usize) -> Self {
        Observer {
            max_keys,
            pending: Mutex::new(HashMap::new()),
            dropped: AtomicU64::new(0),
        }
    }

    /// Counts `event`, arrived now.
    pub fn observe(&self, event: &Event) {
        self.observe_at(event, Utc::now());
    }

    /// Counts `event`, arrived at `at`.
    pub fn observe_at(&self, event: &Event, at: DateTime<Utc>) {
        let (source, ty) = (event.source().as_str(), event.ty());
        if source.len() + ty.len() > MAX_KEY_BYTES {
            self.drop_events(1, "key_too_long");
            return;
        }
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        let key = (source.to_string(), ty.to_string());
        if !pending.contains_key(&key) {
            if pending.len() >= self.max_keys {
                drop(pending);
                self.drop_events(1, "observer_full");
                return;
            }
            let observation = Observation {
                source: key.0.clone(),
                ty: key.1.clone(),
                first_seen: at,
                last_seen: at,
                count: 0,
                hours: Default::default(),
                sample: None,
                sample_truncated: false,
                schema: Schema::default(),
            };
            pending.insert(
                key.clone(),
                Pending {
                    observation,
                    sampled: 0,
                },
            );
        }
        let Some(entry) = pending.get_mut(&key) else {
            return;
        };
        let observation = &mut entry.observation;
        observation.first_seen = observation.first_seen.min(at);
        observation.last_seen = observation.last_seen.max(at);
        observation.count += 1;
        *observation.hours.entry(hour_of(at)).or_default() += 1;
        if entry.sampled < SAMPLED_PER_FLUSH {
            entry.sampled += 1;
            if let Some(schema) = data_schema(event, at) {
                observation.schema.merge(&schema);
            }
            // The first of each flush is the sample: recent enough, encoded once per flush.
            if entry.sampled == 1 {
                let (sample, truncated) = sample(event);
                observation.sample = sample;
                observation.sample_truncated = truncated;
            }
        }
    }

    /// Takes what was collected since the last call.
    pub fn take(&self) -> Vec<Observation> {
        let Ok(mut pending) = self.pending.lock() else {
            return Vec::new();
        };
        std::mem::take(&mut *pending)
            .into_values()
            .map(|p| p.observation)
            .collect()
    }

    /// Puts back `observations` a flush could not store, merged with what arrived meanwhile
    /// (within the same bound).
    pub fn restore(&self, observations: Vec<Observation>) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        let mut dropped = 0;
        for observation in observations {
            let key = (observation.source.clone(), observation.ty.clone());
            let full = pending.len() >= self.max_keys;
            match pending.get_mut(&key) {
                Some(entry) => {
                    let ours = &mut entry.observation;
                    ours.first_seen = ours.first_seen.min(observation.first_seen);
                    ours.last_seen = ours.last_seen.max(observation.last_seen);
                    ours.count += observation.count;
                    for (hour, count) in observation.hours {
                        *ours.hours.entry(hour).or_default() += count;
                    }
                    ours.schema.merge(&observation.schema);
                    if ours.sample.is_none() {
                        ours.sample = observation.sample;
                        ours.sample_truncated = observation.sample_truncated;
                    }
                }
                None if full => dropped += observation.count,
                None => {
                    pending.insert(
                        key,
                        Pending {
                            observation,
                            sampled: SAMPLED_PER_FLUSH,
                        },
                    );
                }
            }
        }
        drop(pending);
        if dropped > 0 {
            self.drop_events(dropped, "observer_full");
        }
    }

    /// Events not catalogued so far (their key was too long, or the tally full).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn drop_events(&self, events: u64, reason: &'static str) {
        self.dropped.fetch_add(events, Ordering::Relaxed);
        metrics::counter!(crate::telemetry::CATALOGUE_DROPPED, "reason" => reason)
            .increment(events);
    }
}

/// The schema of `event`'s data, if it has data.
fn data_schema(event: &Event, at: DateTime<Utc>) -> Option<Schema> {
    let json = match event.data()? {
        Data::Json(value) => return Some(Schema::of(value, at)),
        Data::String(text) => {
            let declared = event.datacontenttype().is_some_and(is_json_content_type);
            if !declared {
                return Some(Schema::of(&Value::String(String::new()), at));
            }
            serde_json::from_str::<Value>(text).ok()
        }
        Data::Binary(_) => data_json(event),
    };
    Some(match json {
        Some(value) => Schema::of(&value, at),
        None => Schema::binary(at),
    })
}

/// `event` as structured-mode JSON, without its data when larger than [`MAX_SAMPLE_BYTES`]
/// (then `true`); `None` when even that is too large.
pub fn sample(event: &Event) -> (Option<Value>, bool) {
    let Ok(mut value) = serde_json::to_value(event) else {
        return (None, false);
    };
    if encoded_len(&value) <= MAX_SAMPLE_BYTES {
        return (Some(value), false);
    }
    if let Value::Object(map) = &mut value {
        map.remove("data");
        map.remove("data_base64");
    }
    if encoded_len(&value) <= MAX_SAMPLE_BYTES {
        (Some(value), true)
    } else {
        (None, true)
    }
}

fn encoded_len(value: &Value) -> usize {
    serde_json::to_vec(value)
        .map(|v| v.len())
        .unwrap_or(usize::MAX)
}
