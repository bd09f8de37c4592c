//! The streaming upload parser against a reference model.
//!
//! The model reads the whole body at once with the simplest code that states
//! the text format: strip a leading BOM, split on `\n`, drop one `\r`, refuse
//! lines over 1 KiB, trim, then read the id or allow a header on line 1. The
//! streaming parser must agree with it on every body, however the body is cut
//! into chunks, which is where a streaming parser goes wrong.

use std::collections::BTreeSet;

use axum::body::{Body, Bytes};
use guestlist::ingest::csv::{Column, CsvOptions};
use guestlist::ingest::{Format, IngestError, Limits, parse_body};
use proptest::prelude::*;

const MAX_LINE: usize = 1024;

/// What the model concludes about a body: the ids, lines read as ids, or
/// the first refusal (compared by kind and line, not wording).
#[derive(Debug, PartialEq)]
enum Outcome {
    Ids { ids: BTreeSet<u64>, received: u64 },
    Invalid { line: u64 },
    TooLong { line: u64 },
    TooMany,
    Empty,
}

fn model(body: &[u8], max_audience: u64) -> Outcome {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut ids = BTreeSet::new();
    let mut received = 0;
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let line_no = i as u64 + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > MAX_LINE {
            return Outcome::TooLong { line: line_no };
        }
        let token = line.trim_ascii();
        if token.is_empty() {
            continue;
        }
        let canonical = token.iter().all(u8::is_ascii_digit) && (token == b"0" || token[0] != b'0');
        let id = std::str::from_utf8(token)
            .ok()
            .filter(|_| canonical)
            .and_then(|s| s.parse::<u64>().ok());
        match id {
            Some(id) => {
                received += 1;
                ids.insert(id);
                if ids.len() as u64 > max_audience {
                    return Outcome::TooMany;
                }
            }
            None if line_no == 1
                && (token[0].is_ascii_alphabetic() || b"_\"".contains(&token[0])) => {}
            None => return Outcome::Invalid { line: line_no },
        }
    }
    if received == 0 {
        return Outcome::Empty;
    }
    Outcome::Ids { ids, received }
}

fn outcome(result: Result<guestlist::ingest::Parsed, IngestError>) -> Outcome {
    match result {
        Ok(p) => {
            assert_eq!(
                p.received - p.duplicates,
                p.members.as_integers().unwrap().len(),
                "{p:?}"
            );
            Outcome::Ids {
                ids: p.members.as_integers().unwrap().iter().collect(),
                received: p.received,
            }
        }
        Err(IngestError::Invalid { line, .. }) => Outcome::Invalid { line },
        Err(IngestError::LineTooLong { line, .. }) => Outcome::TooLong { line },
        Err(IngestError::TooManyIds { .. }) => Outcome::TooMany,
        Err(IngestError::Empty) => Outcome::Empty,
        Err(other) => panic!("a text body cannot fail with {other:?}"),
    }
}

/// Streams `body` to the parser in the chunks `cuts` marks.
fn streamed(
    rt: &tokio::runtime::Runtime,
    body: &[u8],
    cuts: &[usize],
    format: Format,
    max_audience: u64,
) -> Result<guestlist::ingest::Parsed, IngestError> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
    points.extend([0, body.len()]);
    points.sort_unstable();
    points.dedup();
    let chunks: Vec<Result<Bytes, std::io::Error>> = points
        .windows(2)
        .map(|w| Ok(Bytes::copy_from_slice(&body[w[0]..w[1]])))
        .collect();
    let limits = Limits {
        max_bytes: u64::MAX,
        max_audience,
    };
    rt.block_on(parse_body(
        Body::from_stream(futures_util::stream::iter(chunks)),
        format,
        limits,
        guestlist::IdType::Integer,
    ))
}

/// An id as a line might spell it: mostly canonical, sometimes not.
fn token() -> impl Strategy<Value = String> {
    let id = prop_oneof![0u64..20, any::<u64>(), Just(u64::MAX)];
    prop_oneof![
        8 => id.prop_map(|n| n.to_string()),
        1 => (0u64..1000).prop_map(|n| format!("0{n}")),
        1 => (0u64..1000).prop_map(|n| format!("+{n}")),
        1 => (0u64..1000).prop_map(|n| format!("-{n}")),
        1 => Just("18446744073709551616".to_string()),
        1 => "[a-z_\"][a-z_]{0,8}",
        1 => "[0-9a-f\u{feff}.,é]{1,6}",
    ]
}

fn padding() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just(String::new()),
        3 => "[ \t]{1,50}",
        // Around the line limit, where off-by-ones live.
        1 => (1000usize..1030).prop_map(|n| " ".repeat(n)),
    ]
}

