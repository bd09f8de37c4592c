//! Audience bodies: streamed in, parsed off the async workers, collected into a bitmap.
//!
//! An upload can be hundreds of megabytes. It is never held whole: chunks flow
//! from the HTTP body through a small bounded channel into a parser running on
//! a blocking thread, and each ID goes straight into a `RoaringTreemap`. Memory
//! is therefore bounded by the (compact) audience, not by the body. The first
//! bad value stops the parse, and nothing has been written anywhere by then.

use std::io::{self, Read};

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use roaring::RoaringTreemap;
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use tokio::sync::mpsc;

/// Body formats accepted for audiences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain` or `text/csv`: one ID per line, optional header on line 1.
    Lines,
    /// `application/json`: an array of integers.
    Json,
}

impl Format {
    /// Picks the parser from a `Content-Type` value; `None` means 415.
    pub fn from_content_type(ct: &str) -> Option<Format> {
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "text/plain" | "text/csv" => Some(Format::Lines),
            "application/json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// A parsed audience and what it took to get there.
#[derive(Debug, Default)]
pub struct Parsed {
    pub members: RoaringTreemap,
    /// Every ID read, duplicates included.
    pub received: u64,
    /// IDs that repeated an earlier one.
    pub duplicates: u64,
}

impl Parsed {
    fn push(&mut self, id: u64) {
        self.received += 1;
        if !self.members.insert(id) {
            self.duplicates += 1;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A value that is not a user ID. `line` is 1-based.
    #[error("line {line}: {message}")]
    Invalid { line: u64, message: String },
    /// The body is not the format its content type promised (broken JSON,
    /// or JSON that is not an array).
    #[error("line {line}: {message}")]
    Malformed { line: u64, message: String },
    #[error("the body holds no user ids")]
    Empty,
    #[error("the body is larger than the {limit}-byte upload limit")]
    TooLarge { limit: u64 },
    #[error("reading the request body failed: {0}")]
    Body(String),
}

const NOT_A_USER_ID: &str = " is not a user id";

/// Longest line text echoed back in an error; a pasted megabyte should not be.
const MAX_ECHO: usize = 40;

/// Parses an audience body as it streams in. The CPU-heavy part runs on a
/// blocking thread so a million-line upload does not stall login checks.
pub async fn parse_body(body: Body, format: Format, limit: u64) -> Result<Parsed, IngestError> {
    // A few chunks of slack lets the network and the parser overlap without
    // letting a fast client buffer the body in memory.
    let (tx, rx) = mpsc::channel::<Result<Bytes, IngestError>>(8);
    let parser = tokio::task::spawn_blocking(move || {
        let reader = ChannelReader {
            rx,
            current: Bytes::new(),
        };
        parse_reader(reader, format)
    });

    let mut stream = body.into_data_stream();
    let mut seen: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let msg = match chunk {
            Ok(bytes) => {
                seen += bytes.len() as u64;
                if seen > limit {
                    Err(IngestError::TooLarge { limit })
                } else {
                    Ok(bytes)
                }
            }
            Err(e) => Err(IngestError::Body(e.to_string())),
        };
        let stop = msg.is_err();
        // A closed channel means the parser already failed; its error wins.
        if tx.send(msg).await.is_err() || stop {
            break;
        }
    }
    drop(tx);
    parser
        .await
        .map_err(|e| IngestError::Body(format!("parser task failed: {e}")))?
}

/// Parses a complete audience from any reader (used by tests and tools).
pub fn parse_reader(reader: impl Read, format: Format) -> Result<Parsed, IngestError> {
    let mut reader = TrackedReader::new(reader);
    let result = match format {
        Format::Lines => parse_lines(&mut reader),
        Format::Json => parse_json(&mut reader),
    };
    // An error raised by the transport (too large, client hung up) explains a
    // parse failure better than the truncated text the parser saw.
    if let Some(e) = reader.take_transport_error() {
        return Err(e);
    }
    let parsed = result?;
    if parsed.received == 0 && format == Format::Lines {
        return Err(IngestError::Empty);
    }
    Ok(parsed)
}

fn parse_lines(reader: &mut impl Read) -> Result<Parsed, IngestError> {
    let mut parsed = Parsed::default();
    let mut line_no: u64 = 1;
    let mut line: Vec<u8> = Vec::with_capacity(32);
    let mut overflowed = false;
    let mut buf = vec![0u8; 64 * 1024];
    let mut first_bytes = true;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(IngestError::Body(e.to_string())),
        };
        let mut chunk = &buf[..n];
        if first_bytes {
            first_bytes = false;
            chunk = chunk.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(chunk);
        }
        for &b in chunk {
            if b == b'\n' {
                finish_line(&line, overflowed, line_no, &mut parsed)?;
                line.clear();
                overflowed = false;
                line_no += 1;
            } else if line.len() < MAX_ECHO + 2 {
                line.push(b);
            } else {
                overflowed = true;
            }
        }
    }
    finish_line(&line, overflowed, line_no, &mut parsed)?;
    Ok(parsed)
}

fn finish_line(
    raw: &[u8],
    overflowed: bool,
    line_no: u64,
    parsed: &mut Parsed,
) -> Result<(), IngestError> {
    let text = raw.trim_ascii();
    if text.is_empty() {
        return Ok(());
    }
    let shown = || {
        let s = String::from_utf8_lossy(&text[..text.len().min(MAX_ECHO)]).into_owned();
        if overflowed || text.len() > MAX_ECHO {
            format!("{s}…")
        } else {
            s
        }
    };
    let invalid = |why: &str| IngestError::Invalid {
        line: line_no,
        message: format!("{:?} is not a user id{why}", shown()),
    };
    if text.iter().all(u8::is_ascii_digit) {
        if overflowed {
            return Err(invalid(" (larger than 18446744073709551615)"));
        }
        // All digits, so the only possible failure is overflow.
        let s = std::str::from_utf8(text).expect("digits are ASCII");
        let id = s
            .parse::<u64>()
            .map_err(|_| invalid(" (larger than 18446744073709551615)"))?;
        parsed.push(id);
        return Ok(());
    }
    let looks_like_header = text[0].is_ascii_alphabetic() || text[0] == b'_' || text[0] == b'"';
    if looks_like_header {
        if line_no == 1 {
            return Ok(());
        }
        return Err(invalid(" (a header is allowed only on line 1)"));
    }
    if text[0] == b'-' && text.len() > 1 && text[1..].iter().all(u8::is_ascii_digit) {
        return Err(invalid(" (user ids are unsigned)"));
    }
    Err(invalid(""))
}

fn parse_json(reader: &mut impl Read) -> Result<Parsed, IngestError> {
    let mut de =
        serde_json::Deserializer::from_reader(io::BufReader::with_capacity(64 * 1024, reader));
    let parsed = de
        .deserialize_seq(AudienceVisitor)
        .and_then(|p| de.end().map(|()| p));
    parsed.map_err(|e| {
        if e.is_io() {
            return IngestError::Body(e.to_string());
        }
        if e.is_eof() && e.line() <= 1 && e.column() == 0 {
            return IngestError::Empty;
        }
        // serde_json appends " at line L column C"; the line goes first in ours.
        let full = e.to_string();
        let message = match full.rfind(" at line ") {
            Some(i) => full[..i].to_string(),
            None => full,
        };
        let line = e.line() as u64;
        // Our element visitor's rejections name the value; anything else is
        // the document's shape or syntax.
        if e.classify() == serde_json::error::Category::Data && message.contains(NOT_A_USER_ID) {
            IngestError::Invalid { line, message }
        } else {
            IngestError::Malformed { line, message }
        }
    })
}

/// Collects a JSON array of IDs straight into the bitmap, element by element.
struct AudienceVisitor;

impl<'de> Visitor<'de> for AudienceVisitor {
    type Value = Parsed;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of user ids")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Parsed, A::Error> {
        let mut parsed = Parsed::default();
        while let Some(id) = seq.next_element_seed(IdSeed)? {
            parsed.push(id);
        }
        Ok(parsed)
    }
}

