//! The blob endpoint's answers, shaped like Azure Storage's Get Blob / Get Blob Properties:
//! raw gzip bytes (never `Content-Encoding: gzip`, which would make HTTP clients inflate them),
//! MD5, ETag, single ranges with 206, and XML errors with `x-ms-error-code`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use md5::{Digest, Md5};
use time::OffsetDateTime;
use warp::http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::sas::STORAGE_VERSION;

type Reply = warp::reply::Response;

/// A byte range `start..=end` within a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

/// How a range header applies to a blob of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    Whole,
    Part(ByteRange),
    Unsatisfiable,
}

/// Reads `x-ms-range` (which wins, as in Azure) or `Range`. Only a single `bytes=` range is
/// understood; anything else is ignored and the whole blob served, as HTTP allows.
pub fn requested_range(headers: &HeaderMap, len: u64) -> RangeRequest {
    let raw = headers
        .get("x-ms-range")
        .or_else(|| headers.get("range"))
        .and_then(|v| v.to_str().ok());
    match raw {
        Some(r) => parse_range(r, len),
        None => RangeRequest::Whole,
    }
}

pub fn parse_range(raw: &str, len: u64) -> RangeRequest {
    let Some(spec) = raw.trim().strip_prefix("bytes=") else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeRequest::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        // `bytes=-n`: the last n bytes.
        (true, false) => match b.parse::<u64>() {
            Ok(0) => return RangeRequest::Unsatisfiable,
            Ok(n) => Some((len.saturating_sub(n), len.saturating_sub(1))),
            Err(_) => None,
        },
        (false, true) => a.parse::<u64>().ok().map(|s| (s, len.saturating_sub(1))),
        (false, false) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(s), Ok(e)) if s <= e => Some((s, e.min(len.saturating_sub(1)))),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        None => RangeRequest::Whole,
        Some((start, _)) if len == 0 || start >= len => RangeRequest::Unsatisfiable,
        Some((start, end)) => RangeRequest::Part(ByteRange { start, end }),
    }
}

/// Facts about a stored blob that its answers carry.
pub struct BlobMeta<'a> {
    pub bytes: &'a Bytes,
    pub last_modified: OffsetDateTime,
}

pub fn md5_of(bytes: &[u8]) -> [u8; 16] {
    Md5::digest(bytes).into()
}

/// Answers GET (or HEAD when `head`) for a blob.
pub fn serve(meta: BlobMeta<'_>, headers: &HeaderMap, head: bool) -> Reply {
    let len = meta.bytes.len() as u64;
    let md5 = md5_of(meta.bytes);
    let md5_b64 = STANDARD.encode(md5);
    // Azure ETags look like "0x8DC2F1B6A7E3C4D"; derive one from the content so it is stable.
    let etag = format!("\"0x8D{}\"", hex::encode_upper(&md5[..7]));
    let range = if head {
        RangeRequest::Whole
    } else {
        requested_range(headers, len)
    };
    let mut b = Response::builder()
        .header("Content-Type", "application/octet-stream")
        .header("ETag", &etag)
        .header(
            "Last-Modified",
            httpdate::fmt_http_date(meta.last_modified.into()),
        )
        .header("Accept-Ranges", "bytes")
        .header("x-ms-blob-type", "BlockBlob")
        .header("x-ms-version", STORAGE_VERSION)
        .header("x-ms-request-id", uuid::Uuid::new_v4().to_string())
        .header("x-ms-server-encrypted", "true");
    match range {
        RangeRequest::Unsatisfiable => {
            let mut r = error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "InvalidRange",
                "The range specified is invalid for the current size of the resource.",
            );
            r.headers_mut().insert(
                "Content-Range",
                HeaderValue::from_str(&format!("bytes */{len}")).expect("ascii"),
            );
            r
        }
        RangeRequest::Whole => {
            b = b
                .status(StatusCode::OK)
                .header("Content-Length", len)
                .header("Content-MD5", &md5_b64);
            let body = if head {
                Bytes::new()
            } else {
                meta.bytes.clone()
            };
            b.body(body.into()).expect("valid response")
        }
        RangeRequest::Part(r) => {
            let slice = meta.bytes.slice(r.start as usize..=r.end as usize);
            b = b
                .status(StatusCode::PARTIAL_CONTENT)
                .header("Content-Length", slice.len())
                .header(
                    "Content-Range",
                    format!("bytes {}-{}/{len}", r.start, r.end),
                )
                // A ranged read reports the whole blob's MD5 apart, and the range's own MD5 only
                // when asked for it.
                .header("x-ms-blob-content-md5", &md5_b64);
            if headers
                .get("x-ms-range-get-content-md5")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"))
            {
                b = b.header("Content-MD5", STANDARD.encode(md5_of(&slice)));
            }
            b.body(slice.into()).expect("valid response")
        }
    }
}

/// Azure Storage's XML error answer.
pub fn error(status: StatusCode, code: &str, message: &str) -> Reply {
    let request_id = uuid::Uuid::new_v4();
    let now = httpdate::fmt_http_date(std::time::SystemTime::now());
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code><Message>{}\nRequestId:{request_id}\nTime:{now}</Message></Error>",
        xml_escape(message)
    );
    Response::builder()
        .status(status)
        .header("Content-Type", "application/xml")
        .header("x-ms-error-code", code)
        .header("x-ms-request-id", request_id.to_string())
        .header("x-ms-version", STORAGE_VERSION)
        .body(body.into())
        .expect("valid response")
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let p = |s| parse_range(s, 100);
        let part = |start, end| RangeRequest::Part(ByteRange { start, end });
        assert_eq!(p("bytes=0-9"), part(0, 9));
        assert_eq!(p("bytes=90-"), part(90, 99));
        assert_eq!(p("bytes=-10"), part(90, 99));
        assert_eq!(p("bytes=50-1000"), part(50, 99));
        assert_eq!(p("bytes=100-200"), RangeRequest::Unsatisfiable);
        assert_eq!(p("bytes=0-1,5-6"), RangeRequest::Whole);
        assert_eq!(p("bytes=9-1"), RangeRequest::Whole);
        assert_eq!(p("items=0-1"), RangeRequest::Whole);
        assert_eq!(parse_range("bytes=0-0", 0), RangeRequest::Unsatisfiable);
    }

    #[test]
    fn x_ms_range_wins() {
        let mut h = HeaderMap::new();
        h.insert("range", HeaderValue::from_static("bytes=0-1"));
        h.insert("x-ms-range", HeaderValue::from_static("bytes=2-3"));
        assert_eq!(
            requested_range(&h, 10),
            RangeRequest::Part(ByteRange { start: 2, end: 3 })
        );
    }

    #[test]
    fn errors_escape_their_message() {
        let r = error(StatusCode::FORBIDDEN, "AuthenticationFailed", "a<b");
        assert_eq!(r.headers()["x-ms-error-code"], "AuthenticationFailed");
        assert_eq!(r.headers()["content-type"], "application/xml");
    }
}
