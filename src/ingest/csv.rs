//! CSV as systems export it (RFC 4180): quoted fields, embedded commas,
//! quotes and line breaks, CRLF, several columns, a header.
//!
//! The header is declared, never guessed ([`CsvOptions::header`]); the one
//! exception keeps single-column files working as they always have: with no
//! declaration, a lone non-numeric first line is taken as a column name.
//! The ID column is named or numbered ([`Column`]); a file of more than one
//! column without one is refused rather than read from a guessed column.
//!
//! Like [`super::lines`], the parser is fed chunks as they arrive and nothing
//! depends on where a chunk ends. A record (one row, possibly spanning lines
//! inside quotes) is bounded by [`MAX_RECORD`] bytes and [`MAX_FIELDS`]
//! fields, so a body that never ends a row cannot grow the buffers past that.
//! Errors name the line a record starts on.

use std::num::NonZeroUsize;

use csv_core::{ReadRecordResult, Reader};

use super::{Bom, Collector, IngestError, Parsed};
use crate::domain::{self, BadUserId, quoted};
use crate::ids::IdType;

/// Longest record accepted, in bytes of field text: room for a wide export
/// row; anything longer is not a row of a user list.
pub const MAX_RECORD: usize = 64 * 1024;

/// Most fields a record may have.
pub const MAX_FIELDS: usize = 1024;

/// Which column holds the user IDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    /// The column's number, counted from 1 as spreadsheets do.
    Number(NonZeroUsize),
    /// The column's name in the header (which must then be declared).
    Name(String),
}

impl Column {
    /// Reads `?column=` / `--column`: a number from 1 is a position,
    /// anything else a header name.
    pub fn parse(text: &str) -> Result<Column, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("column is empty: give a header name or a number from 1".into());
        }
        if text.bytes().all(|b| b.is_ascii_digit()) {
            return text
                .parse::<NonZeroUsize>()
                .map(Column::Number)
                .map_err(|_| format!("column {text} is not a number from 1"));
        }
        Ok(Column::Name(text.to_string()))
    }
}

impl std::fmt::Display for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Column::Number(n) => write!(f, "{n}"),
            Column::Name(name) => write!(f, "{}", quoted(name.as_bytes())),
        }
    }
}

/// How to read one CSV body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CsvOptions {
    /// `Some(true)`: line 1 is a header; `Some(false)`: it is data; `None`:
    /// undeclared, where only a single-column file's non-numeric first line
    /// is taken as a header.
    pub header: Option<bool>,
    /// The ID column; `None` reads a single-column file.
    pub column: Option<Column>,
}

impl CsvOptions {
    /// Refuses options that cannot work before any of the body is read.
    pub fn check(&self) -> Result<(), String> {
        match (&self.column, self.header) {
            (Some(Column::Name(name)), header) if header != Some(true) => Err(format!(
                "column {} is a header name, but no header is declared: declare it \
                 (?header=true, or Content-Type: text/csv; header=present) or give the column's number",
                quoted(name.as_bytes())
            )),
            _ => Ok(()),
        }
    }
}

/// RFC 4180 quoting, byte by byte: see [`Csv::check_quotes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quotes {
    FieldStart,
    /// In a field that did not start with a quote: quotes in it are text.
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: the field's end, or the first of a
    /// doubled quote.
    ClosingQuote,
}

/// Reads the records of one body. Feed it chunks, then [`Csv::finish`].
pub struct Csv {
    reader: Reader,
    options: CsvOptions,
    parsed: Collector,
    bom: Bom,
    /// The current record's field text so far and its field ends, as
    /// `csv_core` writes them.
    record: Vec<u8>,
    ends: Vec<usize>,
    /// Bytes and field ends of the current record written so far.
    out_len: usize,
    ends_len: usize,
    /// Whether a record is in progress (some of it has been read).
    in_record: bool,
    /// Whether csv_core has been given input yet.
    primed: bool,
    /// Where the bytes given to csv_core stand in RFC 4180's quoting.
    quotes: Quotes,
    /// Whether the last byte read was a CR, not yet counted as a line.
    after_cr: bool,
    /// Whether the quoted field being read holds a comma or a line break:
    /// only such a field can swallow fields or rows if its quote is
    /// misplaced.
    crossed: bool,
    /// The line the next unread byte is on, and the line the current
    /// record started on.
    line: u64,
    record_line: u64,
    /// Records read so far, header included.
    records: u64,
    /// The ID column's index once settled by the header or the options.
    index: Option<usize>,
}

