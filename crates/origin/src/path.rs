//! From a request path to a file inside the videos folder.
//!
//! **No request ever reads a byte outside the folder.** The path is
//! percent-decoded exactly once; NUL, backslashes, `.` and `..` segments are
//! refused with 400 before the file system is touched; hidden names (`.git`,
//! `.env`) are not served; and the resolved file is canonicalized (symlinks
//! followed) and must still lie under the canonical folder, so a symlink
//! pointing outside gives 404.

use std::path::{Component, Path, PathBuf};

use percent_encoding::percent_decode_str;

/// Longest request path accepted, in bytes (before decoding).
pub const MAX_PATH_BYTES: usize = 4096;

/// Why a request path does not name a servable file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The path is malformed or tries to leave the folder: 400.
    BadRequest(&'static str),
    /// No such file in the folder (or not one we serve): 404.
    NotFound,
    /// The disk could not answer (out of file descriptors, permissions,
    /// I/O error): a 503 that no cache may keep, never a 404 that would
    /// make caches forget a file that exists.
    Unavailable,
}

/// Whether an error looking up a path means there is no such file, rather
/// than that the lookup itself failed.
pub fn is_absent(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::NotFound | ErrorKind::NotADirectory | ErrorKind::InvalidFilename
    ) || e.raw_os_error() == Some(40) // ELOOP: a symlink loop leads nowhere
}

/// The relative path a request names, checked without touching the disk.
pub fn relative(uri_path: &str) -> Result<PathBuf, Refusal> {
    if uri_path.len() > MAX_PATH_BYTES {
        return Err(Refusal::BadRequest("path too long"));
    }
    if !uri_path.starts_with('/') {
        return Err(Refusal::BadRequest("path must start with /"));
    }
    let decoded = percent_decode_str(uri_path)
        .decode_utf8()
        .map_err(|_| Refusal::BadRequest("path is not UTF-8"))?;
    if decoded.contains('\0') {
        return Err(Refusal::BadRequest("NUL in path"));
    }
    if decoded.contains('\\') {
        return Err(Refusal::BadRequest("backslash in path"));
    }
    if decoded.ends_with('/') {
        // A file is never a folder: `/a.mp4/` must not serve `/a.mp4`, or a
        // cache would store one file under two URLs.
        return Err(Refusal::NotFound);
    }
    let mut relative = PathBuf::new();
    for segment in decoded.split('/') {
        match segment {
            "" => continue,
            "." | ".." => return Err(Refusal::BadRequest("dot segment in path")),
            s if s.starts_with('.') => return Err(Refusal::NotFound),
            s => relative.push(s),
        }
    }
    // Belt and braces: after the checks above only normal components remain.
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(Refusal::BadRequest("path leaves the folder"));
    }
    if relative.as_os_str().is_empty() {
        return Err(Refusal::NotFound);
    }
    Ok(relative)
}

/// Resolves a request path to a regular file under `root` (which must be
/// canonical). Blocking: call from a blocking context.
pub fn resolve(root: &Path, uri_path: &str) -> Result<PathBuf, Refusal> {
    let relative = relative(uri_path)?;
    let real = std::fs::canonicalize(root.join(relative)).map_err(|e| {
        if is_absent(&e) {
            Refusal::NotFound
        } else {
            tracing::error!(path = uri_path, error = %e, "cannot resolve a path");
            Refusal::Unavailable
        }
    })?;
    if !real.starts_with(root) {
        tracing::warn!(
            path = uri_path,
            "refused: resolves outside the videos folder"
        );
        return Err(Refusal::NotFound);
    }
    if !real.is_file() {
        return Err(Refusal::NotFound);
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_and_nested_paths() {
        assert_eq!(relative("/a.mp4").unwrap(), PathBuf::from("a.mp4"));
        assert_eq!(
            relative("/hls//v1/seg%201.ts").unwrap(),
            PathBuf::from("hls/v1/seg 1.ts")
        );
    }

    #[test]
    fn escapes_are_refused() {
        for path in [
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E%2Fetc%2Fpasswd",
            "/..%5c..%5cetc",
            "/a%00.mp4",
            "/./a.mp4",
            "/%ff",
            "relative",
        ] {
            assert!(
                matches!(relative(path), Err(Refusal::BadRequest(_))),
                "{path}"
            );
        }
        assert_eq!(relative("/.env"), Err(Refusal::NotFound));
        assert_eq!(relative("/a.mp4/"), Err(Refusal::NotFound));
        assert_eq!(relative("/"), Err(Refusal::NotFound));
    }

    proptest! {
        #[test]
        fn accepted_paths_stay_relative(path in "/[a-zA-Z0-9%./\\\\-]{0,40}") {
            if let Ok(rel) = relative(&path) {
                prop_assert!(rel.is_relative());
                prop_assert!(rel.components().all(|c| matches!(c, Component::Normal(_))));
            }
        }
    }

    #[test]
    fn only_a_missing_file_is_absent_other_errors_are_failures() {
        use std::io::{Error, ErrorKind};
        assert!(is_absent(&Error::from(ErrorKind::NotFound)));
        assert!(is_absent(&Error::from(ErrorKind::NotADirectory)));
        assert!(is_absent(&Error::from_raw_os_error(40)));
        assert!(!is_absent(&Error::from(ErrorKind::PermissionDenied)));
        assert!(!is_absent(&Error::from_raw_os_error(24))); // EMFILE
        assert!(!is_absent(&Error::from_raw_os_error(5))); // EIO
    }
}
