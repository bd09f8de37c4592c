//! Bad inputs, every store: each rejected request answers with the right
//! status and error body, and leaves the campaign, its audience and the
//! campaign list exactly as they were.
//!
//! The cases are one table, run in order against one harness per backend
//! and ID type (integer everywhere; string and UUID on every backend that
//! holds them); a failure names the case that broke. The rows every type
//! shares spell their valid IDs as the type's; each type adds its own bad
//! lines, JSON elements and users (`bad_inputs/type_rows.rs`).

mod common;

#[path = "bad_inputs/type_rows.rs"]
mod type_rows;

use axum::http::{Method, StatusCode};
use common::typed::{Ids, Typed};
use common::{ADMIN, Backend};
use serde_json::{Value, json};

/// The harness upload limit: small, so the "too large" case stays cheap.
const UPLOAD_LIMIT: u64 = 64 * 1024;

/// The audience campaign "c" holds before every case.
const AUDIENCE: std::ops::RangeInclusive<u64> = 1..=100;

/// One bad request and how the service must refuse it.
struct Case {
    name: &'static str,
    method: Method,
    path: String,
    token: Option<&'static str>,
    content_type: Option<&'static str>,
    body: String,
    status: StatusCode,
    code: &'static str,
    /// The `line` field of the error body, when the error names a line.
    line: Option<u64>,
    /// The `field` field of the error body, when the error names a field.
    field: Option<&'static str>,
    /// Text the `message` must contain.
    message: Option<&'static str>,
}

impl Case {
    fn new(name: &'static str, method: Method, path: impl Into<String>) -> Case {
        Case {
            name,
            method,
            path: path.into(),
            token: Some(ADMIN),
            content_type: None,
            body: String::new(),
            status: StatusCode::BAD_REQUEST,
            code: "",
            line: None,
            field: None,
            message: None,
        }
    }

    /// A `PUT /v1/campaigns/c/audience` or `POST .../audience/{op}` upload.
    fn upload(name: &'static str, op: &str, content_type: &'static str, body: String) -> Case {
        let (method, path) = match op {
            "replace" => (Method::PUT, "/v1/campaigns/c/audience"),
            "add" => (Method::POST, "/v1/campaigns/c/audience/add"),
            "remove" => (Method::POST, "/v1/campaigns/c/audience/remove"),
            other => panic!("no upload operation {other:?}"),
        };
        Case::new(name, method, path)
            .content_type(content_type)
            .body(body)
    }

    fn json(name: &'static str, method: Method, path: &'static str, body: Value) -> Case {
        Case::new(name, method, path)
            .content_type("application/json")
            .body(body.to_string())
    }

    fn token(mut self, token: Option<&'static str>) -> Case {
        self.token = token;
        self
    }

    fn content_type(mut self, content_type: &'static str) -> Case {
        self.content_type = Some(content_type);
        self
    }

    fn no_content_type(mut self) -> Case {
        self.content_type = None;
        self
    }

    fn body(mut self, body: impl Into<String>) -> Case {
        self.body = body.into();
        self
    }

    fn fails(mut self, status: StatusCode, code: &'static str) -> Case {
        self.status = status;
        self.code = code;
        self
    }

    fn line(mut self, line: u64) -> Case {
        self.line = Some(line);
        self
    }

    fn field(mut self, field: &'static str) -> Case {
        self.field = Some(field);
        self
    }

    fn message(mut self, fragment: &'static str) -> Case {
        self.message = Some(fragment);
        self
    }
}

/// Lines 1..=16 are valid ids, line 17 is `bad`, and valid ids follow. The
/// ids are chosen by the caller so that a partial write would show in the
/// export.
fn bad_line_17(ids: Ids, valid: impl Iterator<Item = u64>, bad: &str) -> String {
    let valid: Vec<u64> = valid.collect();
    assert!(valid.len() > 16, "need valid ids on both sides of line 17");
    format!(
        "{}{bad}\n{}",
        ids.lines(&valid[..16]),
        ids.lines(&valid[16..])
    )
}

