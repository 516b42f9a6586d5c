//! The domain request the webhook works on (headers + raw body bytes), built from whatever HTTP event
//! shape carried it, and the decoding of its body: base64 transport encoding and GitHub's two content types.

use std::borrow::Cow;

use base64::Engine as _;
use bytes::Bytes;
use http::HeaderMap;
use thiserror::Error;

/// GitHub caps webhook payloads at 25 MiB; anything larger is not from GitHub.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

pub const HEADER_EVENT: &str = "x-github-event";
pub const HEADER_DELIVERY: &str = "x-github-delivery";
pub const HEADER_SIGNATURE: &str = "x-hub-signature-256";

/// An HTTP request as the webhook sees it: headers and the exact body bytes GitHub signed.
#[derive(Debug, Clone, Default)]
pub struct WebhookRequest {
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why a request could not be read. Messages never quote the body or a secret.
#[derive(Debug, Error)]
pub enum RequestError {
    #[error("request body is {size} bytes, over GitHub's {limit}-byte webhook limit")]
    TooLarge { size: usize, limit: usize },
    #[error("request body is marked base64-encoded but is not valid base64")]
    Base64(#[source] base64::DecodeError),
    #[error("missing header `{name}`: GitHub sends it with every delivery; is this request from GitHub?")]
    MissingHeader { name: &'static str },
    #[error("header `{name}` is not visible ASCII")]
    BadHeader { name: &'static str },
    #[error(
        "content type `{content_type}` is not supported: set the GitHub webhook's content type to application/json (or application/x-www-form-urlencoded)"
    )]
    UnsupportedContentType { content_type: String },
    #[error("form-encoded body has no `payload` field, which GitHub always sends")]
    FormWithoutPayload,
}

impl WebhookRequest {
    pub fn new(headers: HeaderMap, body: impl Into<Bytes>) -> Self {
        Self { headers, body: body.into() }
    }

    /// Builds the request from an HTTP event's body as Lambda delivers it: text, or base64 when the
    /// gateway treated the body as binary. Size is checked before decoding so a huge body costs nothing.
    pub fn from_event_body(
        headers: HeaderMap,
        body: Option<&str>,
        is_base64: bool,
    ) -> Result<Self, RequestError> {
        let body = body.unwrap_or("");
        let bytes = if is_base64 {
            // Decoded size is at most 3/4 of the text: reject early without allocating.
            let upper = body.len() / 4 * 3 + 3;
            if upper > MAX_BODY_BYTES + 3 {
                return Err(RequestError::TooLarge { size: upper, limit: MAX_BODY_BYTES });
            }
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(body.trim_end())
                .map_err(RequestError::Base64)?;
            Bytes::from(decoded)
        } else {
            Bytes::copy_from_slice(body.as_bytes())
        };
        let req = Self::new(headers, bytes);
        req.check_size()?;
        Ok(req)
    }

    pub fn check_size(&self) -> Result<(), RequestError> {
        if self.body.len() > MAX_BODY_BYTES {
            return Err(RequestError::TooLarge { size: self.body.len(), limit: MAX_BODY_BYTES });
        }
        Ok(())
    }

    /// A header's value, `None` when absent; an error when present but not visible ASCII.
    pub fn header(&self, name: &'static str) -> Result<Option<&str>, RequestError> {
        match self.headers.get(name) {
            None => Ok(None),
            Some(value) => {
                value.to_str().map(|v| Some(v.trim())).map_err(|_| RequestError::BadHeader { name })
            }
        }
    }

    /// A header GitHub always sends; missing or empty is a malformed request.
    pub fn required_header(&self, name: &'static str) -> Result<&str, RequestError> {
        match self.header(name)? {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(RequestError::MissingHeader { name }),
        }
    }

