//! `guestlist audience replace|add|remove|export`: files of IDs streamed to
//! and from the server, never read whole into memory. (`versions` and
//! `rollback` are in [`super::versions`].)

use std::path::Path;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use super::api::{Api, TRANSFER_TIMEOUT};
use super::error::{CliError, Exit};
use super::output::print_json;
use clap::ValueEnum;

use crate::config::{AudienceCmd, ExportFormat, InputFormat, UploadArgs};

#[derive(Clone, Copy)]
enum Change {
    Replace,
    Add,
    Remove,
}

pub async fn run(api: &Api, cmd: AudienceCmd) -> Result<Exit, CliError> {
    let (change, args) = match cmd {
        AudienceCmd::Export { campaign, format } => return export(api, &campaign, format).await,
        AudienceCmd::Versions { campaign } => return super::versions::list(api, &campaign).await,
        AudienceCmd::Rollback { campaign, version } => {
            return super::versions::rollback(api, &campaign, version).await;
        }
        AudienceCmd::Replace(args) => (Change::Replace, args),
        AudienceCmd::Add(args) => (Change::Add, args),
        AudienceCmd::Remove(args) => (Change::Remove, args),
    };
    let (method, op) = match change {
        Change::Replace => (Method::PUT, ""),
        Change::Add => (Method::POST, "/add"),
        Change::Remove => (Method::POST, "/remove"),
    };
    let format = input_format(&args)?;
    let query = upload_query(&args);
    let path = format!("/v1/campaigns/{}/audience{op}{query}", args.campaign);
    let body = upload(api, method, &path, &args, format).await?;
    if args.dry_run && body["dry_run"] != true {
        // A server that predates dry runs ignores the query and publishes.
        return Err(CliError::no_answer(format!(
            "the server does not know dry runs and APPLIED the change: {}",
            summary(&args.campaign, change, &body)
        )));
    }
    if api.json {
        print_json(&body);
    } else if args.dry_run {
        println!("{}", dry_run_summary(&args.campaign, &body));
    } else {
        println!("{}", summary(&args.campaign, change, &body));
    }
    Ok(Exit::Success)
}

/// One line on what changed. The distinct IDs of the file are `received -
/// duplicates`; those the change did not touch were already there (add) or
/// absent (remove).
fn summary(campaign: &str, change: Change, body: &Value) -> String {
    let n = |k: &str| body[k].as_u64();
    let tail = format!(
        "audience size {}, version {}",
        body["audience_size"], body["version"]
    );
    let distinct = n("received").zip(n("duplicates")).map(|(r, d)| r - d);
    let repeated = match n("duplicates") {
        Some(d) if d > 0 => format!(" ({d} repeated in the file)"),
        _ => String::new(),
    };
    match change {
        Change::Replace => format!(
            "{campaign}: {tail}; {} IDs received{repeated}",
            n("received").map_or("?".into(), |r| r.to_string()),
        ),
        Change::Add => {
            let added = n("added").unwrap_or(0);
            let already = distinct.map_or(String::new(), |d| {
                format!(", {} already present", d.saturating_sub(added))
            });
            format!("{campaign}: added {added} IDs{already}{repeated}; {tail}")
        }
        Change::Remove => {
            let removed = n("removed").unwrap_or(0);
            let absent = distinct.map_or(String::new(), |d| {
                format!(", {} not in the audience", d.saturating_sub(removed))
            });
            format!("{campaign}: removed {removed} IDs{absent}{repeated}; {tail}")
        }
    }
}