/// A replace, an add and a remove, each with `bad` on line 17 among IDs of
/// the type: refused by that line, with `message`, and nothing applied.
fn bad_line_17_rows(ids: Ids, bad: &str, message: &'static str) -> Vec<Case> {
    [
        (
            "a bad line mid-file in a replace is reported by its line number",
            "replace",
            "text/plain",
            1_000..=1_019,
        ),
        (
            "a bad line mid-file in an add adds none of the lines before it",
            "add",
            "text/plain",
            1_000..=1_019,
        ),
        (
            "a bad line mid-file in a remove removes none of the lines before it",
            "remove",
            "text/csv",
            1..=30,
        ),
    ]
    .into_iter()
    .map(|(name, op, content_type, valid)| {
        Case::upload(name, op, content_type, bad_line_17(ids, valid, bad))
            .fails(StatusCode::BAD_REQUEST, "invalid_user_id")
            .line(17)
            .message(message)
    })
    .collect()
}

/// A new campaign body, valid unless the caller overrides a field.
fn new_campaign(overrides: Value) -> Value {
    let mut body = json!({
        "id": "d",
        "name": "Campaign d",
        "starts_at": "2030-01-01T00:00:00Z",
        "ends_at": "2030-02-01T00:00:00Z",
    });
    for (key, value) in overrides.as_object().expect("an object of overrides") {
        body[key] = value.clone();
    }
    body
}

/// The table for campaigns of `ids`: the rows every type shares, then the
/// type's own (its bad lines, bad JSON elements and bad users).
fn cases(ids: Ids) -> Vec<Case> {
    let mut cases = shared_cases(ids);
    cases.extend(match ids {
        Ids::Integer => type_rows::integer_cases(),
        Ids::String => type_rows::string_cases(),
        Ids::Uuid => type_rows::uuid_cases(),
    });
    cases
}

