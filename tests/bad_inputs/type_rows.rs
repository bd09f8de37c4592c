//! The bad-input rows of each ID type: what its IDs may not be, in uploads,
//! JSON bodies, batch checks and paths.

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::common::typed::Ids;
use super::{Case, bad_line_17_rows};

/// Rows for integer campaigns: numbers out of range, signs, the undeclared
/// header's rule.
pub fn integer_cases() -> Vec<Case> {
    use Method as M;
    use StatusCode as S;
    let mut cases = bad_line_17_rows(Ids::Integer, "12a", r#"line 17: "12a" is not a user id"#);
    cases.extend([
        Case::upload(
            "a negative id is refused as unsigned",
            "replace",
            "text/plain",
            "1\n-5\n2\n".into(),
        )
        .fails(S::BAD_REQUEST, "invalid_user_id")
        .line(2)
        .message("unsigned"),
        Case::upload(
            "a negative id in a remove is refused as unsigned",
            "remove",
            "text/plain",
            "1\n2\n-5\n".into(),
        )
        .fails(S::BAD_REQUEST, "invalid_user_id")
        .line(3)
        .message("unsigned"),
        Case::upload(
            "an id above u64 max is refused as too large",
            "replace",
            "text/plain",
            "18446744073709551616\n".into(),
        )
        .fails(S::BAD_REQUEST, "invalid_user_id")
        .line(1)
        .message("larger than 18446744073709551615"),
        Case::upload(
            "an id above u64 max in an add is refused as too large",
            "add",
            "text/plain",
            "7000\n18446744073709551616\n".into(),
        )
        .fails(S::BAD_REQUEST, "invalid_user_id")
        .line(2)
        .message("larger than 18446744073709551615"),
        Case::upload(
            "a body of only a header is an empty audience",
            "replace",
            "text/csv",
            "user_id\n".into(),
        )
        .fails(S::BAD_REQUEST, "empty_audience"),
        Case::upload(
            "a header that is not on line 1 is a bad line",
            "replace",
            "text/csv",
            "1\nuser_id\n2\n".into(),
        )
        .fails(S::BAD_REQUEST, "invalid_user_id")
        .line(2)
        .message("only on line 1"),
        Case::upload(
            "a json array holding a string is refused",
            "replace",
            "application/json",
            r#"[1, "2", 3]"#.into(),
        )
        .fails(S::BAD_REQUEST, "invalid_user_id")
        .line(1)
        .message(r#""2" is not a user id"#),
        Case::upload(
            "a json array holding a negative id in an add is refused",
            "add",
            "application/json",
            "[7000, -5]".into(),
        )
        .fails(S::BAD_REQUEST, "invalid_user_id")
        .line(1)
        .message("unsigned"),
        Case::upload(
            "a json id above u64 max is refused",
            "replace",
            "application/json",
            "[18446744073709551616]".into(),
        )
        .fails(S::BAD_REQUEST, "invalid_user_id")
        .line(1)
        .message("larger than 18446744073709551615"),
        Case::json(
            "a batch check of a string id against an integer campaign is refused",
            M::POST,
            "/v1/check",
            json!({"user_ids": ["abc"], "campaign": "c"}),
        )
        .fails(S::BAD_REQUEST, "invalid_user_id")
        .message("takes integer user ids"),
        Case::new(
            "a member check for a user id that is not a number is refused",
            M::GET,
            "/v1/campaigns/c/members/abc",
        )
        .fails(S::BAD_REQUEST, "invalid_user_id")
        .message(r#""abc" is not a user id"#),
        Case::new(
            "a member check for a negative user id is refused",
            M::GET,
            "/v1/campaigns/c/members/-1",
        )
        .fails(S::BAD_REQUEST, "invalid_user_id"),
    ]);
    cases
}

/// 1–256 bytes of UTF-8, no control characters, no padding the trim would
/// hide.
pub fn string_cases() -> Vec<Case> {
    use Method as M;
    use StatusCode as S;
    let ids = Ids::String;
    let bell = "bad\u{7}bell";
    let long = "x".repeat(257);
    let mut cases = bad_line_17_rows(ids, bell, "holds a control character");
    cases.extend([
        Case::upload(
            "a 257-byte string is refused with its line",
            "replace",
            "text/plain",
            format!("{}{long}\n", ids.lines(&[1])),
        )
        .fails(S::BAD_REQUEST, "invalid_user_id")
        .line(2)
        .message("is 257 bytes long; a user id is at most 256"),
        Case::upload(
            "a string padded with a no-break space is refused",
            "add",
            "text/plain",
            format!("{}alice\u{a0}\n", ids.lines(&[7_000])),
        )
        .fails(S::BAD_REQUEST, "invalid_user_id")
        .line(2)
        .message("starts or ends with white space"),
        Case::upload(
            "an empty string in a json array is refused",
            "replace",
            "application/json",
            json!([ids.text(1), ""]).to_string(),
        )
        .fails(S::BAD_REQUEST, "invalid_user_id")
        .line(1),
        Case::upload(
            "a json array holding a negative number is refused",
            "add",
            "application/json",
            json!([ids.text(7_000), -1]).to_string(),
        )
        .fails(S::BAD_REQUEST, "invalid_user_id")
        .line(1)
        .message("not a user id"),
        Case::json(
            "a batch check of a 257-byte string is refused with its index",
            M::POST,
            "/v1/check",
            json!({"user_ids": [ids.text(1), long], "campaign": "c"}),
        )
        .fails(S::BAD_REQUEST, "invalid_user_id")
        .message("user_ids[1]"),
        Case::new(
            "a member check for a string with a control character is refused",
            M::GET,
            "/v1/campaigns/c/members/bad%07bell",
        )
        .fails(S::BAD_REQUEST, "invalid_user_id")
        .message("holds a control character"),
        Case::new(
            "a member check for a 257-byte string is refused",
            M::GET,
            format!("/v1/campaigns/c/members/{long}"),
        )
        .fails(S::BAD_REQUEST, "invalid_user_id")
        .message("at most 256"),
    ]);
    cases
}

/// Any standard form of 128 bits, and nothing else.
pub fn uuid_cases() -> Vec<Case> {
    use Method as M;
    use StatusCode as S;
    let ids = Ids::Uuid;
    let too_long = format!("{}0", ids.text(1));
    let mut cases = bad_line_17_rows(ids, "12a", r#"line 17: "12a" is not a UUID"#);
    cases.extend([
        Case::upload(
            "a uuid one digit too long is refused with its line",
            "replace",
            "text/plain",
            format!("{}{too_long}\n", ids.lines(&[1])),
        )
        .fails(S::BAD_REQUEST, "invalid_user_id")
        .line(2)
        .message("is not a UUID"),
        Case::upload(
            "an integer user id is not a uuid",
            "add",
            "text/plain",
            format!("{}42\n", ids.lines(&[7_000])),
        )
        .fails(S::BAD_REQUEST, "invalid_user_id")
        .line(2)
        .message(r#""42" is not a UUID"#),
        Case::upload(
            "a json array holding a number is refused",
            "replace",
            "application/json",
            json!([ids.text(1), 42]).to_string(),
        )
        .fails(S::BAD_REQUEST, "invalid_user_id")
        .line(1)
        .message("not a user id"),
        Case::json(
            "a batch check of a text that is no uuid against a uuid campaign is refused",
            M::POST,
            "/v1/check",
            json!({"user_ids": [ids.text(1), "abc"], "campaign": "c"}),
        )
        .fails(S::BAD_REQUEST, "invalid_user_id")
        .message("takes uuid user ids"),
        Case::new(
            "a member check for a text that is no uuid is refused",
            M::GET,
            "/v1/campaigns/c/members/abc",
        )
        .fails(S::BAD_REQUEST, "invalid_user_id")
        .message("takes uuid user ids"),
        Case::new(
            "a member check for a uuid one digit too long is refused",
            M::GET,
            format!("/v1/campaigns/c/members/{too_long}"),
        )
        .fails(S::BAD_REQUEST, "invalid_user_id")
        .message("is not a UUID"),
    ]);
    cases
}
