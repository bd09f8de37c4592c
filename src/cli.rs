//! The admin CLI: `guestlist campaign|audience|check|user|audit`, talking to a
//! running server over HTTP or HTTPS (`--ca-file` for a private CA).
//!
//! Output is a readable table by default and the server's JSON with `--json`.
//! Any error exits non-zero with the server's message (and line number, for
//! a bad upload) on stderr.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tokio_util::io::ReaderStream;

use crate::config::{AudienceCmd, CampaignCmd, Remote};
use crate::secret::Secret;

/// Deadline of an ordinary call; uploads and exports get their own.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline of a whole upload or export: long, but never infinite.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(3600);

struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<Secret>,
    json: bool,
}

impl Api {
    fn new(remote: &Remote) -> anyhow::Result<Api> {
        crate::tls::install_crypto_provider();
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        if let Some(path) = &remote.ca_file {
            builder = builder.tls_certs_only(crate::tls::ca_certificates(path)?);
        }
        let http = builder.build().context("building the HTTP client")?;
        Ok(Api {
            http,
            base: remote.server.trim_end_matches('/').to_string(),
            token: crate::secret::from_env("GUESTLIST_TOKEN")?,
            json: remote.json,
        })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token.expose());
        }
        req.timeout(CALL_TIMEOUT)
    }

    /// Sends a request; a non-2xx answer becomes an error carrying the
    /// server's message.
    async fn send(&self, req: RequestBuilder) -> anyhow::Result<Value> {
        let response = req.send().await.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .context("reading the server's answer")?;
        if status == StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            bail!("{}", describe_error(status, &body));
        }
        Ok(body)
    }
}

impl Api {
    /// Why a request got no answer, with the fix when the server's
    /// certificate is the reason.
    fn unreachable(&self, e: reqwest::Error) -> anyhow::Error {
        let mut causes = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source());
        let untrusted = causes.any(|cause| cause.to_string().contains("certificate"));
        let context = if untrusted {
            format!(
                "the server at {} presented a TLS certificate this client does not trust; \
                 pass --ca-file (or GUESTLIST_CA_FILE) with the CA that signed it",
                self.base
            )
        } else {
            format!("cannot reach the server at {}", self.base)
        };
        anyhow::Error::new(e).context(context)
    }
}