/// Rows whose refusal does not depend on the ID type; their valid IDs are
/// spelled as the type's.
fn shared_cases(ids: Ids) -> Vec<Case> {
    use Method as M;
    use StatusCode as S;
    let too_large = ids.lines(&(1..=20_000).collect::<Vec<u64>>());
    assert!(too_large.len() as u64 > UPLOAD_LIMIT);
    let too_many_ids = ids.values(0..10_001);
    let valid_upload = ids.lines(&[500, 501, 502]);
    vec![
        // Text uploads.
        Case::upload(
            "an empty body is an empty audience, not a clear",
            "replace",
            "text/plain",
            String::new(),
        )
        .fails(S::BAD_REQUEST, "empty_audience"),
        Case::upload(
            "an empty body in an add is an empty audience",
            "add",
            "text/plain",
            String::new(),
        )
        .fails(S::BAD_REQUEST, "empty_audience"),
        Case::upload(
            "a body over the upload limit is too large",
            "replace",
            "text/plain",
            too_large.clone(),
        )
        .fails(S::PAYLOAD_TOO_LARGE, "body_too_large")
        .message("upload limit"),
        Case::upload(
            "a body over the upload limit in an add is too large",
            "add",
            "text/plain",
            too_large,
        )
        .fails(S::PAYLOAD_TOO_LARGE, "body_too_large")
        .message("upload limit"),
        Case::upload(
            "a body of only a declared header is an empty audience",
            "replace",
            "text/csv; header=present",
            "user_id\n".into(),
        )
        .fails(S::BAD_REQUEST, "empty_audience"),
        Case::upload(
            "a csv row of several fields without a named column is refused",
            "replace",
            "text/csv",
            format!("{},x\n", ids.uploaded(1)),
        )
        .fails(S::BAD_REQUEST, "invalid_csv")
        .line(1)
        .message("name the ID column"),
        Case::new(
            "a csv column that the header lacks is refused",
            M::PUT,
            "/v1/campaigns/c/audience?header=true&column=user",
        )
        .content_type("text/csv")
        .body(format!("id,name\n{},Ann\n", ids.uploaded(1)))
        .fails(S::BAD_REQUEST, "invalid_csv")
        .line(1),
        // Content types.
        Case::upload(
            "an xml content type is unsupported",
            "replace",
            "application/xml",
            valid_upload.clone(),
        )
        .fails(S::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
        .message("application/xml"),
        Case::upload(
            "a missing content type on an upload is unsupported",
            "replace",
            "text/plain",
            valid_upload.clone(),
        )
        .no_content_type()
        .fails(S::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        Case::upload(
            "a missing content type on a remove is unsupported",
            "remove",
            "text/plain",
            ids.lines(&[1, 2, 3]),
        )
        .no_content_type()
        .fails(S::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        Case::json(
            "a missing content type on a campaign create is unsupported",
            M::POST,
            "/v1/campaigns",
            new_campaign(json!({})),
        )
        .no_content_type()
        .fails(S::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        // JSON uploads.
        Case::upload(
            "json that is not an array is refused",
            "replace",
            "application/json",
            r#"{"ids":[1]}"#.into(),
        )
        .fails(S::BAD_REQUEST, "invalid_json")
        .line(1)
        .message("a JSON array of user ids"),
        Case::upload(
            "malformed json is refused",
            "replace",
            "application/json",
            // Valid IDs of the type, so the cut is what is refused.
            ids.values([1, 2]).to_string().trim_end_matches(']').into(),
        )
        .fails(S::BAD_REQUEST, "invalid_json")
        .line(1),
        Case::upload(
            "an empty json body is an empty audience, not a clear",
            "replace",
            "application/json",
            String::new(),
        )
        .fails(S::BAD_REQUEST, "empty_audience"),
        // Unknown campaigns.
        Case::new(
            "a replace on an unknown campaign is not found",
            M::PUT,
            "/v1/campaigns/ghost/audience",
        )
        .content_type("text/plain")
        .body(valid_upload.clone())
        .fails(S::NOT_FOUND, "campaign_not_found"),
        Case::new(
            "an add on an unknown campaign is not found",
            M::POST,
            "/v1/campaigns/ghost/audience/add",
        )
        .content_type("text/plain")
        .body(valid_upload.clone())
        .fails(S::NOT_FOUND, "campaign_not_found"),
        Case::new(
            "a replace on a campaign id that is not a slug is not found",
            M::PUT,
            "/v1/campaigns/Bad%20Slug/audience",
        )
        .content_type("text/plain")
        .body(valid_upload.clone())
        .fails(S::NOT_FOUND, "campaign_not_found"),
        // Campaign creation and updates.
        Case::json(
            "creating a campaign with a bad slug names the id field",
            M::POST,
            "/v1/campaigns",
            new_campaign(json!({"id": "Bad Slug!"})),
        )
        .fails(S::BAD_REQUEST, "invalid_campaign")
        .field("id"),
        Case::json(
            "creating a campaign that ends when it starts names the ends_at field",
            M::POST,
            "/v1/campaigns",
            new_campaign(json!({"ends_at": "2030-01-01T00:00:00Z"})),
        )
        .fails(S::BAD_REQUEST, "invalid_campaign")
        .field("ends_at")
        .message("must be after starts_at"),
        Case::json(
            "creating a campaign that ends before it starts names the ends_at field",
            M::POST,
            "/v1/campaigns",
            new_campaign(json!({"ends_at": "2029-12-01T00:00:00Z"})),
        )
        .fails(S::BAD_REQUEST, "invalid_campaign")
        .field("ends_at"),
        Case::json(
            "creating a campaign with a time that is not rfc 3339 names the field",
            M::POST,
            "/v1/campaigns",
            new_campaign(json!({"starts_at": "next tuesday"})),
        )
        .fails(S::BAD_REQUEST, "invalid_campaign")
        .field("starts_at")
        .message("RFC 3339"),
        Case::json(
            "creating a campaign with an unknown design names the design field",
            M::POST,
            "/v1/campaigns",
            new_campaign(json!({"design": "list"})),
        )
        .fails(S::BAD_REQUEST, "invalid_campaign")
        .field("design"),
        Case::json(
            "creating a campaign with an unknown field is invalid json",
            M::POST,
            "/v1/campaigns",
            new_campaign(json!({"colour": "red"})),
        )
        .fails(S::BAD_REQUEST, "invalid_json"),
        Case::new(
            "creating a campaign from malformed json is invalid json",
            M::POST,
            "/v1/campaigns",
        )
        .content_type("application/json")
        .body(r#"{"id": "d""#)
        .fails(S::BAD_REQUEST, "invalid_json"),
        Case::json(
            "creating a campaign with an id that exists is a conflict",
            M::POST,
            "/v1/campaigns",
            new_campaign(json!({"id": "c", "name": "Impostor"})),
        )
        .fails(S::CONFLICT, "campaign_exists"),
        Case::json(
            "a patch that moves ends_at before starts_at names the ends_at field",
            M::PATCH,
            "/v1/campaigns/c",
            json!({"ends_at": "2000-01-01T00:00:00Z"}),
        )
        .fails(S::BAD_REQUEST, "invalid_campaign")
        .field("ends_at"),
        Case::json(
            "a patch that renames and also breaks the window changes neither",
            M::PATCH,
            "/v1/campaigns/c",
            json!({"name": "Renamed", "starts_at": "2099-01-01T00:00:00Z"}),
        )
        .fails(S::BAD_REQUEST, "invalid_campaign")
        .field("ends_at"),
        Case::json(
            "a patch with an empty name names the name field",
            M::PATCH,
            "/v1/campaigns/c",
            json!({"name": "   "}),
        )
        .fails(S::BAD_REQUEST, "invalid_campaign")
        .field("name"),
        Case::json(
            "a patch on an unknown campaign is not found",
            M::PATCH,
            "/v1/campaigns/ghost",
            json!({"name": "x"}),
        )
        .fails(S::NOT_FOUND, "campaign_not_found"),
        // Tokens.
        Case::upload(
            "a replace without a token is unauthorized",
            "replace",
            "text/plain",
            valid_upload.clone(),
        )
        .token(None)
        .fails(S::UNAUTHORIZED, "unauthorized")
        .message("admin token"),
        Case::new(
            "a delete without a token is unauthorized",
            M::DELETE,
            "/v1/campaigns/c",
        )
        .token(None)
        .fails(S::UNAUTHORIZED, "unauthorized"),
        Case::upload(
            "an add with a wrong token is unauthorized",
            "add",
            "text/plain",
            valid_upload.clone(),
        )
        .token(Some("not-the-admin-token"))
        .fails(S::UNAUTHORIZED, "unauthorized")
        .message("not valid"),
        Case::json(
            "a create with a wrong token is unauthorized",
            M::POST,
            "/v1/campaigns",
            new_campaign(json!({})),
        )
        .token(Some("not-the-admin-token"))
        .fails(S::UNAUTHORIZED, "unauthorized"),
        Case::new(
            "an export with a wrong token is unauthorized",
            M::GET,
            "/v1/campaigns/c/audience",
        )
        .token(Some("not-the-admin-token"))
        .fails(S::UNAUTHORIZED, "unauthorized"),
        // Checks.
        Case::json(
            "a batch check of 10001 ids is too many",
            M::POST,
            "/v1/check",
            json!({"user_ids": too_many_ids, "campaign": "c"}),
        )
        .fails(S::BAD_REQUEST, "too_many_user_ids")
        .message("10001 user ids sent"),
        Case::json(
            "a batch check with a fractional id is invalid json",
            M::POST,
            "/v1/check",
            json!({"user_ids": [1.5]}),
        )
        .fails(S::BAD_REQUEST, "invalid_json"),
        Case::json(
            "a batch check with an id no type can hold is refused with its index",
            M::POST,
            "/v1/check",
            json!({"user_ids": [1, "x\u{7}"]}),
        )
        .fails(S::BAD_REQUEST, "invalid_user_id")
        .message("user_ids[1]"),
    ]
}

/// What no rejected request may change.
#[derive(Debug, PartialEq)]
struct Snapshot {
    campaign: Value,
    audience: Vec<u64>,
    list: Value,
}

async fn snapshot(h: &Typed) -> Snapshot {
    let (status, list) = h.get("/v1/campaigns").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    Snapshot {
        campaign: h.campaign("c").await,
        audience: h.export("c").await,
        list,
    }
}

async fn every_bad_input_is_refused_and_changes_nothing(backend: Backend, ids: Ids) {
    let h = Typed::with_limit(backend, ids, UPLOAD_LIMIT).await;
    h.active("c").await;
    let audience: Vec<u64> = AUDIENCE.collect();
    h.replace("c", &audience).await;
    let before = snapshot(&h).await;
    assert_eq!(before.audience, audience);
    assert_eq!(before.campaign["audience_size"], 100);
    assert_eq!(before.list["campaigns"].as_array().map(Vec::len), Some(1));

    let cases = cases(ids);
    assert!(cases.len() >= 18, "only {} cases", cases.len());
    for case in cases {
        let name = case.name;
        let (status, body) = h
            .send(
                case.method.clone(),
                &case.path,
                case.token,
                case.content_type,
                case.body,
            )
            .await;
        assert_eq!(status, case.status, "{backend:?} {ids:?}: {name}: {body}");
        assert_eq!(
            body["error"], case.code,
            "{backend:?} {ids:?}: {name}: {body}"
        );
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            !message.is_empty(),
            "{backend:?} {ids:?}: {name}: no message in {body}"
        );
        if let Some(fragment) = case.message {
            assert!(
                message.contains(fragment),
                "{backend:?} {ids:?}: {name}: message {message:?} lacks {fragment:?}"
            );
        }
        assert_eq!(
            body.get("line").and_then(Value::as_u64),
            case.line,
            "{backend:?} {ids:?}: {name}: line in {body}"
        );
        assert_eq!(
            body.get("field").and_then(Value::as_str),
            case.field,
            "{backend:?} {ids:?}: {name}: field in {body}"
        );
        let after = snapshot(&h).await;
        assert_eq!(
            after, before,
            "{backend:?} {ids:?}: {name}: the rejected request changed the state"
        );
    }
}

macro_rules! backends {
    ($($test:ident: $backend:ident, $ids:ident;)*) => {
        $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            every_bad_input_is_refused_and_changes_nothing(Backend::$backend, Ids::$ids).await;
        })*
    };
}

backends! {
    the_embedded_store_refuses_every_bad_input_and_changes_nothing: Embedded, Integer;
    the_redis_set_store_refuses_every_bad_input_and_changes_nothing: RedisSet, Integer;
    the_redis_per_user_store_refuses_every_bad_input_and_changes_nothing: RedisPerUser, Integer;
    the_redis_bitmap_store_refuses_every_bad_input_and_changes_nothing: RedisBitmap, Integer;
    string_campaigns_on_the_embedded_store_refuse_every_bad_input: Embedded, String;
    string_campaigns_on_redis_set_refuse_every_bad_input: RedisSet, String;
    string_campaigns_on_redis_per_user_refuse_every_bad_input: RedisPerUser, String;
    uuid_campaigns_on_the_embedded_store_refuse_every_bad_input: Embedded, Uuid;
    uuid_campaigns_on_redis_set_refuse_every_bad_input: RedisSet, Uuid;
    uuid_campaigns_on_redis_per_user_refuse_every_bad_input: RedisPerUser, Uuid;
}
