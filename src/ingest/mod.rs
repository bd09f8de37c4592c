//! Audience bodies: streamed in, parsed off the async workers, collected into a bitmap.
//!
//! An upload can be hundreds of megabytes. It is never held whole: chunks flow
//! from the HTTP body through a small bounded channel into a parser running on
//! a blocking thread, and each ID goes straight into a `RoaringTreemap`. Memory
//! is therefore bounded by the (compact) audience, not by the body. The first
//! bad value stops the parse, and nothing has been written anywhere by then.
//!
//! - [`lines`]: `text/plain`, one id per line;
//! - [`csv`]: `text/csv` (RFC 4180), a column of a CSV export;
//! - [`json`]: `application/json`, an array of ids.
//!
//! All read ids with [`crate::domain::parse_user_id`], the rule the URL
//! paths use too, and both stop once an upload holds more distinct ids than
//! [`Limits::max_audience`], so memory stays bounded by that limit.

pub mod csv;
pub mod json;
pub mod lines;

use std::io::{self, Read};

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use roaring::RoaringTreemap;

use crate::ids::{Audience, IdType, UserKey};
use tokio::sync::mpsc;

/// Body formats accepted for audiences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// `text/plain`: one ID per line, optional header on line 1.
    Lines,
    /// `text/csv`: RFC 4180, the IDs in one column.
    Csv(csv::CsvOptions),
    /// `application/json`: an array of integers.
    Json,
}

impl Format {
    /// Picks the parser from a `Content-Type` value; `None` means 415.
    /// `text/csv` reads RFC 4180's `header=present|absent` parameter; a
    /// value other than those is refused (`Some(Err)`) rather than ignored.
    pub fn from_content_type(ct: &str) -> Option<Result<Format, String>> {
        let mut parts = ct.split(';');
        let mime = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        match mime.as_str() {
            "text/plain" => Some(Ok(Format::Lines)),
            "application/json" => Some(Ok(Format::Json)),
            "text/csv" => {
                let mut options = csv::CsvOptions::default();
                for param in parts {
                    let Some((name, value)) = param.split_once('=') else {
                        continue;
                    };
                    if !name.trim().eq_ignore_ascii_case("header") {
                        continue;
                    }
                    let value = value.trim().trim_matches('"');
                    options.header = Some(if value.eq_ignore_ascii_case("present") {
                        true
                    } else if value.eq_ignore_ascii_case("absent") {
                        false
                    } else {
                        return Some(Err(format!(
                            "the text/csv header parameter is present or absent, not {}",
                            crate::domain::quoted(value.as_bytes())
                        )));
                    });
                }
                Some(Ok(Format::Csv(options)))
            }
            _ => None,
        }
    }
}

/// Drops a UTF-8 byte order mark at the very start of a body, however the
/// body is cut into chunks: a spreadsheet's export often starts with one.
#[derive(Debug)]
pub(crate) struct Bom {
    /// The body's first bytes while they may still be a BOM; `None` once
    /// that is settled.
    head: Option<Vec<u8>>,
}