/// What a dry run would do, on a first line, then a sample of each side.
fn dry_run_summary(campaign: &str, body: &Value) -> String {
    let n = |k: &str| body[k].as_u64().unwrap_or(0);
    let mut text = format!(
        "{campaign} (dry run, nothing changed): would add {} IDs and remove {}; \
         audience size {} -> {} (version {})",
        n("would_add"),
        n("would_remove"),
        n("current_size"),
        n("new_size"),
        n("version"),
    );
    for (key, label, total) in [
        ("would_add_sample", "would add", n("would_add")),
        ("would_remove_sample", "would remove", n("would_remove")),
    ] {
        let ids: Vec<String> = body[key]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .map(|id| id.as_str().map_or_else(|| id.to_string(), str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if ids.is_empty() {
            continue;
        }
        let more = total.saturating_sub(ids.len() as u64);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        text.push_str(&format!("\n  {label}: {}{more}", ids.join(", ")));
    }
    text
}

/// The upload's format: as given; csv when `--header` or `--column` asks
/// for it; else `.json` → json and `.csv` → csv (said on stderr, since the
/// name alone changes how the file is read), anything else → lines.
fn input_format(args: &UploadArgs) -> Result<InputFormat, CliError> {
    let csv_options = args.header || args.column.is_some();
    match args.input_format {
        Some(format) if csv_options && format != InputFormat::Csv => {
            return Err(CliError::usage(format!(
                "--header and --column read CSV files; they do not go with --input-format {}",
                format
                    .to_possible_value()
                    .map(|v| v.get_name().to_string())
                    .unwrap_or_default()
            )));
        }
        Some(format) => return Ok(format),
        None if csv_options => return Ok(InputFormat::Csv),
        None => {}
    }
    let extension = Path::new(&args.file).extension();
    let is = |ext: &str| extension.is_some_and(|e| e.eq_ignore_ascii_case(ext));
    let (format, name, ext) = if is("json") {
        (InputFormat::Json, "a JSON array of IDs", "json")
    } else if is("csv") {
        (InputFormat::Csv, "CSV", "csv")
    } else {
        return Ok(InputFormat::Lines);
    };
    eprintln!(
        "reading {} as {name} because of its .{ext} extension \
         (--input-format lines reads it as one ID per line)",
        args.file
    );
    Ok(format)
}

fn content_type(format: InputFormat) -> &'static str {
    match format {
        InputFormat::Lines => "text/plain",
        InputFormat::Csv => "text/csv",
        InputFormat::Json => "application/json",
    }
}

/// The query string of an upload: the dry run and the CSV options.
fn upload_query(args: &UploadArgs) -> String {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    if args.dry_run {
        pairs.push(("dry_run", "true".into()));
    }
    if args.header {
        pairs.push(("header", "true".into()));
    }
    if let Some(column) = &args.column {
        pairs.push(("column", column.clone()));
    }
    if pairs.is_empty() {
        return String::new();
    }
    let encoded = serde_urlencoded::to_string(&pairs).expect("pairs of strings encode");
    format!("?{encoded}")
}

/// Streams a file (or stdin, for `-`) to the server with a progress bar of
/// bytes and IDs per second.
async fn upload(
    api: &Api,
    method: Method,
    path: &str,
    args: &UploadArgs,
    format: InputFormat,
) -> Result<Value, CliError> {
    let file = args.file.as_str();
    let (reader, total): (Box<dyn tokio::io::AsyncRead + Send + Unpin>, Option<u64>) =
        if file == "-" {
            (Box::new(tokio::io::stdin()), None)
        } else {
            // Opening a directory succeeds on Linux; only the first read
            // fails, by then inside the HTTP client, so look first.
            let meta = tokio::fs::metadata(file)
                .await
                .map_err(|e| CliError::refused(format!("cannot read {file}: {e}")))?;
            if meta.is_dir() {
                return Err(CliError::refused(format!(
                    "{file} is a directory, not a file of IDs: give a file, or - for stdin"
                )));
            }
            let f = tokio::fs::File::open(file)
                .await
                .map_err(|e| CliError::refused(format!("cannot read {file}: {e}")))?;
            // Only a regular file has a length to announce (not a pipe).
            (Box::new(f), meta.is_file().then_some(meta.len()))
        };
    let bar = progress_bar(total);
    // A read error surfaces from the HTTP client as a failed request; this
    // keeps the real cause.
    let read_error: Arc<Mutex<Option<String>>> = Arc::default();
    let started = std::time::Instant::now();
    let counting = {
        let (bar, read_error) = (bar.clone(), read_error.clone());
        let mut lines: u64 = 0;
        ReaderStream::with_capacity(reader, 256 * 1024).map(move |chunk| {
            match &chunk {
                Ok(bytes) => {
                    lines += bytes.iter().filter(|b| **b == b'\n').count() as u64;
                    bar.inc(bytes.len() as u64);
                    let rate = lines as f64 / started.elapsed().as_secs_f64().max(0.001);
                    bar.set_message(format!("{lines} lines, {rate:.0} IDs/s"));
                }
                Err(e) => {
                    *read_error.lock().expect("not poisoned") = Some(e.to_string());
                }
            }
            chunk
        })
    };
    let mut req = api
        .request(method, path)
        .timeout(TRANSFER_TIMEOUT)
        .header(reqwest::header::CONTENT_TYPE, content_type(format))
        .body(reqwest::Body::wrap_stream(counting));
    if let Some(len) = total {
        req = req.header(reqwest::header::CONTENT_LENGTH, len);
    }
    bar.set_message("uploading");
    let result = api.send(req).await;
    bar.finish_and_clear();
    let read_error = read_error.lock().expect("not poisoned").take();
    match (result, read_error) {
        (Err(_), Some(e)) => Err(CliError::refused(format!("cannot read {file}: {e}"))),
        (result, _) => result,
    }
}

fn progress_bar(total: Option<u64>) -> ProgressBar {
    match total {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template(
                "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} {msg} eta {eta}",
            )
            .expect("valid template"),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {bytes} {binary_bytes_per_sec} {msg}")
                .expect("valid template"),
        ),
    }
}

