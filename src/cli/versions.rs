//! `guestlist audience versions|rollback`: the audience history.

use reqwest::Method;
use serde_json::{Value, json};

use super::api::{Api, TRANSFER_TIMEOUT};
use super::error::{CliError, Exit};
use super::output::{print_json, print_table};

pub async fn list(api: &Api, campaign: &str) -> Result<Exit, CliError> {
    let path = format!("/v1/campaigns/{campaign}/versions");
    let body = api.send(api.request(Method::GET, &path)).await?;
    if api.json {
        print_json(&body);
        return Ok(Exit::Success);
    }
    let versions = body["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        println!("{campaign}: no audience version yet");
        return Ok(Exit::Success);
    }
    let rows: Vec<Vec<String>> = versions.iter().map(row).collect();
    print_table(&["VERSION", "SIZE", "TIME (UTC)", "BY", "HOW"], &rows);
    Ok(Exit::Success)
}

fn row(v: &Value) -> Vec<String> {
    let how = match (v["action"].as_str(), v["restored"].as_u64()) {
        (Some("rolled_back"), Some(r)) => format!("rolled back to {r}"),
        (Some(action), _) => action.replace('_', " "),
        (None, _) => "?".into(),
    };
    vec![
        v["version"].to_string(),
        v["audience_size"].to_string(),
        v["at"].as_str().unwrap_or("").to_string(),
        v["by"].as_str().unwrap_or("").to_string(),
        how,
    ]
}

pub async fn rollback(api: &Api, campaign: &str, version: u64) -> Result<Exit, CliError> {
    let path = format!("/v1/campaigns/{campaign}/rollback");
    let body = api
        .send(
            api.request(Method::POST, &path)
                // A rollback rebuilds a whole audience, which takes as long
                // as uploading it.
                .timeout(TRANSFER_TIMEOUT)
                .json(&json!({ "version": version })),
        )
        .await
        .map_err(|e| with_versions_hint(e, campaign))?;
    if api.json {
        print_json(&body);
    } else {
        println!(
            "{campaign}: rolled back to version {version}; audience size {}, version {}",
            body["audience_size"], body["version"]
        );
    }
    Ok(Exit::Success)
}

/// A version the history does not keep: point at the list.
fn with_versions_hint(e: CliError, campaign: &str) -> CliError {
    if e.code.as_deref() != Some("version_not_found") {
        return e;
    }
    CliError {
        hint: Some(format!(
            "`guestlist audience versions {campaign}` lists the kept versions"
        )),
        ..e
    }
}
