//! What a handler answers the host: `{"Outputs": {...}, "Logs": [...], "ReturnValue": ...}`,
//! always with a 2xx status and `application/json` when the invocation succeeded.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, Serialize)]
pub struct InvocationReply {
    #[serde(rename = "Outputs")]
    pub outputs: Map<String, Value>,
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    #[serde(rename = "ReturnValue", skip_serializing_if = "Option::is_none")]
    pub return_value: Option<Value>,
}

impl InvocationReply {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn log(mut self, line: impl Into<String>) -> Self {
        self.logs.push(line.into());
        self
    }

    /// Sets an HTTP output binding. The host requires an object here, so it always is one.
    pub fn http(mut self, binding: &str, res: HttpResponse) -> Self {
        self.outputs.insert(binding.to_string(), res.into_value());
        self
    }
}

/// The `http` output binding value.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Value,
}

impl HttpResponse {
    pub fn json(status: u16, body: Value) -> Self {
        let mut headers = BTreeMap::new();
        headers.insert("Content-Type".to_string(), "application/json".to_string());
        Self {
            status,
            headers,
            body,
        }
    }

    /// RFC 9457 problem details.
    pub fn problem(status: u16, title: &str, detail: &str, field: Option<&str>) -> Self {
        let mut body = serde_json::json!({
            "type": "about:blank",
            "title": title,
            "status": status,
            "detail": detail,
        });
        if let Some(f) = field {
            body["field"] = Value::String(f.to_string());
        }
        let mut r = Self::json(status, body);
        r.headers.insert(
            "Content-Type".to_string(),
            "application/problem+json".to_string(),
        );
        r
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.insert(name.to_string(), value.into());
        self
    }

    pub fn into_value(self) -> Value {
        serde_json::json!({
            "statusCode": self.status,
            "headers": self.headers,
            "body": self.body,
        })
    }
}
