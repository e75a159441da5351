//! Microsoft's blob storage as the sandbox serves it: partitions behind an expiring SAS.

use time::OffsetDateTime;
use warp::http::StatusCode;

use super::super::{blobs, bump, Inner};

use super::{Reply, Request};

/// Decodes and checks blob path segments: no empty, `.` or `..` segments, no separators or
/// control characters smuggled in through percent-encoding.
pub(super) fn blob_path(segments: &[&str]) -> Option<String> {
    if segments.is_empty() || segments.len() > 32 {
        return None;
    }
    let mut out = String::new();
    for raw in segments {
        let seg = percent_decode_path(raw)?;
        if seg.is_empty()
            || seg == "."
            || seg == ".."
            || seg.len() > 256
            || seg.chars().any(|c| c == '/' || c == '\\' || c.is_control())
        {
            return None;
        }
        out.push('/');
        out.push_str(&seg);
    }
    Some(out)
}

/// Path percent-decoding (unlike form decoding, `+` stays `+`). Invalid escapes or UTF-8: None.
pub(super) fn percent_decode_path(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub(super) fn get_blob(inner: &Inner, req: &Request, segments: &[&str], head: bool) -> Reply {
    bump(&inner.counters.blob_gets, 1);
    let Some(path) = blob_path(segments) else {
        return blobs::error(
            StatusCode::BAD_REQUEST,
            "InvalidUri",
            "The requested URI does not represent any resource on the server.",
        );
    };
    let now = OffsetDateTime::now_utc();
    let mut st = inner.state();
    if let Err(rejection) = st.signer.verify(&req.query, &path, now) {
        drop(st);
        bump(&inner.counters.sas_rejections, 1);
        return match rejection {
            super::super::sas::SasRejection::AuthenticationFailed(msg) => blobs::error(
                StatusCode::FORBIDDEN,
                "AuthenticationFailed",
                &format!("Server failed to authenticate the request. {msg}"),
            ),
            super::super::sas::SasRejection::PermissionMismatch => blobs::error(
                StatusCode::FORBIDDEN,
                "AuthorizationPermissionMismatch",
                "This request is not authorized to perform this operation using this permission.",
            ),
        };
    }
    let Some((key, index)) = st.blobs.get(&path).cloned() else {
        return blobs::error(
            StatusCode::NOT_FOUND,
            "BlobNotFound",
            "The specified blob does not exist.",
        );
    };
    let rows = inner.cfg.rows_per_partition;
    let Some(export) = st.exports.get_mut(&key) else {
        return blobs::error(
            StatusCode::NOT_FOUND,
            "BlobNotFound",
            "The specified blob does not exist.",
        );
    };
    let partition = export.partition(index, rows);
    let last_modified = export.created;
    drop(st);
    let reply = blobs::serve(
        blobs::BlobMeta {
            bytes: &partition.gzip,
            last_modified,
        },
        &req.headers,
        head,
    );
    if !head && reply.status().is_success() {
        let served = reply
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        bump(&inner.counters.blob_bytes_served, served);
    }
    reply
}