/// Streams the export to stdout as it arrives, in the chosen format.
async fn export(api: &Api, campaign: &str, format: Option<ExportFormat>) -> Result<Exit, CliError> {
    let format = match (format, api.json) {
        (Some(f), true) if f != ExportFormat::Json => {
            return Err(CliError::usage(format!(
                "--json and --format {} ask for different formats: pass one of them",
                format_name(f)
            )));
        }
        (Some(f), _) => f,
        (None, true) => ExportFormat::Json,
        (None, false) => ExportFormat::Lines,
    };
    // String and UUID IDs are written as JSON strings and, when they hold
    // a comma or a quote, as quoted CSV fields; integers stay bare.
    let quoted = match format {
        ExportFormat::Lines => false,
        _ => {
            let meta = api
                .send(api.request(Method::GET, &format!("/v1/campaigns/{campaign}")))
                .await?;
            meta["user_id_type"]
                .as_str()
                .is_some_and(|t| t != "integer")
        }
    };
    let path = format!("/v1/campaigns/{campaign}/audience");
    let (response, what) = api
        .fetch(api.request(Method::GET, &path).timeout(TRANSFER_TIMEOUT))
        .await?;
    let is_text = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/plain"));
    if !is_text {
        return Err(api.not_guestlist(response.status(), &what));
    }
    let mut stdout = tokio::io::stdout();
    let mut json = JsonArray {
        quoted,
        ..JsonArray::default()
    };
    let mut csv = CsvLines::default();
    let written = async {
        match format {
            ExportFormat::Lines => {}
            // Integer campaigns read a non-numeric first line as a header;
            // string and UUID ones read every line as an ID, so their CSV
            // has none and loads back as it is.
            ExportFormat::Csv if quoted => {}
            ExportFormat::Csv => stdout.write_all(b"user_id\n").await?,
            ExportFormat::Json => stdout.write_all(b"[").await?,
        }
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| api.transport(&e, Some(TRANSFER_TIMEOUT)))?;
            match format {
                ExportFormat::Json => stdout.write_all(&json.push(&chunk)).await?,
                ExportFormat::Csv if quoted => stdout.write_all(&csv.push(&chunk)).await?,
                _ => stdout.write_all(&chunk).await?,
            }
        }
        match format {
            ExportFormat::Json => stdout.write_all(&json.finish()).await?,
            ExportFormat::Csv if quoted => stdout.write_all(&csv.finish()).await?,
            _ => {}
        }
        stdout.flush().await?;
        Ok::<_, ExportError>(())
    }
    .await;
    match written {
        Ok(()) => Ok(Exit::Success),
        // `guestlist audience export c | head` is not a failure.
        Err(ExportError::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(Exit::Success)
        }
        Err(ExportError::Write(e)) => Err(CliError::refused(format!(
            "cannot write the export to stdout: {e}"
        ))),
        Err(ExportError::Read(e)) => Err(e),
    }
}