/// `HTTP 400 invalid_user_id: line 17: "12a" is not a user id; nothing was changed`
fn describe_error(status: StatusCode, body: &Value) -> String {
    let code = body["error"].as_str().unwrap_or("error");
    let message = body["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| body.to_string());
    let hint = if status == StatusCode::UNAUTHORIZED {
        " (set GUESTLIST_TOKEN to an admin token)"
    } else {
        ""
    };
    format!("HTTP {} {code}: {message}{hint}", status.as_u16())
}

pub async fn campaign(remote: Remote, cmd: CampaignCmd) -> anyhow::Result<()> {
    let api = Api::new(&remote)?;
    match cmd {
        CampaignCmd::List => {
            let body = api.send(api.request(Method::GET, "/v1/campaigns")).await?;
            if api.json {
                return print_json(&body);
            }
            let rows: Vec<Vec<String>> = body["campaigns"]
                .as_array()
                .map(|a| a.iter().map(campaign_row).collect())
                .unwrap_or_default();
            print_table(&CAMPAIGN_HEADER, &rows);
        }
        CampaignCmd::Show { id } => {
            let body = api
                .send(api.request(Method::GET, &format!("/v1/campaigns/{id}")))
                .await?;
            show_campaign(&api, &body)?;
        }
        CampaignCmd::Create {
            id,
            name,
            starts_at,
            ends_at,
            design,
        } => {
            let body = json!({
                "id": id, "name": name.unwrap_or_else(|| id.clone()),
                "starts_at": starts_at, "ends_at": ends_at, "design": design,
            });
            let created = api
                .send(api.request(Method::POST, "/v1/campaigns").json(&body))
                .await?;
            show_campaign(&api, &created)?;
        }
        CampaignCmd::Edit {
            id,
            name,
            starts_at,
            ends_at,
        } => {
            let mut patch = serde_json::Map::new();
            for (field, value) in [
                ("name", name),
                ("starts_at", starts_at),
                ("ends_at", ends_at),
            ] {
                if let Some(v) = value {
                    patch.insert(field.into(), Value::String(v));
                }
            }
            if patch.is_empty() {
                bail!("nothing to change: pass --name, --starts-at or --ends-at");
            }
            let updated = api
                .send(
                    api.request(Method::PATCH, &format!("/v1/campaigns/{id}"))
                        .json(&patch),
                )
                .await?;
            show_campaign(&api, &updated)?;
        }
        CampaignCmd::Delete { id } => {
            api.send(api.request(Method::DELETE, &format!("/v1/campaigns/{id}")))
                .await?;
            if api.json {
                print_json(&json!({ "deleted": id }))?;
            } else {
                println!("deleted {id}");
            }
        }
    }
    Ok(())
}

const CAMPAIGN_HEADER: [&str; 8] = [
    "ID",
    "NAME",
    "STATUS",
    "STARTS (UTC)",
    "ENDS (UTC)",
    "DESIGN",
    "SIZE",
    "VERSION",
];

fn campaign_row(c: &Value) -> Vec<String> {
    let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
    vec![
        s("id"),
        s("name"),
        s("status"),
        s("starts_at"),
        s("ends_at"),
        s("design"),
        c["audience_size"].to_string(),
        c["version"].to_string(),
    ]
}

fn show_campaign(api: &Api, c: &Value) -> anyhow::Result<()> {
    if api.json {
        return print_json(c);
    }
    print_table(&CAMPAIGN_HEADER, &[campaign_row(c)]);
    Ok(())
}

pub async fn audience(remote: Remote, cmd: AudienceCmd) -> anyhow::Result<()> {
    let api = Api::new(&remote)?;
    let (method, op, campaign, file) = match cmd {
        AudienceCmd::Export { campaign } => return export(&api, &campaign).await,
        AudienceCmd::Replace { campaign, file } => (Method::PUT, "", campaign, file),
        AudienceCmd::Add { campaign, file } => (Method::POST, "/add", campaign, file),
        AudienceCmd::Remove { campaign, file } => (Method::POST, "/remove", campaign, file),
    };
    let body = upload(
        &api,
        method,
        &format!("/v1/campaigns/{campaign}/audience{op}"),
        &file,
    )
    .await?;
    if api.json {
        return print_json(&body);
    }
    let field = |k: &str| body.get(k).map(Value::to_string);
    let mut parts = vec![format!(
        "{campaign}: audience size {}",
        body["audience_size"]
    )];
    for (k, label) in [
        ("received", "received"),
        ("duplicates", "duplicates"),
        ("added", "added"),
        ("removed", "removed"),
    ] {
        if let Some(v) = field(k) {
            parts.push(format!("{label} {v}"));
        }
    }
    parts.push(format!("version {}", body["version"]));
    println!("{}", parts.join(", "));
    Ok(())
}

/// Streams a file (or stdin, for `-`) to the server with a progress bar of
/// bytes and IDs per second. The file is never read whole into memory.
async fn upload(api: &Api, method: Method, path: &str, file: &str) -> anyhow::Result<Value> {
    let (reader, total, content_type): (
        Box<dyn tokio::io::AsyncRead + Send + Unpin>,
        Option<u64>,
        &str,
    ) = if file == "-" {
        (Box::new(tokio::io::stdin()), None, "text/plain")
    } else {
        let f = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("opening {file}"))?;
        // Only a regular file has a length to announce (not a pipe).
        let len = f
            .metadata()
            .await
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        (Box::new(f), len, content_type_for(Path::new(file)))
    };
    let bar = match total {
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
    };
    let started = std::time::Instant::now();
    let counting = {
        let bar = bar.clone();
        let mut lines: u64 = 0;
        ReaderStream::with_capacity(reader, 256 * 1024).map(move |chunk| {
            if let Ok(bytes) = &chunk {
                lines += bytes.iter().filter(|b| **b == b'\n').count() as u64;
                bar.inc(bytes.len() as u64);
                let rate = lines as f64 / started.elapsed().as_secs_f64().max(0.001);
                bar.set_message(format!("{lines} lines, {rate:.0} IDs/s"));
            }
            chunk
        })
    };
    let mut req = api
        .request(method, path)
        .timeout(TRANSFER_TIMEOUT)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(reqwest::Body::wrap_stream(counting));
    if let Some(len) = total {
        req = req.header(reqwest::header::CONTENT_LENGTH, len);
    }
    bar.set_message("uploading");
    let result = api.send(req).await;
    bar.finish_and_clear();
    result
}

