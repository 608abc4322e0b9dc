//! Byte ranges (RFC 9110 §14).
//!
//! vcdn answers a single range with a 206 and anything else with the whole
//! representation: a malformed `Range` is ignored (RFC 9110 §14.2 lets a server
//! ignore it), and a request for several ranges gets a plain 200. Video
//! players only ever ask for one range; multipart/byteranges would add a
//! code path that no viewer uses, and a full 200 is always a correct answer.

use http::HeaderValue;
use http_range_header::RangeUnsatisfiableError;

/// An inclusive byte range `start..=end` inside a representation of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    /// Number of bytes in the range (never zero).
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `Content-Range` value of a 206 carrying this range.
    pub fn content_range(&self, complete_len: u64) -> HeaderValue {
        header_value(format!(
            "bytes {}-{}/{}",
            self.start, self.end, complete_len
        ))
    }
}

/// What a `Range` header asks of a representation of a known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: send the whole representation with 200.
    Full,
    /// One satisfiable range: send it with 206.
    Partial(ByteRange),
    /// Syntactically valid but no range overlaps the representation: 416.
    Unsatisfiable,
}

/// The longest `Range` value vcdn parses; longer ones are ignored.
const MAX_RANGE_HEADER_BYTES: usize = 1024;

/// Resolves a `Range` header against a representation of `len` bytes.
pub fn resolve(header: Option<&HeaderValue>, len: u64) -> RangeRequest {
    let Some(value) = header else {
        return RangeRequest::Full;
    };
    if value.len() > MAX_RANGE_HEADER_BYTES {
        return RangeRequest::Full;
    }
    let Ok(text) = value.to_str() else {
        return RangeRequest::Full;
    };
    let Ok(parsed) = http_range_header::parse_range_header(text) else {
        return RangeRequest::Full;
    };
    match parsed.validate(len) {
        Ok(ranges) if ranges.len() == 1 => RangeRequest::Partial(ByteRange {
            start: *ranges[0].start(),
            end: *ranges[0].end(),
        }),
        Ok(_) => RangeRequest::Full,
        Err(RangeUnsatisfiableError::Unsatisfiable) => RangeRequest::Unsatisfiable,
        Err(_) => RangeRequest::Full,
    }
}

/// The first byte a `Range` header asks for when that does not depend on
/// the representation's length (`bytes=N-` and `bytes=N-M`); a cache uses it
/// to fetch the right part of an object it has not seen yet.
pub fn first_byte_hint(header: Option<&HeaderValue>) -> Option<u64> {
    let text = header?.to_str().ok()?;
    if text.len() > MAX_RANGE_HEADER_BYTES {
        return None;
    }
    let parsed = http_range_header::parse_range_header(text).ok()?;
    match parsed.into_ranges().first()? {
        http_range_header::SyntacticallyCorrectRange::FromStart(start)
        | http_range_header::SyntacticallyCorrectRange::Indexed(start, _) => Some(*start),
        http_range_header::SyntacticallyCorrectRange::FromLast(_) => None,
    }
}

/// A parsed `Content-Range: bytes first-last/total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    pub first: u64,
    pub last: u64,
    pub total: u64,
}

/// Parses a satisfied `Content-Range` (`bytes a-b/n`, with a known total).
pub fn content_range(headers: &http::HeaderMap) -> Option<ContentRange> {
    let text = headers.get(http::header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = text.strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let range = ContentRange {
        first: first.trim().parse().ok()?,
        last: last.trim().parse().ok()?,
        total: total.trim().parse().ok()?,
    };
    (range.first <= range.last && range.last < range.total).then_some(range)
}

/// The `Content-Range` value of a 416: `bytes */len`.
pub fn unsatisfied_content_range(complete_len: u64) -> HeaderValue {
    header_value(format!("bytes */{complete_len}"))
}

fn header_value(text: String) -> HeaderValue {
    // Digits, spaces, '-', '/' and '*' only: always a valid header value.
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static("bytes */0"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(value: &str, len: u64) -> RangeRequest {
        resolve(Some(&HeaderValue::from_str(value).unwrap()), len)
    }

    fn partial(start: u64, end: u64) -> RangeRequest {
        RangeRequest::Partial(ByteRange { start, end })
    }

    #[test]
    fn forms_of_a_single_range() {
        assert_eq!(r("bytes=0-99", 1000), partial(0, 99));
        assert_eq!(r("bytes=999-999", 1000), partial(999, 999));
        assert_eq!(r("bytes=500-", 1000), partial(500, 999));
        assert_eq!(r("bytes=-100", 1000), partial(900, 999));
        assert_eq!(r("bytes=-5000", 1000), partial(0, 999));
        assert_eq!(r("bytes=900-5000", 1000), partial(900, 999));
    }

    #[test]
    fn range_past_end_of_file_is_unsatisfiable() {
        assert_eq!(r("bytes=1000-", 1000), RangeRequest::Unsatisfiable);
        assert_eq!(r("bytes=2000-3000", 1000), RangeRequest::Unsatisfiable);
        assert_eq!(r("bytes=-0", 1000), RangeRequest::Unsatisfiable);
    }

    #[test]
    fn malformed_and_multiple_ranges_get_the_whole_file() {
        for value in [
            "bytes=abc",
            "bytes=5-1",
            "items=0-1",
            "bytes=",
            "0-1",
            "bytes=0-1,2-3",
        ] {
            assert_eq!(r(value, 1000), RangeRequest::Full, "{value}");
        }
        assert_eq!(resolve(None, 10), RangeRequest::Full);
    }

    #[test]
    fn first_byte_hints() {
        let hint = |v: &str| first_byte_hint(Some(&HeaderValue::from_str(v).unwrap()));
        assert_eq!(hint("bytes=500-"), Some(500));
        assert_eq!(hint("bytes=5-9"), Some(5));
        assert_eq!(hint("bytes=-5"), None);
        assert_eq!(hint("nonsense"), None);
    }

    proptest! {
        #[test]
        fn partial_ranges_lie_inside_the_representation(value in "bytes=[0-9]{0,6}-[0-9]{0,6}", len in 0u64..2_000_000) {
            if let RangeRequest::Partial(range) = r(&value, len) {
                prop_assert!(range.start <= range.end);
                prop_assert!(range.end < len);
            }
        }

        #[test]
        fn any_header_value_resolves_without_panicking(value in "\\PC{0,64}", len in 0u64..u64::MAX) {
            if let Ok(header) = HeaderValue::from_str(&value) {
                let _ = resolve(Some(&header), len);
            }
        }

        #[test]
        fn a_content_range_is_parsed_back_as_written(len in 1u64..u64::MAX, a in 0u64..u64::MAX, b in 0u64..u64::MAX) {
            let (start, end) = (a.min(b) % len, a.max(b) % len);
            let (start, end) = (start.min(end), start.max(end));
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::CONTENT_RANGE, ByteRange { start, end }.content_range(len));
            prop_assert_eq!(content_range(&headers), Some(ContentRange { first: start, last: end, total: len }));
        }

        #[test]
        fn any_content_range_parses_to_a_valid_span_or_nothing(value in "(bytes )?[0-9 */-]{0,40}") {
            let mut headers = http::HeaderMap::new();
            if let Ok(header) = HeaderValue::from_str(&value) {
                headers.insert(http::header::CONTENT_RANGE, header);
                if let Some(range) = content_range(&headers) {
                    prop_assert!(range.first <= range.last && range.last < range.total);
                }
            }
        }
    }
}
