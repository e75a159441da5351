//! Parsing operation responses (GET `/reports/partners/billing/operations/{id}`).
//!
//! The docs disagree on the success status (`succeeded` in examples, `completed` on resource
//! pages) and on where the manifest is (navigation link vs inline object), so the rules are:
//! `@odata.type` decides first, `status` (case-insensitive) second; unknown statuses mean
//! "keep polling"; both manifest shapes are accepted.

use std::time::Duration;

use serde_json::{Map, Value};
use time::OffsetDateTime;
use url::Url;

use super::error::BillingError;
use super::manifest::{parse_manifest, SourceHosts};
use super::model::{ManifestLocation, OperationError, OperationPoll, OperationState};
use super::wire::{optional_str, parse_graph_timestamp};

const TYPE_PREFIX: &str = "microsoft.graph.partners.billing.";
const MAX_ID_LEN: usize = 256;
const MAX_STATUS_LEN: usize = 64;
const MAX_URL_LEN: usize = 2048;
const MAX_ERROR_CODE_LEN: usize = 128;
const MAX_ERROR_MESSAGE_LEN: usize = 1024;
const MAX_TIMESTAMP_LEN: usize = 64;

/// The `@odata.type` of an operation, without namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OperationType {
    Running,
    Success,
    Failed,
    /// The base `operation` type, a missing type, or one we do not know: `status` decides.
    Generic,
}

fn invalid(msg: impl Into<String>) -> BillingError {
    BillingError::InvalidResponse(format!("operation: {}", msg.into()))
}

/// Parses one operation body. `retry_after` comes from the response header (already clamped);
/// `hosts` is passed on to the inline manifest's `rootDirectory` check.
pub fn parse_operation(
    json: &Value,
    retry_after: Option<Duration>,
    hosts: &SourceHosts,
) -> Result<OperationPoll, BillingError> {
    let obj = json
        .as_object()
        .ok_or_else(|| invalid("expected a JSON object"))?;
    let id = optional_str(obj, "id", MAX_ID_LEN).map_err(invalid)?;
    let status = optional_str(obj, "status", MAX_STATUS_LEN).map_err(invalid)?;
    let state = match operation_type(obj)? {
        OperationType::Running => OperationState::Running { status },
        OperationType::Success => succeeded(obj, hosts)?,
        OperationType::Failed => failed(obj)?,
        OperationType::Generic => by_status(obj, status, hosts)?,
    };
    Ok(OperationPoll {
        id,
        state,
        retry_after,
        created_date_time: timestamp(obj, "createdDateTime")?,
        last_action_date_time: timestamp(obj, "lastActionDateTime")?,
    })
}

fn operation_type(obj: &Map<String, Value>) -> Result<OperationType, BillingError> {
    let raw = optional_str(obj, "@odata.type", MAX_STATUS_LEN * 2).map_err(invalid)?;
    if raw.is_empty() {
        return Ok(OperationType::Generic);
    }
    let name = raw.trim_start_matches('#');
    let short = name
        .get(..TYPE_PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(TYPE_PREFIX))
        .map(|_| &name[TYPE_PREFIX.len()..]);
    let t = match short.map(str::to_ascii_lowercase).as_deref() {
        Some("runningoperation") => OperationType::Running,
        Some("exportsuccessoperation") => OperationType::Success,
        Some("failedoperation") => OperationType::Failed,
        Some("operation") => OperationType::Generic,
        _ => {
            tracing::warn!(odata_type = %raw, "unknown operation @odata.type; deciding by status");
            OperationType::Generic
        }
    };
    Ok(t)
}

/// For the base type: `succeeded`/`completed` → success, `failed` → failure, anything else
/// (including `notStarted`, `running`, future values) → keep polling.
fn by_status(
    obj: &Map<String, Value>,
    status: String,
    hosts: &SourceHosts,
) -> Result<OperationState, BillingError> {
    match status.to_ascii_lowercase().as_str() {
        "succeeded" | "completed" => succeeded(obj, hosts),
        "failed" => failed(obj),
        _ => Ok(OperationState::Running { status }),
    }
}

fn succeeded(
    obj: &Map<String, Value>,
    hosts: &SourceHosts,
) -> Result<OperationState, BillingError> {
    let manifest = manifest_location(obj, hosts)?.ok_or_else(|| {
        invalid("succeeded without resourceLocation or resourceLocation@odata.navigationLink")
    })?;
    Ok(OperationState::Succeeded { manifest })
}

