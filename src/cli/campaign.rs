//! `guestlist campaign create|list|show|edit|delete`.

use std::io::IsTerminal;

use reqwest::Method;
use serde_json::{Value, json};

use super::api::Api;
use super::error::{CliError, Exit};
use super::output::{print_json, print_table};
use crate::config::CampaignCmd;

pub async fn run(api: &Api, cmd: CampaignCmd) -> Result<Exit, CliError> {
    match cmd {
        CampaignCmd::List => {
            let body = api.send(api.request(Method::GET, "/v1/campaigns")).await?;
            if api.json {
                print_json(&body);
            } else {
                let rows: Vec<Vec<String>> = body["campaigns"]
                    .as_array()
                    .map(|a| a.iter().map(campaign_row).collect())
                    .unwrap_or_default();
                print_table(&CAMPAIGN_HEADER, &rows);
            }
        }
        CampaignCmd::Show { id } => {
            let body = api.send(api.request(Method::GET, &path(&id))).await?;
            show(api, &body);
        }
        CampaignCmd::Create {
            id,
            name,
            starts_at,
            ends_at,
            design,
            user_id_type,
        } => {
            let body = json!({
                "id": id, "name": name.unwrap_or_else(|| id.clone()),
                "starts_at": starts_at, "ends_at": ends_at, "design": design,
                "user_id_type": user_id_type,
            });
            let created = api
                .send(api.request(Method::POST, "/v1/campaigns").json(&body))
                .await
                .map_err(|e| exists_in_cli_terms(e, &id))?;
            show(api, &created);
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
                return Err(CliError::usage(
                    "nothing to change: pass --name, --starts-at or --ends-at",
                ));
            }
            let updated = api
                .send(api.request(Method::PATCH, &path(&id)).json(&patch))
                .await?;
            show(api, &updated);
        }
        CampaignCmd::Delete { id, yes } => {
            if !yes {
                confirm_delete(api, &id).await?;
            }
            api.send(api.request(Method::DELETE, &path(&id))).await?;
            if api.json {
                print_json(&json!({ "deleted": id }));
            } else {
                println!("deleted {id}");
            }
        }
    }
    Ok(Exit::Success)
}

fn path(id: &str) -> String {
    format!("/v1/campaigns/{id}")
}

/// The server's 409 speaks to API clients (PATCH); a CLI user edits.
fn exists_in_cli_terms(e: CliError, id: &str) -> CliError {
    if e.code.as_deref() != Some("campaign_exists") {
        return e;
    }
    CliError {
        message: format!(
            "campaign {id} already exists (HTTP 409 campaign_exists): choose another id, \
             or change this one with `guestlist campaign edit {id}`"
        ),
        hint: Some(format!(
            "`guestlist campaign show {id}` shows it; `guestlist campaign delete {id}` removes it and its audience"
        )),
        ..e
    }
}

/// Asks on the terminal; without one, refuses: a script must say `--yes`.
async fn confirm_delete(api: &Api, id: &str) -> Result<(), CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(format!(
            "not deleting campaign {id}: confirmation needs a terminal and stdin is not one; \
             pass --yes to delete without asking"
        )));
    }
    // Shows what would go, and fails early (404) if there is nothing.
    let c = api.send(api.request(Method::GET, &path(id))).await?;
    let prompt = format!(
        "Delete campaign {id} ({}, {}, {} IDs) and its audience? This cannot be undone. [y/N] ",
        c["name"].as_str().unwrap_or(id),
        c["status"].as_str().unwrap_or("?"),
        c["audience_size"],
    );
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .map_err(|e| CliError::usage(format!("reading the answer: {e}")))?
    .map_err(|e| CliError::usage(format!("reading the answer: {e}")))?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(CliError::usage(format!(
            "not deleting campaign {id}: not confirmed"
        )))
    }
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

fn show(api: &Api, c: &Value) {
    if api.json {
        print_json(c);
    } else {
        print_table(&CAMPAIGN_HEADER, &[campaign_row(c)]);
    }
}
