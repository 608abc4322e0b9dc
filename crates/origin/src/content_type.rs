//! Media types by file extension, for the formats a video CDN serves.

use std::path::Path;

/// The `Content-Type` for a file, by its extension (case-insensitive).
pub fn for_path(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    match extension.as_deref() {
        Some("mp4" | "m4v") => "video/mp4",
        Some("m4s") => "video/iso.segment",
        Some("m4a") => "audio/mp4",
        Some("ts") => "video/mp2t",
        Some("m3u8") => "application/vnd.apple.mpegurl",
        Some("mpd") => "application/dash+xml",
        Some("webm") => "video/webm",
        Some("mov") => "video/quicktime",
        Some("mp3") => "audio/mpeg",
        Some("aac") => "audio/aac",
        Some("vtt") => "text/vtt; charset=utf-8",
        Some("srt") => "application/x-subrip",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Whether the catalog lists a file of this type as a video.
pub fn is_listed(path: &Path) -> bool {
    matches!(
        for_path(path),
        "video/mp4"
            | "video/webm"
            | "video/quicktime"
            | "application/vnd.apple.mpegurl"
            | "application/dash+xml"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_types() {
        assert_eq!(for_path(Path::new("a/b.MP4")), "video/mp4");
        assert_eq!(for_path(Path::new("seg-1.m4s")), "video/iso.segment");
        assert_eq!(
            for_path(Path::new("index.m3u8")),
            "application/vnd.apple.mpegurl"
        );
        assert_eq!(for_path(Path::new("noext")), "application/octet-stream");
        assert!(is_listed(Path::new("x.webm")));
        assert!(!is_listed(Path::new("seg.ts")));
    }
}