enum ExportError {
    Read(CliError),
    Write(std::io::Error),
}

impl From<CliError> for ExportError {
    fn from(e: CliError) -> Self {
        ExportError::Read(e)
    }
}

impl From<std::io::Error> for ExportError {
    fn from(e: std::io::Error) -> Self {
        ExportError::Write(e)
    }
}

fn format_name(f: ExportFormat) -> &'static str {
    match f {
        ExportFormat::Lines => "lines",
        ExportFormat::Csv => "csv",
        ExportFormat::Json => "json",
    }
}

/// Turns the export's lines into the inside of a JSON array, chunk by
/// chunk; a chunk may end in the middle of an ID. `quoted` writes each ID
/// as a JSON string (string and UUID campaigns): the export's IDs hold no
/// control character, so only `"` and `\` need escaping.
#[derive(Default)]
struct JsonArray {
    quoted: bool,
    started: bool,
    in_id: bool,
}

impl JsonArray {
    fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len() + 2);
        for &b in chunk {
            match b {
                b'\n' | b'\r' => self.end_id(&mut out),
                _ => {
                    if !self.in_id {
                        if self.started {
                            out.push(b',');
                        }
                        if self.quoted {
                            out.push(b'"');
                        }
                    }
                    self.in_id = true;
                    self.started = true;
                    if self.quoted && (b == b'"' || b == b'\\') {
                        out.push(b'\\');
                    }
                    out.push(b);
                }
            }
        }
        out
    }

    fn end_id(&mut self, out: &mut Vec<u8>) {
        if self.in_id && self.quoted {
            out.push(b'"');
        }
        self.in_id = false;
    }

    /// The end of the last ID, if the export did not end its line, and of
    /// the array.
    fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.end_id(&mut out);
        out.extend_from_slice(b"]\n");
        out
    }
}

/// Quotes the export's lines that need it as CSV fields (RFC 4180: a field
/// holding a comma or a quote is quoted, its quotes doubled), chunk by
/// chunk, holding back only a partial last line.
#[derive(Default)]
struct CsvLines {
    partial: Vec<u8>,
}

