//! Storage errors from SDK errors: status and service code, SAS never quoted.

use super::super::storage::{ObjectPath, StorageError};

pub(super) fn status_of(e: &azure_core::Error) -> Option<u16> {
    e.http_status().map(u16::from)
}

pub(super) fn code_of(e: &azure_core::Error) -> Option<&str> {
    match e.kind() {
        azure_core::error::ErrorKind::HttpResponse { error_code, .. } => error_code.as_deref(),
        _ => None,
    }
}

/// An SDK error for messages: status and service error code, or the error kind and a message
/// with any URL query (SAS) removed. Transport errors can quote the request URL.
pub(super) fn describe(e: &azure_core::Error) -> String {
    match (status_of(e), code_of(e)) {
        (Some(s), c) => format!("HTTP {s} {}", c.unwrap_or(""))
            .trim_end()
            .to_string(),
        (None, _) => scrub(&format!("{:?}: {e}", e.kind())),
    }
}

/// Removes query strings from anything that looks like a URL (SAS tokens live there).
pub(crate) fn scrub(s: &str) -> String {
    s.split(' ')
        .map(|w| match w.find('?') {
            Some(i) if w.contains("://") || w.contains("sig=") || w.contains("sv=") => {
                format!("{}?<redacted>", &w[..i])
            }
            _ => w.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn dest_err(what: &str, dest: &ObjectPath, e: &azure_core::Error) -> StorageError {
    StorageError::Destination(format!("{what} {dest}: {}", describe(e)))
}

/// Errors of requests that make storage read the source: a source that refuses our SAS comes
/// back from the *destination* as `CannotVerifyCopySource` with the source's status, 403 for an
/// expired or revoked SAS and 404 when the signature does not match (Azure and Azurite both
/// report it that way), so both mean "refresh the manifest".
pub(super) fn copy_err(what: &str, dest: &ObjectPath, e: &azure_core::Error) -> StorageError {
    match (status_of(e), code_of(e)) {
        (Some(s @ (401 | 403 | 404)), Some("CannotVerifyCopySource")) => {
            StorageError::SourceForbidden {
                status: s,
                code: "CannotVerifyCopySource".into(),
            }
        }
        _ => dest_err(what, dest, e),
    }
}

/// The From-URL APIs are not implemented by the destination: Azurite answers 501, or 500 when
/// the request is SAS-authorized (its SAS authenticator has no entry for these operations).
pub(super) fn not_implemented(e: &azure_core::Error) -> bool {
    matches!(status_of(e), Some(501 | 500))
}