/// Inline `resourceLocation` object first (what Microsoft's sample reads), then the
/// documented navigation link.
fn manifest_location(
    obj: &Map<String, Value>,
    hosts: &SourceHosts,
) -> Result<Option<ManifestLocation>, BillingError> {
    if let Some(inline @ Value::Object(_)) = obj.get("resourceLocation") {
        let m = parse_manifest(inline, hosts)?;
        return Ok(Some(ManifestLocation::Inline(Box::new(m))));
    }
    let link =
        optional_str(obj, "resourceLocation@odata.navigationLink", MAX_URL_LEN).map_err(invalid)?;
    if link.is_empty() {
        return Ok(None);
    }
    let url = Url::parse(&link).map_err(|e| {
        invalid(format!(
            "resourceLocation@odata.navigationLink is not an absolute URL ({e})"
        ))
    })?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(invalid(
            "resourceLocation@odata.navigationLink is not an http(s) URL",
        ));
    }
    // The allow-list check happens when the link is followed (BillingClient::get_manifest).
    Ok(Some(ManifestLocation::Link(url)))
}

fn failed(obj: &Map<String, Value>) -> Result<OperationState, BillingError> {
    let error = match obj.get("error") {
        Some(Value::Object(e)) => OperationError {
            code: error_code(e)?,
            message: optional_str(e, "message", MAX_ERROR_MESSAGE_LEN).map_err(invalid)?,
        },
        None | Some(Value::Null) => OperationError {
            code: String::new(),
            message: "failed operation without error details".into(),
        },
        Some(_) => return Err(invalid("error is not an object")),
    };
    Ok(OperationState::Failed { error })
}

/// `error.code` is a string in the docs (`"5000"`), but a number is accepted too.
fn error_code(e: &Map<String, Value>) -> Result<String, BillingError> {
    match e.get("code") {
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => optional_str(e, "code", MAX_ERROR_CODE_LEN).map_err(invalid),
    }
}

