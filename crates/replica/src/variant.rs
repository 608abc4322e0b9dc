//! Secondary cache keys: responses that vary by request header (RFC 9111
//! §4.1).
//!
//! A URL whose response carries `Vary` is stored once per combination of
//! the named request headers' values. The first request for a URL does not
//! know yet what it varies on, so its discovery forwards the viewer's
//! content-negotiation headers ([`NEGOTIATED`]); once a response names its
//! `Vary` fields, every later lookup of the URL computes the variant from
//! the viewer's own values, and fills of a variant send exactly the values
//! it was stored for. A response that varies on anything else (`*`,
//! `User-Agent`, `Cookie`, ...) is passed through, never stored, so no
//! viewer is ever served another's variant.
//!
//! `Accept-Encoding` is the one exception: the replica always asks the
//! origin for the identity encoding and stores that, which every client
//! accepts, so `Vary: Accept-Encoding` needs no variants.

use http::{HeaderMap, HeaderName, HeaderValue, header};

/// Request headers a discovery forwards, because a response may vary on them.
pub const NEGOTIATED: [HeaderName; 2] = [header::ACCEPT, header::ACCEPT_LANGUAGE];

/// The values of the varying request headers one variant was stored for.
pub type Values = Vec<(HeaderName, Option<String>)>;

/// What a response's `Vary` means for this cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vary {
    /// One representation for every request.
    None,
    /// A variant per value of these request headers.
    On(Vec<HeaderName>),
    /// Varies on something this cache cannot key on: do not store.
    Unstorable,
}

/// Reads a response's `Vary` fields.
pub fn of_response(headers: &HeaderMap) -> Vary {
    let mut names = Vec::new();
    for value in headers.get_all(header::VARY) {
        let Ok(text) = value.to_str() else {
            return Vary::Unstorable;
        };
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return Vary::Unstorable;
            }
            let Ok(name) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) else {
                return Vary::Unstorable;
            };
            if name == header::ACCEPT_ENCODING || names.contains(&name) {
                continue;
            }
            if !NEGOTIATED.contains(&name) {
                return Vary::Unstorable;
            }
            names.push(name);
        }
    }
    if names.is_empty() {
        Vary::None
    } else {
        names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Vary::On(names)
    }
}

/// A request's values of `names`, normalised: all field lines joined, each
/// list member trimmed, members separated by ", " (RFC 9111 §4.1).
pub fn values(request: &HeaderMap, names: &[HeaderName]) -> Values {
    names
        .iter()
        .map(|name| {
            let lines: Vec<&str> = request
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            if lines.is_empty() {
                return (name.clone(), None);
            }
            let joined = lines
                .iter()
                .flat_map(|l| l.split(','))
                .map(|m| m.split_whitespace().collect::<Vec<_>>().join(" "))
                .filter(|m| !m.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
            (name.clone(), Some(joined))
        })
        .collect()
}

/// The values of `names` among `values` (in the order of `names`).
pub fn select(values: &Values, names: &[HeaderName]) -> Values {
    names
        .iter()
        .map(|name| {
            let value = values
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| v.clone());
            (name.clone(), value)
        })
        .collect()
}

/// The header names of a variant's values.
pub fn names(values: &Values) -> Vec<HeaderName> {
    values.iter().map(|(n, _)| n.clone()).collect()
}

/// The index key of a variant: the URL, then each varying header's value.
/// NUL never occurs in a request target, so keys cannot collide.
pub fn key(primary: &str, values: &Values) -> String {
    if values.is_empty() {
        return primary.to_owned();
    }
    let mut key = primary.to_owned();
    for (name, value) in values {
        key.push('\0');
        key.push_str(name.as_str());
        key.push('=');
        match value {
            Some(value) => key.push_str(value),
            None => key.push('\u{1}'),
        }
    }
    key
}

/// The URL of an index key (without the variant part).
pub fn primary(key: &str) -> &str {
    key.split('\0').next().unwrap_or(key)
}

/// The headers to send the origin for these values.
pub fn request_headers(values: &Values) -> Vec<(HeaderName, HeaderValue)> {
    values
        .iter()
        .filter_map(|(name, value)| {
            let value = HeaderValue::from_str(value.as_deref()?).ok()?;
            Some((name.clone(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn vary_lists_are_normalised() {
        let vary = of_response(&headers(&[
            ("vary", "Accept-Language , accept"),
            ("vary", "Accept-Encoding"),
        ]));
        assert_eq!(
            vary,
            Vary::On(vec![header::ACCEPT, header::ACCEPT_LANGUAGE])
        );
        assert_eq!(
            of_response(&headers(&[("vary", "accept-encoding")])),
            Vary::None
        );
        assert_eq!(of_response(&headers(&[])), Vary::None);
        assert_eq!(of_response(&headers(&[("vary", "*")])), Vary::Unstorable);
        assert_eq!(
            of_response(&headers(&[("vary", "User-Agent")])),
            Vary::Unstorable
        );
    }

    #[test]
    fn request_values_ignore_whitespace_and_line_splits() {
        let names = [header::ACCEPT_LANGUAGE];
        let a = values(&headers(&[("accept-language", "fr,  en;q=0.5")]), &names);
        let b = values(
            &headers(&[("accept-language", "fr"), ("accept-language", "en;q=0.5")]),
            &names,
        );
        assert_eq!(a, b);
        let absent = values(&headers(&[]), &names);
        let empty = values(&headers(&[("accept-language", "")]), &names);
        assert_ne!(
            key("/v", &absent),
            key("/v", &empty),
            "absent differs from empty"
        );
        assert_eq!(primary(&key("/v?x=1", &a)), "/v?x=1");
    }
}
