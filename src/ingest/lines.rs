//! The text format: one user id per line, as it streams in.
//!
//! The parser is fed chunks as they arrive, so nothing may depend on where a
//! chunk ends: a BOM, a CRLF or an id split over two chunks reads the same as
//! in one. A line is judged only once it is whole, and trimmed before its id
//! is read; its length is bounded ([`MAX_LINE`]) so a body without newlines
//! cannot grow the line buffer past that.

use super::{Bom, Collector, IngestError, Parsed};
use crate::domain::{self, BadUserId};
use crate::ids::IdType;

/// Longest line accepted, its `\n` or `\r\n` excluded. Room for an id with
/// generous padding; anything longer is not one id per line.
pub const MAX_LINE: usize = 1024;

/// Reads the lines of one body. Feed it chunks, then [`Lines::finish`].
pub struct Lines {
    parsed: Collector,
    /// The current line so far (a trailing `\r` included), at most
    /// `MAX_LINE + 1` bytes.
    line: Vec<u8>,
    line_no: u64,
    bom: Bom,
}

impl Lines {
    pub fn new(max_audience: u64, id_type: IdType) -> Lines {
        Lines {
            parsed: Collector::new(id_type, max_audience),
            line: Vec::with_capacity(64),
            line_no: 1,
            bom: Bom::default(),
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), IngestError> {
        let mut bom = std::mem::take(&mut self.bom);
        let result = bom.feed(chunk, |bytes| self.feed_lines(bytes));
        self.bom = bom;
        result
    }

    fn feed_lines(&mut self, mut chunk: &[u8]) -> Result<(), IngestError> {
        while let Some(end) = chunk.iter().position(|&b| b == b'\n') {
            self.extend(&chunk[..end])?;
            self.finish_line()?;
            chunk = &chunk[end + 1..];
        }
        self.extend(chunk)
    }

    /// Appends to the current line, refusing it as soon as it cannot fit.
    fn extend(&mut self, bytes: &[u8]) -> Result<(), IngestError> {
        if self.line.len() + bytes.len() > MAX_LINE + 1 {
            return Err(self.too_long());
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn too_long(&self) -> IngestError {
        IngestError::LineTooLong {
            line: self.line_no,
            limit: MAX_LINE,
        }
    }

    pub fn finish(mut self) -> Result<Parsed, IngestError> {
        let mut bom = std::mem::take(&mut self.bom);
        bom.finish(|bytes| self.feed_lines(bytes))?;
        self.finish_line()?;
        self.parsed.finish()
    }

    fn finish_line(&mut self) -> Result<(), IngestError> {
        let raw = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
        if raw.len() > MAX_LINE {
            return Err(self.too_long());
        }
        let text = raw.trim_ascii();
        let id_type = self.parsed.id_type();
        let result = if text.is_empty() {
            Ok(())
        } else if id_type != IdType::Integer {
            // Every line is an ID: only the integer type guesses a header.
            match id_type.read(text) {
                Ok(key) => self.parsed.push(key),
                Err(why) => Err(self.invalid(why.message(text))),
            }
        } else {
            match domain::parse_user_id(text) {
                Ok(id) => self.parsed.push_int(id),
                Err(BadUserId::NotANumber) if looks_like_header(text) => {
                    if self.line_no == 1 {
                        Ok(())
                    } else {
                        Err(self.invalid(format!(
                            "{} (a header is allowed only on line 1)",
                            BadUserId::NotANumber.message(text)
                        )))
                    }
                }
                Err(why) => Err(self.invalid(why.message(text))),
            }
        };
        self.line.clear();
        self.line_no += 1;
        result
    }

    fn invalid(&self, message: String) -> IngestError {
        IngestError::Invalid {
            line: self.line_no,
            message,
        }
    }
}

/// A CSV column name or a quoted one; anything else non-numeric is a typo.
pub(super) fn looks_like_header(text: &[u8]) -> bool {
    text[0].is_ascii_alphabetic() || text[0] == b'_' || text[0] == b'"'
}
