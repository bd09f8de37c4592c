//! `guestlist check`, `user` and `audit`: questions, no changes.

use reqwest::Method;
use serde_json::Value;

use super::api::Api;
use super::error::{CliError, Exit};
use super::output::{print_json, print_table};

/// `user` as one path segment: string IDs hold `/`, `?`, `#`, `%`, `+`
/// and spaces, which must reach the server as the user, not as syntax.
fn segment(user: &str) -> String {
    percent_encoding::utf8_percent_encode(user, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Exits [`Exit::Success`] for a member and [`Exit::NotMember`] otherwise,
/// so a script can branch on the answer; the window state is printed.
pub async fn check(api: &Api, campaign: &str, user: &str) -> Result<Exit, CliError> {
    let body = api
        .send(api.request(
            Method::GET,
            &format!("/v1/campaigns/{campaign}/members/{}", segment(user)),
        ))
        .await?;
    let member = body["member"].as_bool().unwrap_or(false);
    if api.json {
        print_json(&body);
    } else {
        let active = body["active"].as_bool().unwrap_or(false);
        println!(
            "user {user} is {}in {campaign} ({}; answered from {}{})",
            if member { "" } else { "NOT " },
            if active { "active" } else { "not active now" },
            body["source"].as_str().unwrap_or("?"),
            if body["stale"] == true { ", stale" } else { "" },
        );
    }
    Ok(if member {
        Exit::Success
    } else {
        Exit::NotMember
    })
}

pub async fn user(api: &Api, user: &str) -> Result<Exit, CliError> {
    let body = api
        .send(api.request(
            Method::GET,
            &format!("/v1/users/{}/campaigns", segment(user)),
        ))
        .await?;
    if api.json {
        print_json(&body);
        return Ok(Exit::Success);
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
    Ok(Exit::Success)
}

pub async fn audit(api: &Api, campaign: Option<&str>, limit: usize) -> Result<Exit, CliError> {
    let mut req = api
        .request(Method::GET, "/v1/audit")
        .query(&[("limit", limit.to_string())]);
    if let Some(c) = campaign {
        req = req.query(&[("campaign", c)]);
    }
    let body = api.send(req).await?;
    if api.json {
        print_json(&body);
        return Ok(Exit::Success);
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
    Ok(Exit::Success)
}