fn line() -> impl Strategy<Value = String> {
    (padding(), token(), padding(), any::<bool>(), 0u8..10).prop_map(
        |(before, token, after, crlf, blank)| {
            let end = if crlf { "\r\n" } else { "\n" };
            if blank == 0 {
                format!("{before}{end}")
            } else {
                format!("{before}{token}{after}{end}")
            }
        },
    )
}

fn text_body() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        proptest::option::of("[a-z_]{1,10}"),
        proptest::collection::vec(line(), 0..40),
        any::<bool>(),
    )
        .prop_map(|(bom, header, lines, last_newline)| {
            let mut body = String::new();
            if bom {
                body.push('\u{feff}');
            }
            if let Some(h) = header {
                body.push_str(&h);
                body.push_str("\r\n");
            }
            for l in lines {
                body.push_str(&l);
            }
            if !last_newline && body.ends_with('\n') {
                body.pop();
            }
            body.into_bytes()
        })
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(any::<usize>(), 0..12)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn the_streaming_parser_agrees_with_the_model_however_the_body_is_cut(
        body in text_body(),
        cuts in cuts(),
        max_audience in prop_oneof![Just(u64::MAX), 1u64..30],
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let got = outcome(streamed(&rt, &body, &cuts, Format::Lines, max_audience));
        prop_assert_eq!(got, model(&body, max_audience), "body {:?}", String::from_utf8_lossy(&body));
    }

    #[test]
    fn a_json_array_reads_the_same_however_the_body_is_cut(
        ids in proptest::collection::vec(any::<u64>(), 0..50),
        spaces in "[ \r\n\t]{0,3}",
        cuts in cuts(),
    ) {
        let body = format!("{spaces}[{}]{spaces}", ids.iter().map(u64::to_string).collect::<Vec<_>>().join(&format!(",{spaces}")));
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let parsed = streamed(&rt, body.as_bytes(), &cuts, Format::Json, u64::MAX).unwrap();
        prop_assert_eq!(parsed.received, ids.len() as u64);
        prop_assert_eq!(parsed.members.as_integers().unwrap().iter().collect::<BTreeSet<_>>(), ids.into_iter().collect::<BTreeSet<_>>());
    }

    #[test]
    fn a_csv_export_yields_exactly_its_id_column_however_it_is_quoted_and_cut(
        rows in proptest::collection::vec((any::<u64>(), proptest::collection::vec(csv_field(), 0..4), proptest::collection::vec(csv_field(), 0..4)), 1..30),
        column_by_name in any::<bool>(),
        crlf in any::<bool>(),
        bom in any::<bool>(),
        cuts in cuts(),
    ) {
        // Every row gets the same width: the ID sits after the widest
        // prefix of extra fields, padded with empty ones.
        let before = rows.iter().map(|(_, b, _)| b.len()).max().unwrap_or(0);
        let after = rows.iter().map(|(_, _, a)| a.len()).max().unwrap_or(0);
        let end = if crlf { "\r\n" } else { "\n" };
        let mut body = String::new();
        if bom {
            body.push('\u{feff}');
        }
        let mut header: Vec<String> = (0..before).map(|i| format!("before {i}")).collect();
        header.push("user, \"id\"".into());
        header.extend((0..after).map(|i| format!("after {i}")));
        body.push_str(&record(&header));
        body.push_str(end);
        for (id, b, a) in &rows {
            let mut fields: Vec<String> = b.clone();
            fields.resize(before, String::new());
            fields.push(id.to_string());
            let mut a = a.clone();
            a.resize(after, String::new());
            fields.extend(a);
            body.push_str(&record(&fields));
            body.push_str(end);
        }
        let column = if column_by_name {
            Column::Name("user, \"id\"".into())
        } else {
            Column::Number((before + 1).try_into().unwrap())
        };
        let format = Format::Csv(CsvOptions { header: Some(true), column: Some(column) });
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let parsed = streamed(&rt, body.as_bytes(), &cuts, format, u64::MAX)
            .unwrap_or_else(|e| panic!("{e}: {body:?}"));
        prop_assert_eq!(parsed.received, rows.len() as u64);
        prop_assert_eq!(
            parsed.members.as_integers().unwrap().iter().collect::<BTreeSet<_>>(),
            rows.iter().map(|(id, _, _)| *id).collect::<BTreeSet<_>>()
        );
    }
}

/// A field as exports hold them: plain, or with the characters that force
/// quoting (commas, quotes, line breaks) and some that do not.
fn csv_field() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9 @.]{0,12}", "[a-z,\"\r\n ;é]{0,12}",]
}

/// One CSV record as RFC 4180 writes it: a field is quoted when it holds a
/// comma, a quote or a line break, its quotes doubled.
fn record(fields: &[String]) -> String {
    fields
        .iter()
        .map(|f| {
            if f.contains([',', '"', '\r', '\n']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}