impl CsvLines {
    fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len() + 16);
        for &b in chunk {
            if b == b'\n' {
                let line = std::mem::take(&mut self.partial);
                Self::field(&line, &mut out);
                out.push(b'\n');
            } else {
                self.partial.push(b);
            }
        }
        out
    }

    fn field(line: &[u8], out: &mut Vec<u8>) {
        if line.iter().any(|&b| b == b',' || b == b'"') {
            out.push(b'"');
            for &b in line {
                if b == b'"' {
                    out.push(b'"');
                }
                out.push(b);
            }
            out.push(b'"');
        } else {
            out.extend_from_slice(line);
        }
    }

    fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            Self::field(&line, &mut out);
            out.push(b'\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_split_anywhere_becomes_one_json_array() {
        let text = b"1\n22\n333\n";
        for cut in 0..=text.len() {
            let mut json = JsonArray::default();
            let mut out = b"[".to_vec();
            out.extend(json.push(&text[..cut]));
            out.extend(json.push(&text[cut..]));
            out.extend(json.finish());
            let ids: Vec<u64> = serde_json::from_slice(&out).unwrap();
            assert_eq!(ids, [1, 22, 333], "cut at {cut}");
        }
        let mut empty = JsonArray::default();
        assert!(empty.push(b"").is_empty());
    }

    #[test]
    fn string_ids_become_json_strings_and_quoted_csv_fields_wherever_cut() {
        let text = "a\"b\nc,d\nback\\slash\né\n".as_bytes();
        for cut in 0..=text.len() {
            let mut json = JsonArray {
                quoted: true,
                ..JsonArray::default()
            };
            let mut out = b"[".to_vec();
            out.extend(json.push(&text[..cut]));
            out.extend(json.push(&text[cut..]));
            out.extend(json.finish());
            let ids: Vec<String> = serde_json::from_slice(&out).unwrap();
            assert_eq!(ids, ["a\"b", "c,d", "back\\slash", "é"], "cut at {cut}");
            let mut csv = CsvLines::default();
            let mut out = csv.push(&text[..cut]);
            out.extend(csv.push(&text[cut..]));
            out.extend(csv.finish());
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "\"a\"\"b\"\n\"c,d\"\nback\\slash\né\n",
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn an_add_says_how_many_ids_were_already_present() {
        let body = serde_json::json!({
            "audience_size": 5, "version": 3, "added": 2, "received": 4, "duplicates": 1
        });
        assert_eq!(
            summary("c", Change::Add, &body),
            "c: added 2 IDs, 1 already present (1 repeated in the file); audience size 5, version 3"
        );
        let body = serde_json::json!({
            "audience_size": 1, "version": 4, "removed": 1, "received": 3, "duplicates": 0
        });
        assert_eq!(
            summary("c", Change::Remove, &body),
            "c: removed 1 IDs, 2 not in the audience; audience size 1, version 4"
        );
    }

    #[test]
    fn a_dry_run_says_nothing_changed_and_shows_each_side() {
        let body = serde_json::json!({
            "dry_run": true, "version": 4, "current_size": 30, "new_size": 3,
            "would_add": 1, "would_remove": 28,
            "would_add_sample": [7], "would_remove_sample": (1..=20).collect::<Vec<u64>>(),
        });
        let text = dry_run_summary("c", &body);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "c (dry run, nothing changed): would add 1 IDs and remove 28; audience size 30 -> 3 (version 4)"
        );
        assert_eq!(lines[1], "  would add: 7");
        assert!(lines[2].starts_with("  would remove: 1, 2, 3,"), "{text}");
        assert!(lines[2].ends_with("19, 20 and 8 more"), "{text}");
    }

    fn args(file: &str, input_format: Option<InputFormat>) -> UploadArgs {
        UploadArgs {
            campaign: "c".into(),
            file: file.into(),
            input_format,
            header: false,
            column: None,
            dry_run: false,
        }
    }

    #[test]
    fn the_extension_picks_the_format_unless_it_is_given() {
        let format = |a: UploadArgs| input_format(&a).unwrap();
        assert_eq!(format(args("ids.JSON", None)), InputFormat::Json);
        assert_eq!(format(args("ids.csv", None)), InputFormat::Csv);
        assert_eq!(format(args("-", None)), InputFormat::Lines);
        assert_eq!(
            format(args("ids.json", Some(InputFormat::Lines))),
            InputFormat::Lines
        );
    }

    #[test]
    fn csv_options_imply_csv_and_go_in_the_query() {
        let mut a = args("export.txt", None);
        a.column = Some("user id".into());
        a.header = true;
        assert_eq!(input_format(&a).unwrap(), InputFormat::Csv);
        assert_eq!(upload_query(&a), "?header=true&column=user+id");
        a.input_format = Some(InputFormat::Json);
        let e = input_format(&a).unwrap_err();
        assert!(e.to_string().contains("--input-format json"), "{e}");
        assert_eq!(upload_query(&args("x", None)), "");
    }
}
