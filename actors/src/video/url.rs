//! Camera URL handling without I/O beyond a file-existence check: which kind
//! of source a URL names, and masking passwords before a URL is logged.

use std::path::{Path, PathBuf};

use super::{SourceError, SourceKind};

/// Replaces the password of `scheme://user:password@host/...` with `***`.
/// URLs without a password come back unchanged.
pub fn mask_url(url: &str) -> String {
    match password_span(url) {
        Some((start, end)) => format!("{}***{}", &url[..start], &url[end..]),
        None => url.to_string(),
    }
}

/// The byte range of the password in `url`, if it has one.
pub(crate) fn password_span(url: &str) -> Option<(usize, usize)> {
    let after_scheme = url.find("://")? + 3;
    let rest = &url[after_scheme..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let at = authority.rfind('@')?;
    let userinfo = &authority[..at];
    let colon = userinfo.find(':')?;
    let start = after_scheme + colon + 1;
    let end = after_scheme + at;
    (start < end).then_some((start, end))
}

/// Masks every occurrence of `url`'s password in `text` (ffmpeg echoes the
/// URL in its error messages).
pub(crate) fn mask_in(url: &str, text: &str) -> String {
    match password_span(url) {
        Some((start, end)) => {
            let secret = &url[start..end];
            text.replace(&format!(":{secret}@"), ":***@")
        }
        None => text.to_string(),
    }
}

/// The scheme of `url` in lower case, if it has the `scheme://` form.
fn scheme(url: &str) -> Option<String> {
    let i = url.find("://")?;
    let s = &url[..i];
    let valid = !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| s.to_ascii_lowercase())
}

/// The kind of source `url` names, before checking that a file exists.
pub(crate) fn kind_of(url: &str) -> Result<SourceKind, SourceError> {
    let url = url.trim();
    if url.is_empty() {
        return Err(SourceError::EmptyUrl);
    }
    match scheme(url).as_deref() {
        Some("rtsp") | Some("rtsps") => Ok(SourceKind::Rtsp),
        Some("http") | Some("https") => Ok(SourceKind::Http),
        Some("file") => Ok(SourceKind::File),
        Some(other) => Err(SourceError::UnsupportedScheme {
            url: mask_url(url),
            scheme: other.to_string(),
        }),
        None => Ok(SourceKind::File),
    }
}

/// The local path a file source names: a plain path, or a `file://` URL
/// (`file:///abs/path` or `file://localhost/abs/path`).
pub(crate) fn file_path(url: &str) -> PathBuf {
    let url = url.trim();
    if let Some(rest) = strip_prefix_ci(url, "file://") {
        let rest = strip_prefix_ci(rest, "localhost").unwrap_or(rest);
        return PathBuf::from(percent_decode(rest));
    }
    PathBuf::from(url)
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Decodes `%XX` escapes (as in `file:///my%20video.mp4`); malformed escapes stay as written.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Classifies `url`; a file source must exist and be a regular file.
pub fn classify(url: &str) -> Result<SourceKind, SourceError> {
    let kind = kind_of(url)?;
    if kind == SourceKind::File {
        let path = file_path(url);
        if !Path::new(&path).is_file() {
            return Err(SourceError::MissingFile {
                url: mask_url(url.trim()),
            });
        }
    }
    Ok(kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn masks_passwords_only() {
        assert_eq!(
            mask_url("rtsp://admin:s3cret@10.0.0.5:554/stream1"),
            "rtsp://admin:***@10.0.0.5:554/stream1"
        );
        assert_eq!(mask_url("rtsp://admin@cam/x"), "rtsp://admin@cam/x");
        assert_eq!(mask_url("rtsp://cam/x?a=b@c"), "rtsp://cam/x?a=b@c");
        assert_eq!(mask_url("/videos/a:b@c.mp4"), "/videos/a:b@c.mp4");
        assert_eq!(mask_url("http://u:p@ss@h/"), "http://u:***@h/");
        assert_eq!(
            mask_in("rtsp://u:pw@h/x", "rtsp://u:pw@h/x: Connection refused"),
            "rtsp://u:***@h/x: Connection refused"
        );
    }

    #[test]
    fn kinds() {
        assert_eq!(kind_of("rtsp://h/x"), Ok(SourceKind::Rtsp));
        assert_eq!(kind_of("RTSPS://h/x"), Ok(SourceKind::Rtsp));
        assert_eq!(kind_of("https://h/x.m3u8"), Ok(SourceKind::Http));
        assert_eq!(kind_of("file:///tmp/x.mp4"), Ok(SourceKind::File));
        assert_eq!(kind_of("relative/x.mp4"), Ok(SourceKind::File));
        assert_eq!(kind_of("  "), Err(SourceError::EmptyUrl));
        assert!(matches!(
            kind_of("ftp://u:pw@x/y"),
            Err(SourceError::UnsupportedScheme { ref url, ref scheme }) if url == "ftp://u:***@x/y" && scheme == "ftp"
        ));
    }

    #[test]
    fn file_paths() {
        assert_eq!(
            file_path("file:///tmp/a%20b.mp4"),
            PathBuf::from("/tmp/a b.mp4")
        );
        assert_eq!(file_path("file://localhost/tmp/x"), PathBuf::from("/tmp/x"));
        assert_eq!(file_path("data/x.avi"), PathBuf::from("data/x.avi"));
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }

    #[test]
    fn classify_checks_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("clip.mp4");
        std::fs::write(&f, b"x").unwrap();
        let s = f.to_str().unwrap();
        assert_eq!(classify(s), Ok(SourceKind::File));
        assert_eq!(classify(&format!("file://{s}")), Ok(SourceKind::File));
        let missing = dir.path().join("nope.mp4");
        let e = classify(missing.to_str().unwrap()).unwrap_err();
        assert!(e.to_string().contains("nope.mp4"), "{e}");
        assert!(classify(dir.path().to_str().unwrap()).is_err());
    }

    proptest! {
        #[test]
        fn masked_url_never_contains_password(
            user in "[a-z]{1,8}", pw in "[A-Za-z0-9]{4,12}", host in "[a-z]{3,10}", path in "[a-z0-9/]{0,12}"
        ) {
            let url = format!("rtsp://{user}:{pw}@{host}:554/{path}");
            let m = mask_url(&url);
            prop_assert_eq!(&m, &format!("rtsp://{user}:***@{host}:554/{path}"));
            let text = format!("{url}: Connection refused");
            let needle = format!(":{pw}@");
            prop_assert!(!mask_in(&url, &text).contains(&needle));
        }

        #[test]
        fn mask_is_identity_without_userinfo(s in "[ -~]{0,40}") {
            prop_assume!(!s.contains('@'));
            prop_assert_eq!(mask_url(&s), s);
        }
    }
}