fn content_type_for(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => "application/json",
        Some("csv") => "text/csv",
        _ => "text/plain",
    }
}

/// Streams the export to stdout as it arrives.
async fn export(api: &Api, campaign: &str) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let response = api
        .request(Method::GET, &format!("/v1/campaigns/{campaign}/audience"))
        .timeout(TRANSFER_TIMEOUT)
        .send()
        .await
        .map_err(|e| api.unreachable(e))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        bail!("{}", describe_error(status, &body));
    }
    let mut out = tokio::io::stdout();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        out.write_all(&chunk.context("reading the export")?).await?;
    }
    out.flush().await?;
    Ok(())
}

pub async fn check(remote: Remote, campaign: String, user: String) -> anyhow::Result<()> {
    let api = Api::new(&remote)?;
    let body = api
        .send(api.request(
            Method::GET,
            &format!("/v1/campaigns/{campaign}/members/{user}"),
        ))
        .await?;
    if api.json {
        return print_json(&body);
    }
    let member = body["member"].as_bool().unwrap_or(false);
    let active = body["active"].as_bool().unwrap_or(false);
    println!(
        "user {user} is {}in {campaign} ({}; answered from {}{})",
        if member { "" } else { "NOT " },
        if active { "active" } else { "not active now" },
        body["source"].as_str().unwrap_or("?"),
        if body["stale"] == true { ", stale" } else { "" },
    );
    Ok(())
}

pub async fn user(remote: Remote, user: String) -> anyhow::Result<()> {
    let api = Api::new(&remote)?;
    let body = api
        .send(api.request(Method::GET, &format!("/v1/users/{user}/campaigns")))
        .await?;
    if api.json {
        return print_json(&body);
    }
    let campaigns: Vec<&str> = body["campaigns"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if campaigns.is_empty() {
        println!("user {user} is in no active campaign");
    } else {
        println!("user {user} is in: {}", campaigns.join(", "));
    }
    Ok(())
}

pub async fn audit(remote: Remote, campaign: Option<String>, limit: usize) -> anyhow::Result<()> {
    let api = Api::new(&remote)?;
    let mut req = api
        .request(Method::GET, "/v1/audit")
        .query(&[("limit", limit.to_string())]);
    if let Some(c) = &campaign {
        req = req.query(&[("campaign", c)]);
    }
    let body = api.send(req).await?;
    if api.json {
        return print_json(&body);
    }
    let rows: Vec<Vec<String>> = body["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .map(|e| {
                    ["at", "actor", "campaign", "action", "summary"]
                        .iter()
                        .map(|k| e[*k].as_str().unwrap_or("").to_string())
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    print_table(
        &["TIME (UTC)", "ACTOR", "CAMPAIGN", "ACTION", "WHAT"],
        &rows,
    );
    Ok(())
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Left-aligned columns, two spaces apart.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    if rows.is_empty() {
        println!("(none)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_the_servers_code_and_message() {
        let body = json!({"error": "invalid_user_id", "message": "line 12345: \"x\" is not a user id", "line": 12345});
        let text = describe_error(StatusCode::BAD_REQUEST, &body);
        assert_eq!(
            text,
            "HTTP 400 invalid_user_id: line 12345: \"x\" is not a user id"
        );
        let text = describe_error(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "unauthorized", "message": "m"}),
        );
        assert!(text.contains("GUESTLIST_TOKEN"));
    }

    #[test]
    fn content_types_follow_the_file_extension() {
        assert_eq!(content_type_for(Path::new("ids.csv")), "text/csv");
        assert_eq!(content_type_for(Path::new("ids.json")), "application/json");
        assert_eq!(content_type_for(Path::new("ids.txt")), "text/plain");
    }
}
