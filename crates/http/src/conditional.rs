//! Validators and conditional requests (RFC 9110 §8.8, §13).
//!
//! [`evaluate`] applies the preconditions in the order RFC 9110 §13.2.2
//! gives, and [`if_range_allows_partial`] decides whether a `Range` may be
//! honoured. Both origin and replica use them, so a cached copy answers
//! conditionals exactly as the origin would.

use std::time::SystemTime;

use http::{HeaderMap, Method, header};

/// An entity tag: opaque text and whether it is weak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ETag {
    pub weak: bool,
    /// The opaque tag without quotes.
    pub tag: String,
}

impl ETag {
    pub fn strong(tag: impl Into<String>) -> ETag {
        ETag {
            weak: false,
            tag: tag.into(),
        }
    }

    /// Parses one entity tag (`"abc"` or `W/"abc"`).
    pub fn parse(text: &str) -> Option<ETag> {
        let text = text.trim();
        let (weak, rest) = match text.strip_prefix("W/") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let tag = rest.strip_prefix('"')?.strip_suffix('"')?;
        // etagc = %x21 / %x23-7E / obs-text
        if tag.bytes().any(|b| b == b'"' || b < 0x21 || b == 0x7f) {
            return None;
        }
        Some(ETag {
            weak,
            tag: tag.to_owned(),
        })
    }

    /// The header value form.
    pub fn to_header_string(&self) -> String {
        if self.weak {
            format!("W/\"{}\"", self.tag)
        } else {
            format!("\"{}\"", self.tag)
        }
    }

    fn strong_eq(&self, other: &ETag) -> bool {
        !self.weak && !other.weak && self.tag == other.tag
    }

    fn weak_eq(&self, other: &ETag) -> bool {
        self.tag == other.tag
    }
}

/// The validators of a selected representation.
#[derive(Debug, Clone, Default)]
pub struct Validators {
    pub etag: Option<ETag>,
    pub last_modified: Option<SystemTime>,
}

/// The outcome of evaluating a request's preconditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Serve the request normally.
    Proceed,
    /// Answer 304 Not Modified (GET/HEAD only).
    NotModified,
    /// Answer 412 Precondition Failed.
    Failed,
}

/// Entity-tag lists longer than this are treated as not matching anything;
/// the header size limit already bounds them, this bounds the work.
const MAX_TAGS: usize = 64;

enum TagList {
    Any,
    Tags(Vec<ETag>),
}

fn tag_list(headers: &HeaderMap, name: header::HeaderName) -> Option<TagList> {
    let mut tags = Vec::new();
    let mut present = false;
    for value in headers.get_all(name) {
        present = true;
        let text = value.to_str().ok()?;
        if text.trim() == "*" {
            return Some(TagList::Any);
        }
        for item in split_tags(text) {
            if tags.len() == MAX_TAGS {
                break;
            }
            if let Some(tag) = ETag::parse(item) {
                tags.push(tag);
            }
        }
    }
    present.then_some(TagList::Tags(tags))
}

/// Splits an entity-tag list on the commas between tags (commas may appear
/// inside a quoted tag).
fn split_tags(text: &str) -> impl Iterator<Item = &str> {
    let mut in_quotes = false;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, c) in text.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty())
}

fn date(headers: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| httpdate::parse_http_date(s).ok())
}

/// Truncates to whole seconds, the resolution of HTTP dates.
fn seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Evaluates If-Match, If-Unmodified-Since, If-None-Match and
/// If-Modified-Since in RFC 9110 §13.2.2 order.
pub fn evaluate(method: &Method, headers: &HeaderMap, validators: &Validators) -> Precondition {
    let get_or_head = method == Method::GET || method == Method::HEAD;

    if let Some(list) = tag_list(headers, header::IF_MATCH) {
        let passes = match (list, &validators.etag) {
            (TagList::Any, _) => true,
            (TagList::Tags(tags), Some(current)) => tags.iter().any(|t| t.strong_eq(current)),
            (TagList::Tags(_), None) => false,
        };
        if !passes {
            return Precondition::Failed;
        }
    } else if let (Some(since), Some(modified)) = (
        date(headers, header::IF_UNMODIFIED_SINCE),
        validators.last_modified,
    ) && seconds(modified) > seconds(since)
    {
        return Precondition::Failed;
    }

    if let Some(list) = tag_list(headers, header::IF_NONE_MATCH) {
        let matches = match (list, &validators.etag) {
            (TagList::Any, _) => true,
            (TagList::Tags(tags), Some(current)) => tags.iter().any(|t| t.weak_eq(current)),
            (TagList::Tags(_), None) => false,
        };
        if matches {
            return if get_or_head {
                Precondition::NotModified
            } else {
                Precondition::Failed
            };
        }
    } else if get_or_head
        && let (Some(since), Some(modified)) = (
            date(headers, header::IF_MODIFIED_SINCE),
            validators.last_modified,
        )
        && seconds(modified) <= seconds(since)
    {
        return Precondition::NotModified;
    }

    Precondition::Proceed
}

