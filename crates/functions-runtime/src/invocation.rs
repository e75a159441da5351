//! The invocation envelope (`{"Data": {...}, "Metadata": {...}}`) and the typed trigger views
//! our functions use. Decoding is tolerant of every host quirk (see `codec`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::codec;

/// Largest trigger value we decode (queue messages and HTTP bodies are far smaller).
pub const MAX_TRIGGER_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Invocation {
    #[serde(rename = "Data", default)]
    pub data: Map<String, Value>,
    #[serde(rename = "Metadata", default)]
    pub metadata: Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("invocation has no trigger value {0:?} in Data")]
    Missing(&'static str),
    #[error("trigger {binding:?}: {reason}")]
    Invalid {
        binding: &'static str,
        reason: String,
    },
}

impl Invocation {
    /// `Metadata.sys.UtcNow`, else the local clock.
    pub fn utc_now(&self) -> OffsetDateTime {
        self.metadata
            .get("sys")
            .and_then(|s| s.get("UtcNow"))
            .and_then(codec::as_timestamp)
            .unwrap_or_else(OffsetDateTime::now_utc)
    }

    fn trigger(&self, binding: &'static str) -> Result<&Value, TriggerError> {
        self.data.get(binding).ok_or(TriggerError::Missing(binding))
    }

    pub fn timer(&self, binding: &'static str) -> Result<TimerInfo, TriggerError> {
        TimerInfo::decode(self.trigger(binding)?)
            .map_err(|reason| TriggerError::Invalid { binding, reason })
    }

    pub fn service_bus(&self, binding: &'static str) -> Result<ServiceBusDelivery, TriggerError> {
        let body = codec::json_body(self.trigger(binding)?, MAX_TRIGGER_BYTES).map_err(|e| {
            TriggerError::Invalid {
                binding,
                reason: e.to_string(),
            }
        })?;
        let m = &self.metadata;
        Ok(ServiceBusDelivery {
            body,
            message_id: m.get("MessageId").and_then(codec::as_text),
            delivery_count: m
                .get("DeliveryCount")
                .and_then(codec::as_u64)
                .unwrap_or(1)
                .min(u32::MAX as u64) as u32,
            enqueued_time: m
                .get("EnqueuedTimeUtc")
                .or_else(|| m.get("EnqueuedTime"))
                .and_then(codec::as_timestamp),
        })
    }

    pub fn http(&self, binding: &'static str) -> Result<HttpRequestData, TriggerError> {
        HttpRequestData::decode(self.trigger(binding)?)
            .map_err(|reason| TriggerError::Invalid { binding, reason })
    }
}

/// `TimerInfo` as serialized by the host. `ScheduleStatus` is `null` when monitoring is off.
#[derive(Debug, Clone, PartialEq)]
pub struct TimerInfo {
    pub is_past_due: bool,
    pub schedule_status: Option<ScheduleStatus>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleStatus {
    pub last: Option<OffsetDateTime>,
    pub next: Option<OffsetDateTime>,
    pub last_updated: Option<OffsetDateTime>,
}

impl TimerInfo {
    fn decode(v: &Value) -> Result<Self, String> {
        let v = match v {
            Value::Object(_) => v.clone(),
            Value::String(_) => {
                codec::json_body(v, MAX_TRIGGER_BYTES).map_err(|e| e.to_string())?
            }
            _ => return Err("expected a TimerInfo object".into()),
        };
        let is_past_due = match v.get("IsPastDue") {
            Some(Value::Bool(b)) => *b,
            Some(other) => codec::as_text(other).is_some_and(|s| s.eq_ignore_ascii_case("true")),
            None => false,
        };
        let schedule_status = match v.get("ScheduleStatus") {
            Some(Value::Object(s)) => Some(ScheduleStatus {
                last: s.get("Last").and_then(codec::as_timestamp),
                next: s.get("Next").and_then(codec::as_timestamp),
                last_updated: s.get("LastUpdated").and_then(codec::as_timestamp),
            }),
            _ => None,
        };
        Ok(Self {
            is_past_due,
            schedule_status,
        })
    }
}

/// One Service Bus message as a custom handler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceBusDelivery {
    pub body: Value,
    pub message_id: Option<String>,
    /// 1 on first delivery.
    pub delivery_count: u32,
    pub enqueued_time: Option<OffsetDateTime>,
}

/// An HTTP trigger request in payload mode (`enableForwardingHttpRequest: false`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HttpRequestData {
    pub url: String,
    pub method: String,
    pub query: BTreeMap<String, String>,
    /// Header names lower-cased; first value kept.
    pub headers: BTreeMap<String, String>,
    pub params: BTreeMap<String, String>,
    pub body: Option<String>,
}

