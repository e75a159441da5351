//! Parsing an operation (`GET .../operations/{id}`). Graph answers 200 in every state; the
//! `@odata.type` says which state, `status` refines it. The docs disagree on the success
//! status (`succeeded` in examples and samples, `completed` on the resource page): both count,
//! compared case-insensitively, and unknown values keep the operation polling.

use std::time::Duration;

use serde_json::Value;
use url::Url;

use super::client::BillingError;
use super::manifest::parse_manifest;
use super::model::{ManifestLocation, OperationError, OperationPoll, OperationState};
use crate::runtime::codec::parse_timestamp;

const TYPE_PREFIX: &str = "#microsoft.graph.partners.billing.";

fn invalid(msg: impl Into<String>) -> BillingError {
    BillingError::InvalidResponse(format!("operation: {}", msg.into()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Running,
    Success,
    Failed,
    /// The base type, or none: decide by `status`.
    Unknown,
}

fn kind_of(odata_type: Option<&str>) -> Kind {
    let Some(t) = odata_type else {
        return Kind::Unknown;
    };
    let short = t.strip_prefix(TYPE_PREFIX).unwrap_or(t);
    match short.to_ascii_lowercase().as_str() {
        "runningoperation" => Kind::Running,
        "exportsuccessoperation" => Kind::Success,
        "failedoperation" => Kind::Failed,
        _ => Kind::Unknown,
    }
}

fn error_of(v: &Value) -> OperationError {
    let e = v.get("error");
    let text = |f: &str| -> String {
        match e.and_then(|e| e.get(f)) {
            Some(Value::String(s)) => s.chars().take(1000).collect(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        }
    };
    OperationError {
        code: text("code"),
        message: text("message"),
    }
}

fn manifest_location(
    v: &Value,
    loopback_ok: bool,
) -> Result<Option<ManifestLocation>, BillingError> {
    if let Some(inline) = v.get("resourceLocation").filter(|r| r.is_object()) {
        return Ok(Some(ManifestLocation::Inline(Box::new(parse_manifest(
            inline,
            loopback_ok,
        )?))));
    }
    let link = v
        .get("resourceLocation@odata.navigationLink")
        .or_else(|| v.get("resourceLocation").filter(|r| r.is_string()));
    match link.and_then(Value::as_str) {
        Some(s) => Url::parse(s)
            .map(|u| Some(ManifestLocation::Link(u)))
            .map_err(|e| invalid(format!("manifest link is not an absolute URL: {e}"))),
        None => Ok(None),
    }
}

/// Turns an operation document into a state. `retry_after` comes from the response header.
pub fn parse_operation(
    v: &Value,
    retry_after: Option<Duration>,
    loopback_ok: bool,
) -> Result<OperationPoll, BillingError> {
    if !v.is_object() {
        return Err(invalid("not a JSON object"));
    }
    let status = v
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let lower = status.to_ascii_lowercase();
    let kind = match kind_of(v.get("@odata.type").and_then(Value::as_str)) {
        Kind::Unknown => match lower.as_str() {
            "succeeded" | "completed" => Kind::Success,
            "failed" => Kind::Failed,
            _ => Kind::Running,
        },
        k => k,
    };
    let state = match kind {
        Kind::Success => match manifest_location(v, loopback_ok)? {
            Some(manifest) => OperationState::Succeeded { manifest },
            None => {
                return Err(invalid(
                    "success without resourceLocation or its navigation link",
                ))
            }
        },
        Kind::Failed => OperationState::Failed { error: error_of(v) },
        Kind::Running | Kind::Unknown => {
            // A running type whose status already says "failed" is still a failure.
            if lower == "failed" {
                OperationState::Failed { error: error_of(v) }
            } else {
                OperationState::Running { status }
            }
        }
    };
    Ok(OperationPoll {
        id: v
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .chars()
            .take(200)
            .collect(),
        state,
        retry_after,
        created_date_time: v
            .get("createdDateTime")
            .and_then(Value::as_str)
            .and_then(parse_timestamp),
        last_action_date_time: v
            .get("lastActionDateTime")
            .and_then(Value::as_str)
            .and_then(parse_timestamp),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> OperationPoll {
        parse_operation(&v, Some(Duration::from_secs(10)), false).unwrap()
    }

    #[test]
    fn documented_running_example() {
        let op = parse(
            json!({ "@odata.type": "#microsoft.graph.partners.billing.runningOperation",
          "id": "6fe687d7-1e0f-4bd6-9091-4672691f64bc", "status": "running",
          "createdDateTime": "2023-03-09T08:12:53",
          "lastActionDateTime": "2023-03-09T08:37:48.5046691Z" }),
        );
        assert_eq!(
            op.state,
            OperationState::Running {
                status: "running".into()
            }
        );
        assert_eq!(op.retry_after, Some(Duration::from_secs(10)));
        assert_eq!(
            op.created_date_time.unwrap().minute(),
            12,
            "offset-less time taken as UTC"
        );
        assert_eq!(op.last_action_date_time.unwrap().nanosecond(), 504_669_100);
    }

    #[test]
    fn documented_success_example_with_navigation_link() {
        let op = parse(
            json!({ "@odata.type": "#microsoft.graph.partners.billing.exportSuccessOperation",
          "id": "6fe687d7-1e0f-4bd6-9091-4672691f64bc", "status": "succeeded",
          "createdDateTime": "2023-03-09T08:12:53",
          "lastActionDateTime": "2023-03-09T08:37:48.5046691Z",
          "resourceLocation@odata.navigationLink": "https://graph.microsoft.com/v1.0/reports/partners/billing/manifests/8fe347d7-1e0f-4bd6-9091-4672691f32db" }),
        );
        match op.state {
            OperationState::Succeeded {
                manifest: ManifestLocation::Link(u),
            } => {
                assert!(u
                    .as_str()
                    .ends_with("/manifests/8fe347d7-1e0f-4bd6-9091-4672691f32db"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn documented_failed_example() {
        let op = parse(
            json!({ "@odata.type": "#microsoft.graph.partners.billing.failedOperation",
          "id": "6fe687d7-1e0f-4bd6-9091-4672691f64bc", "status": "failed",
          "createdDateTime": "2023-03-09T08:12:53",
          "lastActionDateTime": "2023-03-09T08:37:48.5046691Z",
          "error": { "message": "No data available", "code": "5000" } }),
        );
        assert_eq!(
            op.state,
            OperationState::Failed {
                error: OperationError {
                    code: "5000".into(),
                    message: "No data available".into()
                }
            }
        );
    }

    #[test]
    fn inline_manifest_and_status_variants() {
        let manifest = crate::billing::manifest::tests::doc_example();
        for status in ["succeeded", "completed", "COMPLETED", "Succeeded"] {
            let op = parse(
                json!({ "@odata.type": "#microsoft.graph.partners.billing.exportSuccessOperation",
                "id": "x", "status": status, "resourceLocation": manifest }),
            );
            assert!(
                matches!(
                    op.state,
                    OperationState::Succeeded {
                        manifest: ManifestLocation::Inline(_)
                    }
                ),
                "{status}"
            );
        }
        // Base type: decided by status.
        let op = parse(
            json!({ "@odata.type": "#microsoft.graph.partners.billing.operation", "id": "x",
            "status": "succeeded", "resourceLocation": manifest }),
        );
        assert!(matches!(op.state, OperationState::Succeeded { .. }));
        let op = parse(
            json!({ "id": "x", "status": "failed", "error": { "code": 5000, "message": "No data" } }),
        );
        assert_eq!(
            op.state,
            OperationState::Failed {
                error: OperationError {
                    code: "5000".into(),
                    message: "No data".into()
                }
            }
        );
    }

    #[test]
    fn unknown_statuses_keep_polling() {
        for status in [
            "notStarted",
            "NOTSTARTED",
            "queued",
            "unknownFutureValue",
            "",
        ] {
            let op = parse(
                json!({ "@odata.type": "#microsoft.graph.partners.billing.runningOperation", "id": "x", "status": status }),
            );
            assert_eq!(
                op.state,
                OperationState::Running {
                    status: status.into()
                }
            );
        }
        let op = parse(
            json!({ "@odata.type": "#microsoft.graph.partners.billing.someNewOperation", "id": "x", "status": "skipped" }),
        );
        assert!(matches!(op.state, OperationState::Running { .. }));
    }

    #[test]
    fn success_without_manifest_or_with_hostile_one_is_an_error() {
        let e = parse_operation(
            &json!({ "@odata.type": "#microsoft.graph.partners.billing.exportSuccessOperation", "id": "x", "status": "succeeded" }),
            None,
            false,
        );
        assert!(e.is_err());
        let mut m = crate::billing::manifest::tests::doc_example();
        m["blobs"][0]["name"] = json!("../../x");
        let e = parse_operation(
            &json!({ "@odata.type": "#microsoft.graph.partners.billing.exportSuccessOperation", "id": "x", "status": "succeeded", "resourceLocation": m }),
            None,
            false,
        );
        assert!(e.is_err());
        assert!(parse_operation(&json!([]), None, false).is_err());
    }
}