/// Whether a `Range` may be honoured given `If-Range` (RFC 9110 §13.1.5):
/// true without If-Range, or when it names the current representation by a
/// strong entity tag or its exact Last-Modified date.
pub fn if_range_allows_partial(headers: &HeaderMap, validators: &Validators) -> bool {
    let Some(value) = headers.get(header::IF_RANGE) else {
        return true;
    };
    let Ok(text) = value.to_str() else {
        return false;
    };
    if let Some(tag) = ETag::parse(text) {
        return validators
            .etag
            .as_ref()
            .is_some_and(|current| tag.strong_eq(current));
    }
    match (httpdate::parse_http_date(text), validators.last_modified) {
        (Ok(date), Some(modified)) => seconds(date) == seconds(modified),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::Duration;

    fn validators() -> Validators {
        Validators {
            etag: Some(ETag::strong("v1")),
            last_modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        }
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn http_date(secs: u64) -> String {
        httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn if_none_match_uses_weak_comparison() {
        let v = validators();
        for value in ["\"v1\"", "W/\"v1\"", "\"x\", \"v1\"", "*"] {
            let h = headers(&[(header::IF_NONE_MATCH, value)]);
            assert_eq!(
                evaluate(&Method::GET, &h, &v),
                Precondition::NotModified,
                "{value}"
            );
        }
        let h = headers(&[(header::IF_NONE_MATCH, "\"v2\"")]);
        assert_eq!(evaluate(&Method::GET, &h, &v), Precondition::Proceed);
    }

    #[test]
    fn if_none_match_takes_precedence_over_if_modified_since() {
        let v = validators();
        let h = headers(&[
            (header::IF_NONE_MATCH, "\"other\""),
            (header::IF_MODIFIED_SINCE, &http_date(1_800_000_000)),
        ]);
        assert_eq!(evaluate(&Method::GET, &h, &v), Precondition::Proceed);
    }

    #[test]
    fn if_modified_since() {
        let v = validators();
        let same = headers(&[(header::IF_MODIFIED_SINCE, &http_date(1_700_000_000))]);
        assert_eq!(
            evaluate(&Method::HEAD, &same, &v),
            Precondition::NotModified
        );
        let older = headers(&[(header::IF_MODIFIED_SINCE, &http_date(1_600_000_000))]);
        assert_eq!(evaluate(&Method::GET, &older, &v), Precondition::Proceed);
        let garbage = headers(&[(header::IF_MODIFIED_SINCE, "yesterday")]);
        assert_eq!(evaluate(&Method::GET, &garbage, &v), Precondition::Proceed);
    }

    #[test]
    fn if_match_uses_strong_comparison() {
        let v = validators();
        let weak = headers(&[(header::IF_MATCH, "W/\"v1\"")]);
        assert_eq!(evaluate(&Method::GET, &weak, &v), Precondition::Failed);
        let strong = headers(&[(header::IF_MATCH, "\"v1\"")]);
        assert_eq!(evaluate(&Method::GET, &strong, &v), Precondition::Proceed);
        let stale = headers(&[(header::IF_UNMODIFIED_SINCE, &http_date(1_600_000_000))]);
        assert_eq!(evaluate(&Method::GET, &stale, &v), Precondition::Failed);
    }

    #[test]
    fn if_range_needs_a_strong_match() {
        let v = validators();
        assert!(if_range_allows_partial(&headers(&[]), &v));
        assert!(if_range_allows_partial(
            &headers(&[(header::IF_RANGE, "\"v1\"")]),
            &v
        ));
        assert!(!if_range_allows_partial(
            &headers(&[(header::IF_RANGE, "W/\"v1\"")]),
            &v
        ));
        assert!(!if_range_allows_partial(
            &headers(&[(header::IF_RANGE, "\"v0\"")]),
            &v
        ));
        let exact = headers(&[(header::IF_RANGE, &http_date(1_700_000_000))]);
        assert!(if_range_allows_partial(&exact, &v));
        let other = headers(&[(header::IF_RANGE, &http_date(1_700_000_001))]);
        assert!(!if_range_allows_partial(&other, &v));
    }

    #[test]
    fn etag_parsing() {
        assert_eq!(ETag::parse("\"a,b\"").unwrap().tag, "a,b");
        assert!(ETag::parse("W/\"x\"").unwrap().weak);
        assert!(ETag::parse("x").is_none());
        assert!(ETag::parse("\"a\"b\"").is_none());
        let tags: Vec<_> = split_tags("\"a,b\", W/\"c\"").collect();
        assert_eq!(tags.len(), 2);
    }
}
