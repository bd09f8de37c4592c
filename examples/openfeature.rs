//! A login service asking guestlist through OpenFeature: each campaign is a
//! boolean flag, the user's id is the targeting key.
//!
//! ```sh
//! cargo run --example openfeature -- spring-sale 42
//! ```
//!
//! It asks the server at `GUESTLIST_SERVER` (default `http://127.0.0.1:8080`),
//! sending `GUESTLIST_CHECK_TOKEN` when set, and prints the value and how it
//! was reached. A login must never wait on, or fail because of, a flag: any
//! failure is the default (`false`), with the reason and error code said.

use std::process::ExitCode;

use guestlist::openfeature::GuestlistProvider;
use guestlist::secret::Secret;
use open_feature::{EvaluationContext, OpenFeature};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [campaign, user] = args.as_slice() else {
        eprintln!("usage: openfeature CAMPAIGN USER_ID");
        return ExitCode::from(2);
    };
    let server =
        std::env::var("GUESTLIST_SERVER").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let token = std::env::var("GUESTLIST_CHECK_TOKEN").ok().map(Secret::new);
    let provider = match GuestlistProvider::http(&server, token) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // The SDK initializes the provider here: it checks the server is ready.
    OpenFeature::singleton_mut()
        .await
        .set_provider(provider)
        .await;
    let flags = OpenFeature::singleton().await.create_client();

    // What a login handler does with it.
    let context = EvaluationContext::default().with_targeting_key(user.as_str());
    match flags.get_bool_details(campaign, Some(&context), None).await {
        Ok(details) => {
            let reason = details.reason.map_or("UNKNOWN".into(), |r| r.to_string());
            let variant = details.variant.unwrap_or_default();
            println!(
                "{campaign} for user {user}: {} ({reason}, {variant})",
                details.value
            );
        }
        Err(e) => {
            println!(
                "{campaign} for user {user}: false (ERROR, {}: {})",
                e.code,
                e.message.unwrap_or_default()
            );
        }
    }
    ExitCode::SUCCESS
}