struct IdSeed;

impl<'de> DeserializeSeed<'de> for IdSeed {
    type Value = u64;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_any(IdVisitor)
    }
}

struct IdVisitor;

impl IdVisitor {
    fn reject<E: de::Error>(shown: impl std::fmt::Display, why: &str) -> E {
        E::custom(format!("{shown}{NOT_A_USER_ID}{why}"))
    }
}

impl<'de> Visitor<'de> for IdVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an unsigned 64-bit user id")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| Self::reject(v, " (user ids are unsigned)"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        // serde_json reads integers beyond u64 as floats; echoing the rounded
        // float would show a number the client never sent.
        if v.fract() == 0.0 && v >= u64::MAX as f64 {
            Err(Self::reject(
                "a number",
                " (larger than 18446744073709551615)",
            ))
        } else {
            Err(Self::reject(v, " (user ids are integers)"))
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        let shown: String = v.chars().take(MAX_ECHO).collect();
        Err(Self::reject(
            format!("{shown:?}"),
            " (send numbers, not strings)",
        ))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<u64, E> {
        Err(Self::reject(v, ""))
    }
    fn visit_unit<E: de::Error>(self) -> Result<u64, E> {
        Err(Self::reject("null", ""))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<u64, A::Error> {
        Err(Self::reject("a nested array", ""))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<u64, A::Error> {
        Err(Self::reject("an object", ""))
    }
}

/// Turns the channel of body chunks into a blocking `Read` for the parser.
struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes, IngestError>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => {
                    return Err(io::Error::other(TransportError(std::sync::Mutex::new(
                        Some(e),
                    ))));
                }
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

const TRANSPORT_FAILED: &str = "request body transport failed";

/// Lets `parse_reader` recover the typed transport error (e.g. too large)
/// after the parser saw only an opaque I/O error.
struct TrackedReader<R> {
    inner: R,
    failure: Option<IngestError>,
}

impl<R: Read> TrackedReader<R> {
    fn new(inner: R) -> Self {
        TrackedReader {
            inner,
            failure: None,
        }
    }
    fn take_transport_error(&mut self) -> Option<IngestError> {
        self.failure.take()
    }
}

impl<R: Read> Read for TrackedReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.inner.read(out).inspect_err(|e| {
            if let Some(typed) = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<TransportError>())
            {
                self.failure = Some(typed.take_or_body());
            }
        })
    }
}