    /// The JSON payload: the body itself for `application/json`, or the `payload` field of a
    /// form-encoded body. The signature covers the raw body, so call this only after verifying it.
    pub fn payload(&self) -> Result<Cow<'_, [u8]>, RequestError> {
        let content_type = self.header("content-type")?.unwrap_or("application/json");
        let media_type = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match media_type.as_str() {
            // GitHub always sends a content type; a proxy that drops it leaves JSON the likely case.
            "" | "application/json" => Ok(Cow::Borrowed(&self.body)),
            "application/x-www-form-urlencoded" => form_urlencoded::parse(&self.body)
                .find(|(k, _)| k == "payload")
                .map(|(_, v)| Cow::Owned(v.into_owned().into_bytes()))
                .ok_or(RequestError::FormWithoutPayload),
            _ => Err(RequestError::UnsupportedContentType {
                content_type: content_type.chars().take(100).collect(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_str(content_type).unwrap());
        h
    }

    #[test]
    fn plain_and_base64_bodies_decode_to_the_same_bytes() {
        let text = r#"{"zen":"Keep it logically awesome."}"#;
        let b64 = base64::engine::general_purpose::STANDARD.encode(text);
        let plain = WebhookRequest::from_event_body(HeaderMap::new(), Some(text), false).unwrap();
        let decoded = WebhookRequest::from_event_body(HeaderMap::new(), Some(&b64), true).unwrap();
        assert_eq!(plain.body, decoded.body);
        assert_eq!(&plain.body[..], text.as_bytes());
    }

    #[test]
    fn missing_body_is_empty() {
        let req = WebhookRequest::from_event_body(HeaderMap::new(), None, false).unwrap();
        assert!(req.body.is_empty());
    }

    #[test]
    fn invalid_base64_is_an_error() {
        let err = WebhookRequest::from_event_body(HeaderMap::new(), Some("not base64!"), true).unwrap_err();
        assert!(matches!(err, RequestError::Base64(_)), "{err}");
    }

    #[test]
    fn oversized_bodies_are_rejected_before_and_after_decoding() {
        let big = "a".repeat(MAX_BODY_BYTES + 1);
        let err = WebhookRequest::from_event_body(HeaderMap::new(), Some(&big), false).unwrap_err();
        assert!(matches!(err, RequestError::TooLarge { size, .. } if size == MAX_BODY_BYTES + 1));
        let big_b64 = "QUFB".repeat(MAX_BODY_BYTES / 3 + 1);
        let err = WebhookRequest::from_event_body(HeaderMap::new(), Some(&big_b64), true).unwrap_err();
        assert!(matches!(err, RequestError::TooLarge { .. }), "{err}");
        // Exactly at the limit is fine.
        let at_limit = "a".repeat(MAX_BODY_BYTES);
        assert!(WebhookRequest::from_event_body(HeaderMap::new(), Some(&at_limit), false).is_ok());
    }

    #[test]
    fn payload_by_content_type() {
        fn check(content_type: Option<&str>, body: &str, expect: Result<&str, &str>) {
            let h = content_type.map(headers).unwrap_or_default();
            let req = WebhookRequest::new(h, body.to_owned());
            match (req.payload(), expect) {
                (Ok(p), Ok(want)) => assert_eq!(std::str::from_utf8(&p).unwrap(), want, "{content_type:?}"),
                (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{e}"),
                (got, want) => panic!("{content_type:?}: got {got:?}, want {want:?}"),
            }
        }
        check(Some("application/json"), r#"{"a":1}"#, Ok(r#"{"a":1}"#));
        check(Some("application/json; charset=utf-8"), "{}", Ok("{}"));
        check(None, "{}", Ok("{}"));
        check(
            Some("application/x-www-form-urlencoded"),
            "payload=%7B%22a%22%3A%22b+c%22%7D",
            Ok(r#"{"a":"b c"}"#),
        );
        check(Some("Application/X-WWW-Form-Urlencoded"), "other=1&payload=%7B%7D", Ok("{}"));
        check(Some("application/x-www-form-urlencoded"), "other=1", Err("no `payload` field"));
        check(Some("text/plain"), "{}", Err("text/plain"));
    }

    #[test]
    fn headers_are_case_insensitive_and_required_ones_must_be_present() {
        let mut h = HeaderMap::new();
        h.insert("X-GitHub-Event", HeaderValue::from_static("push"));
        h.insert("X-GitHub-Delivery", HeaderValue::from_static(""));
        let req = WebhookRequest::new(h, "");
        assert_eq!(req.required_header(HEADER_EVENT).unwrap(), "push");
        let err = req.required_header(HEADER_DELIVERY).unwrap_err();
        assert!(err.to_string().contains("x-github-delivery"), "{err}");
        assert!(req.header(HEADER_SIGNATURE).unwrap().is_none());
    }

    #[test]
    fn non_ascii_header_is_an_error() {
        let mut h = HeaderMap::new();
        h.insert(HEADER_EVENT, HeaderValue::from_bytes(b"p\xffsh").unwrap());
        let req = WebhookRequest::new(h, "");
        assert!(matches!(req.required_header(HEADER_EVENT), Err(RequestError::BadHeader { .. })));
    }
}