fn timestamp(obj: &Map<String, Value>, key: &str) -> Result<Option<OffsetDateTime>, BillingError> {
    let s = optional_str(obj, key, MAX_TIMESTAMP_LEN).map_err(invalid)?;
    Ok(parse_graph_timestamp(&s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    /// The Microsoft Graph v1.0 `billing.operation` examples (running, export success, failed),
    /// quirks included: offset-less `createdDateTime`, seven fractional digits, string error code.
    const RUNNING: &str = include_str!("../../tests/fixtures/graph/operation-running.json");
    const SUCCEEDED: &str = include_str!("../../tests/fixtures/graph/operation-succeeded.json");
    const FAILED: &str = include_str!("../../tests/fixtures/graph/operation-failed.json");

    fn parse(s: &str) -> OperationPoll {
        parse_operation(
            &serde_json::from_str(s).unwrap(),
            None,
            &SourceHosts::default(),
        )
        .unwrap()
    }

    fn generic(status: &str) -> Value {
        json!({
            "@odata.type": "#microsoft.graph.partners.billing.operation",
            "id": "op-1",
            "status": status,
            "resourceLocation@odata.navigationLink": "https://graph.microsoft.com/v1.0/reports/partners/billing/manifests/m1"
        })
    }

    fn state_of(v: &Value) -> OperationState {
        parse_operation(v, None, &SourceHosts::default())
            .unwrap()
            .state
    }

    #[test]
    fn running_example() {
        let p = parse_operation(
            &serde_json::from_str(RUNNING).unwrap(),
            Some(Duration::from_secs(30)),
            &SourceHosts::default(),
        )
        .unwrap();
        assert_eq!(p.id, "6fe687d7-1e0f-4bd6-9091-4672691f64bc");
        assert_eq!(
            p.state,
            OperationState::Running {
                status: "running".into()
            }
        );
        assert_eq!(p.retry_after, Some(Duration::from_secs(30)));
        assert_eq!(
            p.created_date_time,
            Some(datetime!(2023-03-09 08:12:53 UTC))
        );
        assert_eq!(
            p.last_action_date_time,
            Some(datetime!(2023-03-09 08:37:48.5046691 UTC))
        );
    }

    #[test]
    fn succeeded_example_with_navigation_link() {
        let p = parse(SUCCEEDED);
        let OperationState::Succeeded {
            manifest: ManifestLocation::Link(u),
        } = p.state
        else {
            panic!("expected a link, got {:?}", p.state);
        };
        assert_eq!(
            u.as_str(),
            "https://graph.microsoft.com/v1.0/reports/partners/billing/manifests/8fe347d7-1e0f-4bd6-9091-4672691f32db"
        );
    }

    #[test]
    fn failed_example_with_string_code() {
        let p = parse(FAILED);
        assert_eq!(
            p.state,
            OperationState::Failed {
                error: OperationError {
                    code: "5000".into(),
                    message: "No data available".into()
                }
            }
        );
    }

    #[test]
    fn numeric_error_code() {
        let mut v: Value = serde_json::from_str(FAILED).unwrap();
        v["error"]["code"] = json!(5000);
        let OperationState::Failed { error } = state_of(&v) else {
            panic!()
        };
        assert_eq!(error.code, "5000");
    }

    #[test]
    fn inline_manifest_from_the_full_example() {
        let mut v: Value = serde_json::from_str(SUCCEEDED).unwrap();
        v.as_object_mut()
            .unwrap()
            .remove("resourceLocation@odata.navigationLink");
        v["resourceLocation"] =
            serde_json::from_str(crate::billing::manifest::tests::FULL_EXAMPLE).unwrap();
        let OperationState::Succeeded {
            manifest: ManifestLocation::Inline(m),
        } = state_of(&v)
        else {
            panic!("expected inline manifest");
        };
        assert_eq!(m.etag, "WYjLro78HdMg6vUWR");
        assert_eq!(m.blobs.len(), 1);
    }

    #[test]
    fn inline_manifest_wins_over_link_and_is_validated() {
        let mut v: Value = serde_json::from_str(SUCCEEDED).unwrap();
        let mut m: Value =
            serde_json::from_str(crate::billing::manifest::tests::FULL_EXAMPLE).unwrap();
        m["blobs"] = json!([{ "name": "../escape" }]);
        v["resourceLocation"] = m;
        assert!(parse_operation(&v, None, &SourceHosts::default()).is_err());
    }

    #[test]
    fn inline_manifest_on_a_foreign_storage_host_is_a_manifest_error() {
        let mut v: Value = serde_json::from_str(SUCCEEDED).unwrap();
        let mut m: Value =
            serde_json::from_str(crate::billing::manifest::tests::FULL_EXAMPLE).unwrap();
        m["rootDirectory"] = json!("https://exfil.example.net/c/PartnerTenantId=x");
        v["resourceLocation"] = m;
        let e = parse_operation(&v, None, &SourceHosts::default()).unwrap_err();
        assert!(matches!(e, BillingError::InvalidManifest(_)), "{e:?}");
        assert!(e.to_string().contains("exfil.example.net"), "{e}");
    }

    #[test]
    fn success_statuses_on_the_base_type() {
        for s in ["succeeded", "completed", "COMPLETED", "Succeeded"] {
            assert!(
                matches!(state_of(&generic(s)), OperationState::Succeeded { .. }),
                "{s}"
            );
        }
    }

    #[test]
    fn completed_status_without_type() {
        let mut v = generic("completed");
        v.as_object_mut().unwrap().remove("@odata.type");
        assert!(matches!(state_of(&v), OperationState::Succeeded { .. }));
    }

    #[test]
    fn not_started_and_unknown_statuses_keep_polling() {
        for s in ["notStarted", "running", "queued", "unknownFutureValue", ""] {
            assert_eq!(
                state_of(&generic(s)),
                OperationState::Running { status: s.into() },
                "{s}"
            );
        }
    }

    #[test]
    fn failed_status_on_the_base_type() {
        let mut v = generic("FAILED");
        v["error"] = json!({"code": "5000", "message": "No data available"});
        assert!(matches!(state_of(&v), OperationState::Failed { .. }));
    }

    #[test]
    fn odata_type_decides_before_status() {
        let mut v: Value = serde_json::from_str(RUNNING).unwrap();
        v["status"] = json!("succeeded");
        assert!(matches!(state_of(&v), OperationState::Running { .. }));
    }

    #[test]
    fn success_without_manifest_is_invalid() {
        let mut v: Value = serde_json::from_str(SUCCEEDED).unwrap();
        v.as_object_mut()
            .unwrap()
            .remove("resourceLocation@odata.navigationLink");
        let e = parse_operation(&v, None, &SourceHosts::default()).unwrap_err();
        assert!(matches!(e, BillingError::InvalidResponse(_)), "{e}");
        let mut v = generic("completed");
        v["resourceLocation@odata.navigationLink"] =
            json!("/v1.0/reports/partners/billing/manifests/m1");
        assert!(
            parse_operation(&v, None, &SourceHosts::default()).is_err(),
            "relative link"
        );
    }

    #[test]
    fn lenient_timestamps() {
        assert_eq!(
            parse_graph_timestamp("2023-03-09T08:12:53"),
            Some(datetime!(2023-03-09 08:12:53 UTC))
        );
        assert_eq!(
            parse_graph_timestamp("2023-03-09T08:12:53.25"),
            Some(datetime!(2023-03-09 08:12:53.25 UTC))
        );
        assert_eq!(
            parse_graph_timestamp("2023-03-09T08:37:48.5046691Z"),
            Some(datetime!(2023-03-09 08:37:48.5046691 UTC))
        );
        assert_eq!(
            parse_graph_timestamp("2023-03-09T10:12:53+02:00"),
            Some(datetime!(2023-03-09 08:12:53 UTC))
        );
        assert_eq!(parse_graph_timestamp(""), None);
        assert_eq!(parse_graph_timestamp("yesterday"), None);
        let mut v = generic("running");
        v.as_object_mut().unwrap().remove("id");
        let p = parse_operation(&v, None, &SourceHosts::default()).unwrap();
        assert_eq!((p.created_date_time, p.last_action_date_time), (None, None));
    }

    #[test]
    fn non_object_body_is_invalid() {
        assert!(parse_operation(&json!("running"), None, &SourceHosts::default()).is_err());
        assert!(parse_operation(&json!({"status": 3}), None, &SourceHosts::default()).is_err());
    }
}