impl HttpRequestData {
    fn decode(v: &Value) -> Result<Self, String> {
        let v = match v {
            Value::Object(_) => v.clone(),
            Value::String(_) => {
                codec::json_body(v, MAX_TRIGGER_BYTES).map_err(|e| e.to_string())?
            }
            _ => return Err("expected an HTTP request object".into()),
        };
        let text_map = |key: &str| -> BTreeMap<String, String> {
            v.get(key)
                .and_then(Value::as_object)
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, val)| codec::as_text(val).map(|s| (k.clone(), s)))
                        .collect()
                })
                .unwrap_or_default()
        };
        let headers = v
            .get("Headers")
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .filter_map(|(k, val)| {
                        // `Headers` is string → string[] in payload mode; Metadata flattens to strings.
                        let first = match val {
                            Value::Array(a) => a.first().and_then(codec::as_text),
                            other => codec::as_text(other),
                        };
                        first.map(|s| (k.to_ascii_lowercase(), s))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let body = match v.get("Body") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(b) => codec::text_body(b),
        };
        if body.as_ref().is_some_and(|b| b.len() > MAX_TRIGGER_BYTES) {
            return Err(format!(
                "request body is larger than {MAX_TRIGGER_BYTES} bytes"
            ));
        }
        Ok(Self {
            url: v.get("Url").and_then(codec::as_text).unwrap_or_default(),
            method: v
                .get("Method")
                .and_then(codec::as_text)
                .unwrap_or_default()
                .to_ascii_uppercase(),
            query: text_map("Query"),
            headers,
            params: text_map("Params"),
            body,
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inv(v: Value) -> Invocation {
        serde_json::from_value(v).unwrap()
    }

    /// A host envelope from `tests/fixtures/host/` (see its README).
    fn fixture(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn timer_payload_with_status_and_with_null_status() {
        let i = inv(fixture(include_str!(
            "../../../tests/fixtures/host/timer-with-schedule-status.json"
        )));
        let t = i.timer("timer").unwrap();
        assert!(!t.is_past_due);
        let s = t.schedule_status.unwrap();
        assert_eq!(s.next.unwrap().minute(), 5);
        assert_eq!(i.utc_now().year(), 2024);

        let i = inv(fixture(include_str!(
            "../../../tests/fixtures/host/timer-schedule-status-null-empty-metadata.json"
        )));
        let t = i.timer("timer").unwrap();
        assert!(t.is_past_due);
        assert!(t.schedule_status.is_none());
        assert!(matches!(
            i.timer("other"),
            Err(TriggerError::Missing("other"))
        ));
    }

    #[test]
    fn service_bus_payload_single_and_double_encoded() {
        let body = json!({"runId": "abc", "seq": 1});
        let single = fixture(include_str!(
            "../../../tests/fixtures/host/servicebus-single-encoded.json"
        ));
        let double = fixture(include_str!(
            "../../../tests/fixtures/host/servicebus-double-encoded.json"
        ));
        assert!(double["Data"]["message"].as_str().unwrap().starts_with('"'));
        // Tolerated too: the body already a JSON object.
        let mut object = single.clone();
        object["Data"]["message"] = body.clone();
        for envelope in [single, double, object] {
            let i = inv(envelope);
            let d = i.service_bus("message").unwrap();
            assert_eq!(d.body, body);
            assert_eq!(d.message_id.as_deref(), Some("run-abc-poll-1"));
            assert_eq!(d.delivery_count, 2);
            assert_eq!(d.enqueued_time.unwrap().hour(), 20);
        }
        let bad = inv(json!({ "Data": { "message": "not json" }, "Metadata": {} }));
        assert!(matches!(
            bad.service_bus("message"),
            Err(TriggerError::Invalid { .. })
        ));
    }

    #[test]
    fn http_payload_mode_request() {
        let i = inv(fixture(include_str!(
            "../../../tests/fixtures/host/http-post-with-body.json"
        )));
        let r = i.http("req").unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.params["runId"], "7");
        assert_eq!(r.query["x"], "1");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("Idempotency-Key"), Some("k1"));
        assert_eq!(r.body.as_deref(), Some("{\"kind\":\"billedUsage\"}"));
        let empty =
            inv(json!({ "Data": { "req": { "Method": "GET", "Url": "http://h/api/exports" } } }));
        assert_eq!(empty.http("req").unwrap().body, None);
    }
}