impl Default for Bom {
    fn default() -> Self {
        Bom {
            head: Some(Vec::with_capacity(BOM.len())),
        }
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl Bom {
    /// Passes `chunk` on to `sink`, less a leading BOM; bytes that may
    /// still start one are held back until they cannot.
    fn feed(
        &mut self,
        mut chunk: &[u8],
        mut sink: impl FnMut(&[u8]) -> Result<(), IngestError>,
    ) -> Result<(), IngestError> {
        if let Some(head) = &mut self.head {
            while head.len() < BOM.len() && BOM.starts_with(head) {
                let Some((&b, rest)) = chunk.split_first() else {
                    return Ok(());
                };
                head.push(b);
                chunk = rest;
            }
            let head = self.head.take().unwrap_or_default();
            if head != BOM {
                sink(&head)?;
            }
        }
        sink(chunk)
    }

    /// At the end of the body: passes on what was held back, if anything.
    fn finish(
        &mut self,
        mut sink: impl FnMut(&[u8]) -> Result<(), IngestError>,
    ) -> Result<(), IngestError> {
        match self.head.take() {
            Some(head) if !head.is_empty() => sink(&head),
            _ => Ok(()),
        }
    }
}

/// A parsed audience and what it took to get there.
#[derive(Debug, PartialEq)]
pub struct Parsed {
    /// The distinct IDs, of the campaign's type.
    pub members: Audience,
    /// Every ID read, duplicates included.
    pub received: u64,
    /// IDs that repeated an earlier one.
    pub duplicates: u64,
}

/// Gathers IDs as a parser reads them, holding at most about twice
/// `max_audience` of them: integers go straight into a bitmap (which
/// counts repeats as they come); UUIDs and strings are appended, then
/// sorted and de-duplicated whenever the list doubles, which is where the
/// limit is checked.
pub(crate) struct Collector {
    id_type: IdType,
    max_audience: u64,
    received: u64,
    ints: RoaringTreemap,
    int_duplicates: u64,
    uuids: Vec<u128>,
    strings: Vec<Box<str>>,
    /// Length after the last compaction: the distinct count so far.
    compacted: usize,
}

/// IDs gathered before the first compaction.
const FIRST_COMPACTION: usize = 1 << 16;

impl Collector {
    pub(crate) fn new(id_type: IdType, max_audience: u64) -> Collector {
        Collector {
            id_type,
            max_audience,
            received: 0,
            ints: RoaringTreemap::new(),
            int_duplicates: 0,
            uuids: Vec::new(),
            strings: Vec::new(),
            compacted: 0,
        }
    }

    pub(crate) fn id_type(&self) -> IdType {
        self.id_type
    }

    fn too_many(&self) -> IngestError {
        IngestError::TooManyIds {
            limit: self.max_audience,
        }
    }

    /// Counts in an integer ID, refusing it when it would be distinct id
    /// number `max_audience + 1`.
    pub(crate) fn push_int(&mut self, id: u64) -> Result<(), IngestError> {
        self.received += 1;
        if !self.ints.insert(id) {
            self.int_duplicates += 1;
        } else if self.received - self.int_duplicates > self.max_audience {
            return Err(self.too_many());
        }
        Ok(())
    }

    /// Counts in an ID of the collector's type.
    pub(crate) fn push(&mut self, key: UserKey) -> Result<(), IngestError> {
        let len = match key {
            UserKey::Int(id) => return self.push_int(id),
            UserKey::Uuid(u) => {
                self.uuids.push(u);
                self.uuids.len()
            }
            UserKey::Str(s) => {
                self.strings.push(s.into_boxed_str());
                self.strings.len()
            }
        };
        self.received += 1;
        if len >= (2 * self.compacted).max(FIRST_COMPACTION) {
            self.compact()?;
        }
        Ok(())
    }

    fn compact(&mut self) -> Result<(), IngestError> {
        self.uuids.sort_unstable();
        self.uuids.dedup();
        self.strings.sort_unstable();
        self.strings.dedup();
        self.compacted = self.uuids.len() + self.strings.len();
        if self.compacted as u64 > self.max_audience {
            return Err(self.too_many());
        }
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Result<Parsed, IngestError> {
        if self.id_type == IdType::Integer {
            return Ok(Parsed {
                members: Audience::Integers(self.ints),
                received: self.received,
                duplicates: self.int_duplicates,
            });
        }
        self.compact()?;
        self.uuids.shrink_to_fit();
        let members = match self.id_type {
            IdType::Uuid => Audience::Uuids(self.uuids),
            _ => Audience::Strings(crate::ids::Strings::from_sorted_iter(
                self.strings.iter().map(|s| &**s),
            )),
        };
        Ok(Parsed {
            duplicates: self.received - members.len(),
            received: self.received,
            members,
        })
    }
}

/// The default of `--max-audience`: far above any campaign seen so far,
/// and low enough that one upload's bitmap stays within a few hundred MB.
pub const DEFAULT_MAX_AUDIENCE: u64 = 100_000_000;

/// What one upload may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of body.
    pub max_bytes: u64,
    /// Distinct user ids (duplicates are free: they cost no memory).
    pub max_audience: u64,
}

impl Limits {
    /// No limit at all; for tools and tests that read trusted input.
    pub const NONE: Limits = Limits {
        max_bytes: u64::MAX,
        max_audience: u64::MAX,
    };
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// A value that is not a user ID. `line` is 1-based.
    #[error("line {line}: {message}")]
    Invalid { line: u64, message: String },
    /// The body is not the format its content type promised (broken JSON,
    /// or JSON that is not an array).
    #[error("line {line}: {message}")]
    Malformed { line: u64, message: String },
    /// A CSV body whose layout cannot be read as asked: a quote left open,
    /// a missing or ambiguous ID column, a row too long or too wide.
    #[error("line {line}: {message}")]
    Layout { line: u64, message: String },
    /// A line too long to be one padded id; reading on would buffer it.
    #[error("line {line}: longer than {limit} bytes (one user id per line)")]
    LineTooLong { line: u64, limit: usize },
    #[error("the body holds no user ids")]
    Empty,
    #[error("the body is larger than the {limit}-byte upload limit")]
    TooLarge { limit: u64 },
    #[error("the upload holds more than {limit} distinct user ids")]
    TooManyIds { limit: u64 },
    #[error("reading the request body failed: {0}")]
    Body(String),
}

/// Parses an audience body as it streams in. The CPU-heavy part runs on a
/// blocking thread so a million-line upload does not stall login checks.
pub async fn parse_body(
    body: Body,
    format: Format,
    limits: Limits,
    id_type: IdType,
) -> Result<Parsed, IngestError> {
    // A few chunks of slack lets the network and the parser overlap without
    // letting a fast client buffer the body in memory.
    let (tx, rx) = mpsc::channel::<Result<Bytes, IngestError>>(8);
    let parser = tokio::task::spawn_blocking(move || {
        let reader = ChannelReader {
            rx,
            current: Bytes::new(),
        };
        parse_reader_typed(reader, format, limits.max_audience, id_type)
    });

    let mut stream = body.into_data_stream();
    let mut seen: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let msg = match chunk {
            Ok(bytes) => {
                seen += bytes.len() as u64;
                if seen > limits.max_bytes {
                    Err(IngestError::TooLarge {
                        limit: limits.max_bytes,
                    })
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

/// Parses a complete audience of integer IDs from any reader (used by
/// tests and tools).
pub fn parse_reader(
    reader: impl Read,
    format: Format,
    max_audience: u64,
) -> Result<Parsed, IngestError> {
    parse_reader_typed(reader, format, max_audience, IdType::Integer)
}

/// Parses a complete audience of `id_type` IDs from any reader.
pub fn parse_reader_typed(
    reader: impl Read,
    format: Format,
    max_audience: u64,
    id_type: IdType,
) -> Result<Parsed, IngestError> {
    let mut reader = TrackedReader::new(reader);
    let text = format != Format::Json;
    let result = match format {
        Format::Lines => {
            let lines = lines::Lines::new(max_audience, id_type);
            feed(&mut reader, lines, lines::Lines::feed, lines::Lines::finish)
        }
        Format::Csv(options) => {
            let csv = csv::Csv::new(options, max_audience, id_type);
            feed(&mut reader, csv, csv::Csv::feed, csv::Csv::finish)
        }
        Format::Json => json::parse(&mut reader, max_audience, id_type),
    };
    // An error raised by the transport (too large, client hung up) explains a
    // parse failure better than the truncated text the parser saw.
    if let Some(e) = reader.take_transport_error() {
        return Err(e);
    }
    let parsed = result?;
    if parsed.received == 0 && text {
        return Err(IngestError::Empty);
    }
    Ok(parsed)
}

/// Drives a chunk-fed text parser from a reader.
fn feed<P>(
    reader: &mut impl Read,
    mut parser: P,
    feed: impl Fn(&mut P, &[u8]) -> Result<(), IngestError>,
    finish: impl FnOnce(P) -> Result<Parsed, IngestError>,
) -> Result<Parsed, IngestError> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return finish(parser),
            Ok(n) => feed(&mut parser, &buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(IngestError::Body(e.to_string())),
        }
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
        parse_reader(s.as_bytes(), Format::Lines, u64::MAX)
    }

    fn json(s: &str) -> Result<Parsed, IngestError> {
        parse_reader(s.as_bytes(), Format::Json, u64::MAX)
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
        assert_eq!(
            p.members.as_integers().unwrap().iter().collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
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
            lines("18446744073709551615")
                .unwrap()
                .members
                .as_integers()
                .unwrap()
                .max(),
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
        let long = "9".repeat(1000);
        let (_, msg) = err_line(lines(&format!("1\n{long}x\n")).unwrap_err());
        assert!(msg.len() < 120, "{msg}");
    }

    #[test]
    fn json_arrays_parse_and_bad_elements_name_their_line() {
        let p = json("[1, 2, 2, 18446744073709551615]").unwrap();
        assert_eq!(
            (
                p.received,
                p.duplicates,
                p.members.as_integers().unwrap().len()
            ),
            (4, 1, 3)
        );
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
        assert_eq!(p.members.as_integers().unwrap().len(), 0);
    }

    #[test]
    fn a_padded_id_is_read_whatever_the_padding() {
        for pad in 0..=100 {
            let spaces = " ".repeat(pad);
            for body in [
                format!("{spaces}12345"),
                format!("{spaces}12345{spaces}\r\n"),
                format!("1\n\t{spaces}12345\n"),
            ] {
                let p = lines(&body).unwrap_or_else(|e| panic!("padding {pad}: {e}"));
                assert!(
                    p.members.as_integers().unwrap().contains(12345),
                    "padding {pad}: {body:?}"
                );
            }
        }
    }

    #[test]
    fn lines_longer_than_1_kib_are_refused_with_their_number() {
        let fits = format!("{}12345", " ".repeat(1024 - 5));
        assert_eq!(fits.len(), 1024);
        let p = lines(&format!("1\n{fits}\r\n{fits}\n{fits}")).unwrap();
        assert_eq!(
            p.members.as_integers().unwrap().iter().collect::<Vec<_>>(),
            vec![1, 12345]
        );
        for too_long in [format!(" {fits}"), format!("{fits} \r"), "7".repeat(5000)] {
            let e = lines(&format!("1\n2\n{too_long}\n3\n")).unwrap_err();
            assert_eq!(
                e.to_string(),
                "line 3: longer than 1024 bytes (one user id per line)",
                "{e:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_bom_split_across_body_chunks_is_recognised() {
        let body = "\u{feff}user_id\r\n7\n8".as_bytes();
        for size in 1..=4 {
            let chunks: Vec<Result<Bytes, io::Error>> = body
                .chunks(size)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let body = Body::from_stream(futures_util::stream::iter(chunks));
            let p = parse_body(body, Format::Lines, Limits::NONE, IdType::Integer)
                .await
                .unwrap_or_else(|e| panic!("chunks of {size}: {e}"));
            assert_eq!(
                p.members.as_integers().unwrap().iter().collect::<Vec<_>>(),
                vec![7, 8]
            );
        }
    }

    #[test]
    fn leading_zeros_and_signs_are_refused() {
        assert_eq!(
            lines("0")
                .unwrap()
                .members
                .as_integers()
                .unwrap()
                .iter()
                .collect::<Vec<_>>(),
            vec![0]
        );
        let (line, msg) = err_line(lines("1\n007\n").unwrap_err());
        assert_eq!(
            (line, msg.as_str()),
            (
                2,
                "\"007\" is not a user id (leading zeros are not allowed)"
            )
        );
        let (line, msg) = err_line(lines("1\n+7\n").unwrap_err());
        assert_eq!(
            (line, msg.as_str()),
            (2, "\"+7\" is not a user id (write it without a sign)")
        );
    }

    #[test]
    fn json_numbers_other_than_plain_digits_are_refused() {
        for (body, why) in [
            ("[-0]", "(user ids are unsigned)"),
            ("[1e2]", "without a fraction or exponent"),
            ("[7.0]", "without a fraction or exponent"),
        ] {
            let (_, msg) = err_line(json(body).unwrap_err());
            assert!(msg.contains(why), "{body}: {msg}");
        }
        for body in ["[007]", "[+7]"] {
            assert!(
                matches!(json(body), Err(IngestError::Malformed { line: 1, .. })),
                "{body}"
            );
        }
    }

    #[test]
    fn an_upload_stops_at_the_audience_limit_and_duplicates_are_free() {
        let too_many = IngestError::TooManyIds { limit: 3 };
        assert_eq!(
            parse_reader(&b"1\n2\n3\n4\n"[..], Format::Lines, 3),
            Err(too_many)
        );
        let too_many = IngestError::TooManyIds { limit: 3 };
        assert_eq!(
            parse_reader(&b"[1,2,3,4]"[..], Format::Json, 3),
            Err(too_many)
        );
        for (body, format) in [
            ("1\n2\n3\n3\n1\n", Format::Lines),
            ("[1,2,3,3,1]", Format::Json),
        ] {
            let p = parse_reader(body.as_bytes(), format, 3).unwrap();
            assert_eq!(
                (
                    p.members.as_integers().unwrap().len(),
                    p.received,
                    p.duplicates
                ),
                (3, 5, 2)
            );
        }
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_rejected() {
        let body = Body::from("1\n2\n3\n4\n5\n6\n");
        let limits = Limits {
            max_bytes: 5,
            ..Limits::NONE
        };
        let e = parse_body(body, Format::Lines, limits, IdType::Integer)
            .await
            .unwrap_err();
        assert!(matches!(e, IngestError::TooLarge { limit: 5 }), "{e:?}");
    }

    #[tokio::test]
    async fn streamed_bodies_parse_like_readers() {
        let body = Body::from("user_id\n7\n8\n");
        let p = parse_body(body, Format::Lines, Limits::NONE, IdType::Integer)
            .await
            .unwrap();
        assert_eq!(
            p.members.as_integers().unwrap().iter().collect::<Vec<_>>(),
            vec![7, 8]
        );
    }
}
