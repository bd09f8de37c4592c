//! Fuzzes the upload parsers with arbitrary bytes.
//!
//! The first two input bytes choose a read size and an audience limit; the
//! rest is the body. Besides never panicking, every format (CSV with and
//! without a header and a chosen column) must give the same
//! answer whether the body arrives whole or in reads of that size, and an
//! accepted text body must mean exactly its ids: the export of what was read
//! reads back to the same audience.
#![no_main]

use std::io::{self, Read};

use guestlist::ingest::csv::{Column, CsvOptions};
use guestlist::ingest::{Format, Parsed, parse_reader};
use libfuzzer_sys::fuzz_target;

/// Hands out at most `size` bytes per read.
struct Chunked<'a> {
    rest: &'a [u8],
    size: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.size.min(self.rest.len()).min(out.len());
        out[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let [size, limit, body @ ..] = data else {
        return;
    };
    let size = usize::from(*size).max(1);
    // Mostly unlimited; sometimes a small limit, to reach the refusal.
    let max_audience = if *limit >= 16 {
        u64::MAX
    } else {
        u64::from(*limit)
    };
    let second = Column::Number(2.try_into().unwrap());
    let formats = [
        Format::Lines,
        Format::Json,
        Format::Csv(CsvOptions::default()),
        Format::Csv(CsvOptions {
            header: Some(true),
            column: Some(second),
        }),
    ];
    for format in formats {
        let whole = parse_reader(body, format.clone(), max_audience);
        let chunked = parse_reader(Chunked { rest: body, size }, format.clone(), max_audience);
        assert_eq!(whole, chunked, "{format:?} in reads of {size}");
        if let (Format::Lines, Ok(parsed)) = (format, &whole) {
            round_trip(parsed);
        }
    }
});

fn round_trip(parsed: &Parsed) {
    assert_eq!(parsed.received - parsed.duplicates, parsed.members.as_integers().unwrap().len());
    let export: String = parsed.members.as_integers().unwrap().iter().map(|id| format!("{id}\n")).collect();
    let again =
        parse_reader(export.as_bytes(), Format::Lines, u64::MAX).expect("an export reads back");
    assert_eq!(again.members, parsed.members);
    assert_eq!(again.duplicates, 0);
}