impl Csv {
    pub fn new(options: CsvOptions, max_audience: u64, id_type: IdType) -> Csv {
        let index = match &options.column {
            Some(Column::Number(n)) => Some(n.get() - 1),
            _ => None,
        };
        Csv {
            reader: Reader::new(),
            options,
            parsed: Collector::new(id_type, max_audience),
            bom: Bom::default(),
            record: vec![0; 1024],
            ends: vec![0; 16],
            out_len: 0,
            ends_len: 0,
            in_record: false,
            primed: false,
            quotes: Quotes::FieldStart,
            after_cr: false,
            crossed: false,
            line: 1,
            record_line: 1,
            records: 0,
            index,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), IngestError> {
        let mut bom = std::mem::take(&mut self.bom);
        let result = bom.feed(chunk, |bytes| self.feed_records(bytes, false));
        self.bom = bom;
        result
    }

    pub fn finish(mut self) -> Result<Parsed, IngestError> {
        let mut bom = std::mem::take(&mut self.bom);
        bom.finish(|bytes| self.feed_records(bytes, false))?;
        self.feed_records(&[], true)?;
        self.parsed.finish()
    }

    /// Reads as many records from `input` as it holds; `at_end` (with an
    /// empty `input`) says the body ended.
    fn feed_records(&mut self, mut input: &[u8], at_end: bool) -> Result<(), IngestError> {
        // An empty input tells csv_core the data ended (it then hands out a
        // last record that had no line break), so an empty chunk in the
        // middle of a body must never reach it.
        if input.is_empty() && !at_end {
            return Ok(());
        }
        // csv_core hands out an unterminated quoted field as the last
        // record; it must not be read as one.
        if at_end && self.quotes == Quotes::Quoted {
            return Err(
                self.layout("a quoted field is never closed: the body ends inside it".into())
            );
        }
        loop {
            if !self.in_record {
                // Line breaks between records are skipped here, not by
                // csv_core, so a record's first line is known exactly.
                let skip = input
                    .iter()
                    .take_while(|&&b| b == b'\n' || b == b'\r')
                    .count();
                self.count_lines(&input[..skip]);
                input = &input[skip..];
                if input.is_empty() && !at_end {
                    return Ok(());
                }
                // The byte after a CR is not an LF (those were skipped):
                // the CR was a line break of its own.
                self.record_line = self.line + u64::from(self.after_cr);
                self.in_record = true;
            }
            // csv_core drops a BOM at the start of the first input it is
            // given, wherever in the body that is; the body's own BOM is
            // already gone, so its first call gets one byte, too few to
            // take for one.
            let take = if self.primed {
                input.len()
            } else {
                input.len().min(1)
            };
            self.primed = true;
            let (result, nin, nout, nend) = self.reader.read_record(
                &input[..take],
                &mut self.record[self.out_len..],
                &mut self.ends[self.ends_len..],
            );
            self.count_lines(&input[..nin]);
            self.check_quotes(&input[..nin])?;
            input = &input[nin..];
            self.out_len += nout;
            self.ends_len += nend;
            match result {
                ReadRecordResult::InputEmpty if input.is_empty() => return Ok(()),
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => self.grow_record()?,
                ReadRecordResult::OutputEndsFull => self.grow_ends()?,
                ReadRecordResult::Record => {
                    self.in_record = false;
                    let result = self.take_record();
                    (self.out_len, self.ends_len) = (0, 0);
                    result?;
                }
                ReadRecordResult::End => return Ok(()),
            }
        }
    }

    /// csv_core never refuses input: a stray quote opens a field that runs
    /// on over the following fields and rows, and their IDs would silently
    /// vanish into it. This follows the quoting of every byte csv_core
    /// reads and refuses a closing quote that does not end its field when
    /// the quoted part took in a comma or a line break. A quoted word
    /// followed by text (`"Big" Jim`) swallowed nothing and reads as
    /// csv_core reads it.
    fn check_quotes(&mut self, consumed: &[u8]) -> Result<(), IngestError> {
        for &b in consumed {
            let ends_field = matches!(b, b',' | b'\r' | b'\n');
            self.quotes = match (self.quotes, b) {
                (Quotes::FieldStart, b'"') => {
                    self.crossed = false;
                    Quotes::Quoted
                }
                (Quotes::FieldStart | Quotes::Unquoted, _) if ends_field => Quotes::FieldStart,
                (Quotes::FieldStart | Quotes::Unquoted, _) => Quotes::Unquoted,
                (Quotes::Quoted, b'"') => Quotes::ClosingQuote,
                (Quotes::Quoted, _) => {
                    self.crossed |= ends_field;
                    Quotes::Quoted
                }
                (Quotes::ClosingQuote, b'"') => Quotes::Quoted,
                (Quotes::ClosingQuote, _) if ends_field => Quotes::FieldStart,
                (Quotes::ClosingQuote, _) if !self.crossed => Quotes::Unquoted,
                (Quotes::ClosingQuote, _) => {
                    return Err(self.layout(
                        "a quoted field goes on after its closing quote (is a quote left open?): \
                         quote a field that holds quotes, commas or line breaks whole, doubling \
                         its quotes, as in \"say \"\"hi\"\"\""
                            .into(),
                    ));
                }
            };
        }
        Ok(())
    }

    /// Counts line breaks as csv_core reads them: LF, CRLF, or a lone CR
    /// (old Mac exports). A CR is counted once the next byte shows it was
    /// not the first half of a CRLF.
    fn count_lines(&mut self, consumed: &[u8]) {
        for &b in consumed {
            match b {
                b'\n' => self.line += 1,
                _ if self.after_cr => self.line += 1,
                _ => {}
            }
            self.after_cr = b == b'\r';
        }
    }

    fn grow_record(&mut self) -> Result<(), IngestError> {
        // One byte of room past the limit, so a row of exactly the limit
        // fits and one byte more is caught.
        if self.record.len() > MAX_RECORD {
            return Err(self.too_long());
        }
        let len = (self.record.len() * 2).min(MAX_RECORD + 1);
        self.record.resize(len, 0);
        Ok(())
    }

    fn grow_ends(&mut self) -> Result<(), IngestError> {
        if self.ends.len() >= MAX_FIELDS {
            return Err(self.layout(format!("the row has more than {MAX_FIELDS} fields")));
        }
        let len = (self.ends.len() * 2).min(MAX_FIELDS);
        self.ends.resize(len, 0);
        Ok(())
    }

    fn too_long(&self) -> IngestError {
        self.layout(format!(
            "the row is longer than {MAX_RECORD} bytes (is a quote left open?)"
        ))
    }

    /// A bad ID in the chosen column.
    fn invalid(&self, message: String) -> IngestError {
        IngestError::Invalid {
            line: self.record_line,
            message,
        }
    }

    /// A row that cannot be read as asked.
    fn layout(&self, message: String) -> IngestError {
        IngestError::Layout {
            line: self.record_line,
            message,
        }
    }

    /// The current record's fields.
    fn fields(&self) -> impl Iterator<Item = &[u8]> {
        let ends = &self.ends[..self.ends_len];
        ends.iter().enumerate().map(|(i, &end)| {
            let start = if i == 0 { 0 } else { ends[i - 1] };
            &self.record[start..end]
        })
    }

    /// Judges one whole record: the header, a blank line, or a row whose ID
    /// column is read.
    fn take_record(&mut self) -> Result<(), IngestError> {
        let count = self.ends_len;
        let first = self.records == 0;
        if self.out_len > MAX_RECORD {
            return Err(self.too_long());
        }
        // A line of nothing but white space is blank, as in the text format,
        // and so is a row of empty fields (`,,,`), which spreadsheets leave
        // at the end of an export.
        // A declared header is the first row whatever it holds: skipping an
        // empty one would make the first data row the header.
        let header_row = first && self.options.header == Some(true);
        if !header_row && self.fields().all(|f| f.trim_ascii().is_empty()) {
            return Ok(());
        }
        self.records += 1;
        if first && self.options.header == Some(true) {
            return self.take_header();
        }
        let index = match self.index {
            Some(index) => index,
            None if count == 1 => 0,
            None => {
                return Err(self.layout(format!(
                    "the row has {count} fields: name the ID column (?column= in the API, \
                     --column in the CLI) by its header name or its number from 1"
                )));
            }
        };
        let Some(field) = self.fields().nth(index) else {
            return Err(self.layout(format!(
                "the row has {count} field{}, so no column {}",
                if count == 1 { "" } else { "s" },
                index + 1
            )));
        };
        let text = field.trim_ascii();
        if text.is_empty() {
            return Err(self.invalid(format!("column {} is empty", index + 1)));
        }
        let id_type = self.parsed.id_type();
        if id_type != IdType::Integer {
            // Other types have no header rule to keep: a header is declared.
            return match id_type.read(text) {
                Ok(key) => self.parsed.push(key),
                Err(why) => {
                    let mut message = why.message(text);
                    if first && self.options.header.is_none() {
                        message.push_str(
                            " (if the first row is a header, declare it: ?header=true, or --header in the CLI)",
                        );
                    }
                    Err(self.invalid(message))
                }
            };
        }
        match domain::parse_user_id(text) {
            Ok(id) => self.parsed.push_int(id),
            // Today's rule for single-column files, kept for compatibility:
            // an undeclared, non-numeric first line is a column name.
            Err(BadUserId::NotANumber)
                if first
                    && count == 1
                    && self.options.header.is_none()
                    && super::lines::looks_like_header(text) =>
            {
                Ok(())
            }
            Err(why) => {
                let mut message = why.message(text);
                let undeclared = self.options.header.is_none() && why == BadUserId::NotANumber;
                if undeclared && first {
                    message.push_str(
                        " (if the first row is a header, declare it: ?header=true, or --header in the CLI)",
                    );
                } else if undeclared && count == 1 && super::lines::looks_like_header(text) {
                    message.push_str(" (a header is allowed only on line 1)");
                }
                Err(self.invalid(message))
            }
        }
    }

    /// Reads the declared header: settles a named column's index, and
    /// refuses a file whose ID column cannot be told.
    fn take_header(&mut self) -> Result<(), IngestError> {
        let count = self.ends_len;
        match &self.options.column {
            Some(Column::Name(name)) => {
                let matches: Vec<usize> = self
                    .fields()
                    .enumerate()
                    .filter(|(_, f)| f.trim_ascii() == name.as_bytes())
                    .map(|(i, _)| i)
                    .collect();
                match matches[..] {
                    [index] => self.index = Some(index),
                    [] => {
                        let names: Vec<String> = self
                            .fields()
                            .take(10)
                            .map(|f| quoted(f.trim_ascii()))
                            .collect();
                        let more = if count > 10 { ", …" } else { "" };
                        return Err(self.layout(format!(
                            "the header has no column {}; its columns are {}{more}",
                            quoted(name.as_bytes()),
                            names.join(", ")
                        )));
                    }
                    [a, b, ..] => {
                        return Err(self.layout(format!(
                            "the header names column {} twice (columns {} and {}): give the column's number",
                            quoted(name.as_bytes()),
                            a + 1,
                            b + 1
                        )));
                    }
                }
            }
            Some(Column::Number(n)) if n.get() > count => {
                return Err(self.layout(format!(
                    "the header has {count} column{}, so no column {n}",
                    if count == 1 { "" } else { "s" }
                )));
            }
            Some(Column::Number(_)) => {}
            None if count > 1 => {
                return Err(self.layout(format!(
                    "the header has {count} columns: name the ID column (?column= in the API, \
                     --column in the CLI) by its header name or its number from 1"
                )));
            }
            None => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{Format, parse_reader};

    fn read(body: &str, header: Option<bool>, column: Option<&str>) -> Result<Parsed, IngestError> {
        let options = CsvOptions {
            header,
            column: column.map(|c| Column::parse(c).unwrap()),
        };
        options.check().map_err(IngestError::Body)?;
        parse_reader(body.as_bytes(), Format::Csv(options), u64::MAX)
    }

    fn ids(p: Parsed) -> Vec<u64> {
        p.members.as_integers().unwrap().iter().collect()
    }

    fn refusal(e: IngestError) -> (u64, String) {
        match e {
            IngestError::Invalid { line, message } | IngestError::Layout { line, message } => {
                (line, message)
            }
            other => panic!("expected a refused line, got {other:?}"),
        }
    }

    /// An export as a CRM writes it: BOM, CRLF, quoted fields holding
    /// commas, quotes and a line break.
    const EXPORT: &str = "\u{feff}name,\"user id\",email,notes,plan\r\n\
        \"Doe, Jane\",17,jane@example.com,\"said \"\"hi\"\"\",pro\r\n\
        Bob,42,bob@example.com,\"two\r\nlines\",free\r\n\
        \"O'Neil, Ann\",\" 7 \",ann@example.com,,pro\r\n";

    #[test]
    fn a_column_is_read_by_name_or_number_from_a_quoted_export() {
        for column in ["user id", "2"] {
            let p = read(EXPORT, Some(true), Some(column)).unwrap();
            assert_eq!(ids(p), vec![7, 17, 42], "column {column}");
        }
    }

    #[test]
    fn errors_name_the_line_a_row_starts_on() {
        let body = "name,id\n\"a\nb\nc\",1\nx,12a\n";
        let (line, message) = refusal(read(body, Some(true), Some("id")).unwrap_err());
        assert_eq!((line, message.as_str()), (5, "\"12a\" is not a user id"));
        let body = "id\n\n\n1\n\"x\"\"\"\n";
        let (line, _) = refusal(read(body, Some(true), None).unwrap_err());
        assert_eq!(line, 5);
    }

    #[test]
    fn several_columns_need_a_chosen_one() {
        let (line, message) = refusal(read("1,2\n3,4\n", None, None).unwrap_err());
        assert_eq!(line, 1);
        assert!(
            message.contains("2 fields") && message.contains("column"),
            "{message}"
        );
        let (line, message) = refusal(read("a,b\n1,2\n", Some(true), None).unwrap_err());
        assert_eq!(line, 1);
        assert!(message.contains("header has 2 columns"), "{message}");
        assert_eq!(
            ids(read("1,2\n3,4\n", None, Some("2")).unwrap()),
            vec![2, 4]
        );
    }

    #[test]
    fn a_missing_or_ambiguous_column_is_refused_at_the_header() {
        let (line, message) = refusal(read("a,b\n1,2\n", Some(true), Some("id")).unwrap_err());
        assert_eq!(line, 1);
        assert_eq!(
            message,
            "the header has no column \"id\"; its columns are \"a\", \"b\""
        );
        let (_, message) = refusal(read("id,x,id\n1,2,3\n", Some(true), Some("id")).unwrap_err());
        assert!(message.contains("columns 1 and 3"), "{message}");
        let (_, message) = refusal(read("a,b\n1,2\n", Some(true), Some("3")).unwrap_err());
        assert_eq!(message, "the header has 2 columns, so no column 3");
        let (line, message) = refusal(read("a,b\n1,2\n3\n", Some(true), Some("2")).unwrap_err());
        assert_eq!(
            (line, message.as_str()),
            (3, "the row has 1 field, so no column 2")
        );
    }

    #[test]
    fn a_named_column_needs_a_declared_header() {
        let options = CsvOptions {
            header: None,
            column: Some(Column::Name("id".into())),
        };
        assert!(
            options
                .check()
                .unwrap_err()
                .contains("no header is declared")
        );
    }

    #[test]
    fn a_header_is_declared_not_guessed_except_a_lone_column_name() {
        // Today's rule for a single column: a name on line 1 is a header.
        assert_eq!(ids(read("user_id\n5\n", None, None).unwrap()), vec![5]);
        // Declared absent, the same line is data, and refused.
        let (line, _) = refusal(read("user_id\n5\n", Some(false), None).unwrap_err());
        assert_eq!(line, 1);
        // Declared present, a numeric first line is still the header.
        assert_eq!(ids(read("9\n5\n", Some(true), None).unwrap()), vec![5]);
        // Several columns, undeclared: no guessing; the refusal says how.
        let (_, message) = refusal(read("name,id\nx,5\n", None, Some("2")).unwrap_err());
        assert!(message.contains("declare it"), "{message}");
    }

    #[test]
    fn empty_id_fields_blank_lines_and_empty_bodies() {
        let (line, message) = refusal(read("a,b\nx,\n", Some(true), Some("b")).unwrap_err());
        assert_eq!((line, message.as_str()), (2, "column 2 is empty"));
        assert_eq!(ids(read("1\n \n\r\n2", None, None).unwrap()), vec![1, 2]);
        assert!(matches!(read("", None, None), Err(IngestError::Empty)));
        assert!(matches!(
            read("a,b\r\n", Some(true), Some("a")),
            Err(IngestError::Empty)
        ));
    }

    #[test]
    fn rows_are_bounded_however_long_the_body() {
        let open_quote = format!("1\n\"{}", "x".repeat(MAX_RECORD + 10));
        let (line, message) = refusal(read(&open_quote, None, None).unwrap_err());
        assert_eq!(line, 2);
        assert!(message.contains("longer than"), "{message}");
        let wide = vec!["1"; MAX_FIELDS + 1].join(",");
        let (_, message) = refusal(read(&wide, None, Some("1")).unwrap_err());
        assert!(message.contains("more than 1024 fields"), "{message}");
        let widest = vec!["1"; MAX_FIELDS].join(",");
        assert_eq!(ids(read(&widest, None, Some("1024")).unwrap()), vec![1]);
    }

    #[test]
    fn content_types_declare_the_header() {
        let csv = |ct| Format::from_content_type(ct).unwrap();
        assert_eq!(
            csv("text/csv; charset=utf-8; header=present"),
            Ok(Format::Csv(CsvOptions {
                header: Some(true),
                column: None
            }))
        );
        assert_eq!(
            csv("Text/CSV;Header=\"absent\""),
            Ok(Format::Csv(CsvOptions {
                header: Some(false),
                column: None
            }))
        );
        assert!(
            csv("text/csv; header=yes")
                .unwrap_err()
                .contains("present or absent")
        );
        assert_eq!(csv("text/plain"), Ok(Format::Lines));
        assert!(Format::from_content_type("text/html").is_none());
    }

    #[test]
    fn only_the_body_s_first_bom_is_dropped() {
        let (line, message) = refusal(read("\n\u{feff}7\n", None, None).unwrap_err());
        assert_eq!(line, 2);
        assert!(
            message.starts_with(r#""\u{feff}7" is not a user id"#),
            "{message}"
        );
        assert_eq!(ids(read("\u{feff}7\n", None, None).unwrap()), vec![7]);
    }

    #[test]
    fn a_stray_quote_is_refused_not_left_to_swallow_rows() {
        // The quote before "Doe" is never closed where its field ends: read
        // leniently, rows 2 to 4 would become one field and 17 and 42 vanish.
        let body = "name,id\n\"Doe, Jane,17\nBob,42\n\"Ann\",7\n";
        let e = read(body, Some(true), Some("id")).unwrap_err();
        assert!(matches!(e, IngestError::Layout { line: 2, .. }), "{e:?}");
        assert!(
            e.to_string().contains("goes on after its closing quote"),
            "{e}"
        );
        let e = read("id\n1\n\"2\n3\n", Some(true), None).unwrap_err();
        assert_eq!(
            e,
            IngestError::Layout {
                line: 3,
                message: "a quoted field is never closed: the body ends inside it".into()
            }
        );
        // Doubled quotes, quotes inside an unquoted field, and a quoted word
        // followed by text, swallow nothing.
        let body = "id,note\n1,\"say \"\"hi\"\"\"\n2,5\" screen\n3,\"Big\" Jim\n";
        assert_eq!(
            ids(read(body, Some(true), Some("id")).unwrap()),
            vec![1, 2, 3]
        );
    }

    #[test]
    fn line_numbers_count_lone_cr_and_crlf_breaks_alike() {
        for (body, line) in [
            ("id,n\r1,a\r12a,b\r", 3),
            ("id,n\r\n1,a\r\n12a,b\r\n", 3),
            // A blank line, and a line break inside quotes, count too.
            ("id,n\r\r1,\"x\ry\"\r12a,z\r", 5),
            ("id,n\r\n\r\n1,\"x\r\ny\"\r\n12a,z\r\n", 5),
        ] {
            let (got, _) = refusal(read(body, Some(true), Some("1")).unwrap_err());
            assert_eq!(got, line, "{body:?}");
        }
    }

    #[test]
    fn a_row_may_hold_exactly_the_limit() {
        // Field text only: the comma is not part of it.
        let pad = "x".repeat(MAX_RECORD - 1);
        assert_eq!(
            ids(read(&format!("7,{pad}\n"), None, Some("1")).unwrap()),
            vec![7]
        );
        let e = read(&format!("7,{pad}x\n"), None, Some("1")).unwrap_err();
        assert!(e.to_string().contains("longer than 65536 bytes"), "{e}");
    }

    #[test]
    fn rows_of_empty_fields_are_blank_but_a_declared_header_is_the_first_row() {
        assert_eq!(
            ids(read("a,b\n1,x\n,\n , \n", Some(true), Some("a")).unwrap()),
            vec![1]
        );
        // An empty header row is still the header: 17 is data, not names.
        assert_eq!(
            ids(read(",\n17,a\n42,b\n", Some(true), Some("1")).unwrap()),
            vec![17, 42]
        );
    }

    #[test]
    fn columns_parse_as_numbers_from_one_or_names() {
        assert_eq!(
            Column::parse("3"),
            Ok(Column::Number(NonZeroUsize::new(3).unwrap()))
        );
        assert_eq!(Column::parse(" email "), Ok(Column::Name("email".into())));
        assert!(Column::parse("0").is_err());
        assert!(Column::parse(" ").is_err());
    }
}