/// Carried inside `io::Error` from a channel reader; see `TrackedReader`.
#[derive(Debug)]
struct TransportError(std::sync::Mutex<Option<IngestError>>);

impl TransportError {
    fn take_or_body(&self) -> IngestError {
        self.0
            .lock()
            .ok()
            .and_then(|mut g| g.take())
            .unwrap_or_else(|| IngestError::Body(TRANSPORT_FAILED.into()))
    }
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(TRANSPORT_FAILED)
    }
}

impl std::error::Error for TransportError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Result<Parsed, IngestError> {
        parse_reader(s.as_bytes(), Format::Lines)
    }

    fn json(s: &str) -> Result<Parsed, IngestError> {
        parse_reader(s.as_bytes(), Format::Json)
    }

    fn err_line(e: IngestError) -> (u64, String) {
        match e {
            IngestError::Invalid { line, message } => (line, message),
            other => panic!("expected an invalid line, got {other:?}"),
        }
    }

    #[test]
    fn lines_accept_header_crlf_bom_blanks_and_duplicates() {
        let p = lines("\u{feff}user_id\r\n1\r\n 2 \r\n\r\n2\n3").unwrap();
        assert_eq!(p.members.iter().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!((p.received, p.duplicates), (4, 1));
    }

    #[test]
    fn the_first_bad_line_is_reported_with_its_text() {
        let (line, msg) = err_line(lines("1\n2\n12a\n4").unwrap_err());
        assert_eq!(line, 3);
        assert_eq!(msg, "\"12a\" is not a user id");
    }

    #[test]
    fn negative_and_oversized_ids_say_why() {
        let (_, msg) = err_line(lines("-5").unwrap_err());
        assert!(msg.contains("unsigned"), "{msg}");
        let (_, msg) = err_line(lines("18446744073709551616").unwrap_err());
        assert!(msg.contains("larger than"), "{msg}");
        assert_eq!(
            lines("18446744073709551615").unwrap().members.max(),
            Some(u64::MAX)
        );
    }

    #[test]
    fn a_header_after_line_one_is_an_error() {
        let (line, msg) = err_line(lines("1\nuser_id\n").unwrap_err());
        assert_eq!(line, 2);
        assert!(msg.contains("only on line 1"), "{msg}");
    }

    #[test]
    fn empty_bodies_and_lone_headers_are_rejected() {
        assert!(matches!(lines(""), Err(IngestError::Empty)));
        assert!(matches!(lines("user_id\r\n\r\n"), Err(IngestError::Empty)));
        assert!(matches!(json(""), Err(IngestError::Empty)));
    }

    #[test]
    fn long_lines_are_echoed_truncated() {
        let long = "9".repeat(10_000);
        let (_, msg) = err_line(lines(&format!("1\n{long}x\n")).unwrap_err());
        assert!(msg.len() < 120, "{msg}");
    }

    #[test]
    fn json_arrays_parse_and_bad_elements_name_their_line() {
        let p = json("[1, 2, 2, 18446744073709551615]").unwrap();
        assert_eq!((p.received, p.duplicates, p.members.len()), (4, 1, 3));
        let (line, msg) = err_line(json("[1,\n2,\n\"abc\"]").unwrap_err());
        assert_eq!(line, 3);
        assert!(msg.starts_with("\"abc\" is not a user id"), "{msg}");
        let (_, msg) = err_line(json("[-1]").unwrap_err());
        assert!(msg.contains("unsigned"), "{msg}");
        assert!(json("[1] trailing").is_err());
        assert!(json("{\"a\":1}").is_err());
    }

    #[test]
    fn an_empty_json_array_is_an_explicit_empty_audience() {
        let p = json("[]").unwrap();
        assert_eq!(p.members.len(), 0);
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_rejected() {
        let body = Body::from("1\n2\n3\n4\n5\n6\n");
        let e = parse_body(body, Format::Lines, 5).await.unwrap_err();
        assert!(matches!(e, IngestError::TooLarge { limit: 5 }), "{e:?}");
    }

    #[tokio::test]
    async fn streamed_bodies_parse_like_readers() {
        let body = Body::from("user_id\n7\n8\n");
        let p = parse_body(body, Format::Lines, 1 << 20).await.unwrap();
        assert_eq!(p.members.iter().collect::<Vec<_>>(), vec![7, 8]);
    }
}
