//! A small multipart/form-data reader (RFC 7578) for the fakes: the platforms' file uploads
//! (Telegram `sendPhoto`/`sendDocument`, Discord `payload_json` + `files[n]`) arrive that way.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

/// One part of a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The field name (`name=` of its `Content-Disposition`).
    pub name: String,
    /// The file name, for a file part.
    pub filename: Option<String>,
    /// Its `Content-Type`, if given.
    pub content_type: Option<String>,
    /// The content.
    pub bytes: Vec<u8>,
}

impl Part {
    /// The content as text (for the plain fields).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// The boundary of a `multipart/form-data; boundary=…` content type, or `None` for any other
/// content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let (essence, params) = content_type.split_once(';')?;
    if !essence.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.eq_ignore_ascii_case("boundary")
            .then(|| v.trim_matches('"').to_string())
    })
}

/// The parts of a multipart body; panics on a malformed one (a test should see it).
pub fn parse(content_type: &str, body: &[u8]) -> Vec<Part> {
    let boundary =
        boundary(content_type).unwrap_or_else(|| panic!("not multipart/form-data: {content_type}"));
    let delimiter = format!("--{boundary}").into_bytes();
    let mut parts = Vec::new();
    let mut rest = &body[find(body, &delimiter).expect("no first boundary") + delimiter.len()..];
    loop {
        if rest.starts_with(b"--") {
            return parts;
        }
        rest = rest.strip_prefix(b"\r\n").expect("a boundary without CRLF");
        let head_end = find(rest, b"\r\n\r\n").expect("a part without headers");
        let head = String::from_utf8_lossy(&rest[..head_end]).into_owned();
        rest = &rest[head_end + 4..];
        let mut next = delimiter.clone();
        next.splice(0..0, b"\r\n".iter().copied());
        let end = find(rest, &next).expect("a part without a closing boundary");
        let bytes = rest[..end].to_vec();
        rest = &rest[end + next.len()..];
        let mut name = None;
        let mut filename = None;
        let mut content_type = None;
        for line in head.split("\r\n") {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            if key.trim().eq_ignore_ascii_case("content-disposition") {
                for param in value.split(';').skip(1) {
                    if let Some((k, v)) = param.trim().split_once('=') {
                        let v = v.trim().trim_matches('"').to_string();
                        match k.trim() {
                            "name" => name = Some(v),
                            "filename" => filename = Some(v),
                            _ => {}
                        }
                    }
                }
            } else if key.trim().eq_ignore_ascii_case("content-type") {
                content_type = Some(value.trim().to_string());
            }
        }
        parts.push(Part {
            name: name.expect("a part without a name"),
            filename,
            content_type,
            bytes,
        });
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
