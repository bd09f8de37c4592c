//! String and UUID user IDs through the HTTP API: the per-campaign
//! `user_id_type`, uploads in every format, checks with percent-encoded
//! users, cross-type "which campaigns", batch checks, the export, previews,
//! history, and the bad-input table for each type.
//!
//! Each case runs on every backend that holds the type: the embedded store
//! and Redis with the `set` and `per-user` designs (`bitmap` takes integers
//! only, which the bad-input table pins). The last tests read the Redis
//! layout itself with `redis-cli`.

mod common;

use axum::http::{Method, StatusCode};
use chrono::{Duration as Span, Utc};
use common::typed::percent_encode;
use common::{ADMIN, Backend, Harness};
use serde_json::{Value, json};

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(&super::Harness::new(super::Backend::Embedded).await).await })*
        }
        mod redis_set {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(&super::Harness::new(super::Backend::RedisSet).await).await })*
        }
        mod redis_per_user {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(&super::Harness::new(super::Backend::RedisPerUser).await).await })*
        }
    };
}

suite!(
    string_ids_are_held_exactly_and_checked_by_percent_encoded_path,
    a_256_byte_id_is_accepted_and_a_257_byte_one_refused_with_its_line,
    uuids_in_any_form_are_found_by_their_canonical_form,
    which_campaigns_reads_the_user_as_each_campaigns_type,
    batch_checks_take_strings_and_integers,
    json_and_csv_exports_load_string_audiences,
    add_remove_and_dry_run_work_on_strings,
    rollback_restores_a_string_audience_exactly,
    the_bad_input_table_refuses_and_changes_nothing,
);

async fn create_typed(h: &Harness, id: &str, id_type: &str, design: &str) -> (StatusCode, Value) {
    let now = Utc::now();
    h.post_json(
        "/v1/campaigns",
        json!({
            "id": id,
            "name": format!("Campaign {id}"),
            "starts_at": (now - Span::hours(1)).to_rfc3339(),
            "ends_at": (now + Span::hours(1)).to_rfc3339(),
            "design": design,
            "user_id_type": id_type,
        }),
    )
    .await
}

async fn typed(h: &Harness, id: &str, id_type: &str) {
    let (status, body) = create_typed(h, id, id_type, h.design()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["user_id_type"], id_type);
    let (_, audit) = h.get(&format!("/v1/audit?campaign={id}&limit=1")).await;
    let summary = audit["events"][0]["summary"].as_str().unwrap_or_default();
    assert!(summary.contains(&format!("{id_type} IDs")), "{audit}");
}

/// `GET /v1/campaigns/{id}/members/{user}` with the user percent-encoded.
async fn member(h: &Harness, id: &str, user: &str) -> (StatusCode, Value) {
    let encoded = percent_encode(user);
    h.get(&format!("/v1/campaigns/{id}/members/{encoded}"))
        .await
}

/// One field of every result of a batch check, in order.
fn column(answer: &Value, field: &str) -> Vec<Value> {
    answer["results"]
        .as_array()
        .expect("a results array")
        .iter()
        .map(|result| result[field].clone())
        .collect()
}

async fn export_text(h: &Harness, id: &str) -> Vec<String> {
    let (status, body) = h
        .send(
            Method::GET,
            &format!("/v1/campaigns/{id}/audience"),
            Some(ADMIN),
            None,
            axum::body::Body::empty(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    match body {
        Value::String(s) => s.lines().map(str::to_string).collect(),
        other => vec![other.to_string()],
    }
}

async fn string_ids_are_held_exactly_and_checked_by_percent_encoded_path(h: &Harness) {
    typed(h, "emails", "string").await;
    let body = "alice@example.com\r\na+b@example.com\n  spaced out  \nAlice@example.com\n42\nalice@example.com\nÉlodie/ü?#%\n";
    let (status, r) = h.upload("emails", "replace", "text/plain", body).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        (r["received"].clone(), r["duplicates"].clone()),
        (json!(7), json!(1))
    );
    assert_eq!(r["audience_size"], 6);
    for (user, want) in [
        ("a+b@example.com", true),
        ("alice@example.com", true),
        ("Alice@example.com", true),
        ("ALICE@example.com", false),
        ("spaced out", true),
        ("42", true),
        ("Élodie/ü?#%", true),
        ("a b@example.com", false),
    ] {
        let (status, answer) = member(h, "emails", user).await;
        assert_eq!(status, StatusCode::OK, "{user}: {answer}");
        assert_eq!(answer["member"], want, "{user}: {answer}");
        assert_eq!(
            answer["user_id"], user,
            "a string campaign echoes the string"
        );
    }
    // The export returns the exact strings, sorted bytewise.
    let mut want = vec![
        "42",
        "Alice@example.com",
        "a+b@example.com",
        "alice@example.com",
        "spaced out",
        "Élodie/ü?#%",
    ];
    want.sort();
    assert_eq!(export_text(h, "emails").await, want);
}

async fn a_256_byte_id_is_accepted_and_a_257_byte_one_refused_with_its_line(h: &Harness) {
    typed(h, "long", "string").await;
    let ok = "x".repeat(256);
    let (status, r) = h
        .upload("long", "replace", "text/plain", format!("a\n{ok}\n"))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(member(h, "long", &ok).await.1["member"], true);
    let too_long = "y".repeat(257);
    let (status, e) = h
        .upload(
            "long",
            "replace",
            "text/plain",
            format!("b\nc\n{too_long}\nd\n"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["error"], "invalid_user_id");
    assert_eq!(e["line"], 3, "{e}");
    assert!(e["message"].as_str().unwrap().contains("257 bytes"), "{e}");
    // Nothing changed.
    let c = h.get("/v1/campaigns/long").await.1;
    assert_eq!(
        (c["version"].clone(), c["audience_size"].clone()),
        (json!(1), json!(2))
    );
    assert_eq!(member(h, "long", "b").await.1["member"], false);
    // A path check of a 257-byte user is refused too.
    let (status, e) = member(h, "long", &too_long).await;
    assert_eq!(
        (status, e["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_user_id"))
    );
}

async fn uuids_in_any_form_are_found_by_their_canonical_form(h: &Harness) {
    typed(h, "devices", "uuid").await;
    let body = "3F2A6C1E-8B7D-4C2A-9E1F-0A1B2C3D4E5F\n{0b8f7c44-1d2e-4f3a-8b9c-aabbccddeeff}\n3f2a6c1e8b7d4c2a9e1f0a1b2c3d4e5f\n";
    let (status, r) = h.upload("devices", "replace", "text/plain", body).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        (r["audience_size"].clone(), r["duplicates"].clone()),
        (json!(2), json!(1))
    );
    let (status, answer) = member(h, "devices", "3f2a6c1e-8b7d-4c2a-9e1f-0a1b2c3d4e5f").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["member"], true);
    assert_eq!(answer["user_id"], "3f2a6c1e-8b7d-4c2a-9e1f-0a1b2c3d4e5f");
    let (_, answer) = member(
        h,
        "devices",
        "urn:uuid:0B8F7C44-1D2E-4F3A-8B9C-AABBCCDDEEFF",
    )
    .await;
    assert_eq!(answer["member"], true, "{answer}");
    assert_eq!(answer["user_id"], "0b8f7c44-1d2e-4f3a-8b9c-aabbccddeeff");
    assert_eq!(
        member(h, "devices", "00000000-0000-0000-0000-000000000000")
            .await
            .1["member"],
        false
    );
    assert_eq!(
        export_text(h, "devices").await,
        [
            "0b8f7c44-1d2e-4f3a-8b9c-aabbccddeeff",
            "3f2a6c1e-8b7d-4c2a-9e1f-0a1b2c3d4e5f"
        ]
    );
    let (status, e) = member(h, "devices", "not-a-uuid").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["error"], "invalid_user_id");
    assert!(e["message"].as_str().unwrap().contains("UUID"), "{e}");
}

async fn which_campaigns_reads_the_user_as_each_campaigns_type(h: &Harness) {
    h.active("numbers").await;
    h.replace("numbers", &[42, 7]).await;
    typed(h, "names", "string").await;
    h.upload("names", "replace", "text/plain", "42\nalice@example.com\n")
        .await;
    typed(h, "devices", "uuid").await;
    h.upload(
        "devices",
        "replace",
        "text/plain",
        "3f2a6c1e-8b7d-4c2a-9e1f-0a1b2c3d4e5f\n",
    )
    .await;
    let campaigns = |v: Value| v["campaigns"].clone();
    let (status, r) = h.get("/v1/users/42/campaigns").await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(campaigns(r.clone()), json!(["names", "numbers"]));
    assert_eq!(
        r["user_id"], 42,
        "an integer-looking user is shown as a number"
    );
    let (_, r) = h.get("/v1/users/alice%40example.com/campaigns").await;
    assert_eq!(campaigns(r.clone()), json!(["names"]));
    assert_eq!(r["user_id"], "alice@example.com");
    let (_, r) = h
        .get("/v1/users/3F2A6C1E-8B7D-4C2A-9E1F-0A1B2C3D4E5F/campaigns")
        .await;
    assert_eq!(campaigns(r), json!(["devices"]));
    let (_, r) = h.get("/v1/users/7/campaigns").await;
    assert_eq!(campaigns(r), json!(["numbers"]));
    // Only a user no type can hold is refused.
    let (status, e) = h
        .get(&format!("/v1/users/{}/campaigns", "z".repeat(300)))
        .await;
    assert_eq!(
        (status, e["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_user_id"))
    );
    // A single-campaign check still holds the user to the campaign's type.
    let (status, e) = member(h, "numbers", "alice@example.com").await;
    assert_eq!(
        (status, e["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_user_id"))
    );
}

async fn batch_checks_take_strings_and_integers(h: &Harness) {
    h.active("numbers").await;
    h.replace("numbers", &[42]).await;
    typed(h, "names", "string").await;
    h.upload("names", "replace", "text/plain", "42\nbob\n")
        .await;
    let (status, r) = h
        .post_json(
            "/v1/check",
            json!({"user_ids": [42, "bob", "42", "nobody"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let lists = column(&r, "campaigns");
    assert_eq!(
        lists,
        [
            json!(["names", "numbers"]),
            json!(["names"]),
            json!(["names", "numbers"]),
            json!([])
        ]
    );
    let (status, r) = h
        .post_json(
            "/v1/check",
            json!({"campaign": "names", "user_ids": ["bob", 42, "Bob"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let members = column(&r, "member");
    assert_eq!(members, [json!(true), json!(true), json!(false)]);
    let users = column(&r, "user_id");
    assert_eq!(
        users,
        [json!("bob"), json!("42"), json!("Bob")],
        "named as the string campaign reads them"
    );
    let (status, e) = h
        .post_json(
            "/v1/check",
            json!({"campaign": "numbers", "user_ids": [42, "bob"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["error"], "invalid_user_id");
    let (status, e) = h
        .post_json("/v1/check", json!({"user_ids": ["ok", ""]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("user_ids[1]"),
        "{e}"
    );
}

async fn json_and_csv_exports_load_string_audiences(h: &Harness) {
    typed(h, "crm", "string").await;
    let (status, r) = h
        .upload(
            "crm",
            "replace",
            "application/json",
            r#"["carol@example.com", " dave ", 17, "carol@example.com"]"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        export_text(h, "crm").await,
        ["17", "carol@example.com", "dave"]
    );
    // A warehouse export: five columns, a header, quoted fields holding
    // commas, quotes and a line break, CRLF line ends.
    let csv = "id,email,\"name, full\",plan,notes\r\n\
               1,erin@example.com,\"Erin, E.\",pro,\"said \"\"hi\"\"\"\r\n\
               2,\"frank+test@example.com\",Frank,free,\"two\r\nlines\"\r\n\
               3,grace@example.com,\"Grace \"\"G\"\" H\",pro,\r\n";
    let (status, r) = h
        .send(
            Method::PUT,
            "/v1/campaigns/crm/audience?column=email",
            Some(ADMIN),
            Some("text/csv; header=present"),
            csv,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        export_text(h, "crm").await,
        [
            "erin@example.com",
            "frank+test@example.com",
            "grace@example.com"
        ]
    );
    // An undeclared header is an ID like any other for strings.
    let (status, _) = h
        .upload("crm", "replace", "text/csv", "email\nzoe@example.com\n")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(export_text(h, "crm").await, ["email", "zoe@example.com"]);
}

async fn add_remove_and_dry_run_work_on_strings(h: &Harness) {
    typed(h, "s", "string").await;
    h.upload("s", "replace", "text/plain", "a\nb\nc\n").await;
    let (status, r) = h.upload("s", "add", "text/plain", "c\nd\ne\n").await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        (r["added"].clone(), r["audience_size"].clone()),
        (json!(2), json!(5))
    );
    let (status, r) = h.upload("s", "remove", "text/plain", "a\nzz\n").await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        (r["removed"].clone(), r["audience_size"].clone()),
        (json!(1), json!(4))
    );
    let before = h.get("/v1/campaigns/s").await.1;
    let (status, r) = h
        .send(
            Method::PUT,
            "/v1/campaigns/s/audience?dry_run=true",
            Some(ADMIN),
            Some("text/plain"),
            "b\nnew\n",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["would_add"], 1);
    assert_eq!(r["would_remove"], 3);
    assert_eq!(r["would_add_sample"], json!(["new"]));
    assert_eq!(r["would_remove_sample"], json!(["c", "d", "e"]));
    assert_eq!(
        h.get("/v1/campaigns/s").await.1,
        before,
        "a dry run changes nothing"
    );
}

async fn rollback_restores_a_string_audience_exactly(h: &Harness) {
    typed(h, "s", "string").await;
    h.upload("s", "replace", "text/plain", "b@x\na,\"q\"@x\n")
        .await;
    h.upload("s", "replace", "text/plain", "other\n").await;
    let (status, r) = h
        .post_json("/v1/campaigns/s/rollback", json!({"version": 1}))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(export_text(h, "s").await, ["a,\"q\"@x", "b@x"]);
    typed(h, "r", "uuid").await;
    let v1 = "11111111-1111-1111-1111-111111111111\n22222222-2222-2222-2222-222222222222\n";
    h.upload("r", "replace", "text/plain", v1).await;
    h.upload(
        "r",
        "replace",
        "text/plain",
        "33333333-3333-3333-3333-333333333333\n",
    )
    .await;
    let (status, r) = h
        .post_json("/v1/campaigns/r/rollback", json!({"version": 1}))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["version"], 3);
    assert_eq!(
        export_text(h, "r").await,
        [
            "11111111-1111-1111-1111-111111111111",
            "22222222-2222-2222-2222-222222222222"
        ]
    );
}

async fn the_bad_input_table_refuses_and_changes_nothing(h: &Harness) {
    typed(h, "s", "string").await;
    typed(h, "u", "uuid").await;
    h.upload("s", "replace", "text/plain", "keep\n").await;
    h.upload(
        "u",
        "replace",
        "text/plain",
        "44444444-4444-4444-4444-444444444444\n",
    )
    .await;
    let cases: [(&str, &str, &str, u64, &str); 7] = [
        ("s", "text/plain", "ok\nalice\u{a0}\n", 2, "white space"),
        (
            "s",
            "text/plain",
            "ok\nbad\u{7}bell\n",
            2,
            "control character",
        ),
        ("s", "application/json", r#"["ok", ""]"#, 1, "empty"),
        ("s", "application/json", r#"["ok", -1]"#, 1, "not a user id"),
        (
            "u",
            "text/plain",
            "44444444-4444-4444-4444-444444444444\n4444\n",
            2,
            "not a UUID",
        ),
        ("u", "application/json", r#"[42]"#, 1, "not a user id"),
        ("u", "text/csv", "x,y\n1,2\n", 1, "name the ID column"),
    ];
    for (id, content_type, body, line, words) in cases {
        let before = h.get(&format!("/v1/campaigns/{id}")).await.1;
        let (status, e) = h.upload(id, "replace", content_type, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}: {e}");
        assert_eq!(e["line"], line, "{body:?}: {e}");
        assert!(
            e["message"].as_str().unwrap().contains(words),
            "{body:?}: {e}"
        );
        assert_eq!(
            h.get(&format!("/v1/campaigns/{id}")).await.1,
            before,
            "{body:?}"
        );
    }
    // The bitmap design takes integers only.
    for id_type in ["string", "uuid"] {
        let (status, e) = create_typed(h, "bm", id_type, "bitmap").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
        assert_eq!(e["error"], "design_needs_integer_ids");
        assert_eq!(e["field"], "user_id_type");
        assert_eq!(h.get("/v1/campaigns/bm").await.0, StatusCode::NOT_FOUND);
    }
    let (status, e) = create_typed(h, "bad", "email", "set").await;
    assert_eq!(
        (status, e["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_campaign"))
    );
}

/// The Redis layout is a public contract: the `set` design's members are
/// the canonical texts, so another application's `SISMEMBER` answers for
/// a UUID in its lowercase form and for a string exactly as uploaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_set_members_are_the_canonical_texts() {
    let h = Harness::new(Backend::RedisSet).await;
    typed(&h, "devices", "uuid").await;
    let body =
        "3F2A6C1E-8B7D-4C2A-9E1F-0A1B2C3D4E5F\nurn:uuid:0b8f7c44-1d2e-4f3a-8b9c-aabbccddeeff\n";
    let (status, r) = h.upload("devices", "replace", "text/plain", body).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let sismember = |key: &str, member: &str| h.redis().cli(&["SISMEMBER", key, member]);
    let devices = "guestlist:{devices}:members";
    for canonical in [
        "3f2a6c1e-8b7d-4c2a-9e1f-0a1b2c3d4e5f",
        "0b8f7c44-1d2e-4f3a-8b9c-aabbccddeeff",
    ] {
        assert_eq!(sismember(devices, canonical).trim(), "1", "{canonical}");
    }
    assert_eq!(
        sismember(devices, "3F2A6C1E-8B7D-4C2A-9E1F-0A1B2C3D4E5F").trim(),
        "0",
        "only the canonical form is stored"
    );
    assert_eq!(h.redis().cli(&["SCARD", devices]).trim(), "2");

    typed(&h, "emails", "string").await;
    let body = "a+b@example.com\n\u{c9}lodie/\u{fc}?#%\n42\n";
    let (status, r) = h.upload("emails", "replace", "text/plain", body).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let emails = "guestlist:{emails}:members";
    for exact in ["a+b@example.com", "\u{c9}lodie/\u{fc}?#%", "42"] {
        assert_eq!(sismember(emails, exact).trim(), "1", "{exact}");
    }
    assert_eq!(sismember(emails, "A+B@example.com").trim(), "0");
    // An in-place change writes the same texts.
    let (status, r) = h
        .upload("emails", "remove", "text/plain", "a+b@example.com\n")
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(sismember(emails, "a+b@example.com").trim(), "0");
    assert_eq!(h.redis().cli(&["SCARD", emails]).trim(), "2");
}

/// `per-user` keys are tagged by the user's exact text: the integer 42 and
/// the string "42" share a key, and each campaign's field answers for its
/// own type only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_keys_are_tagged_by_the_exact_text() {
    let h = Harness::new(Backend::RedisPerUser).await;
    let (status, body) = create_typed(&h, "ints", "integer", "per-user").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    typed(&h, "strs", "string").await;
    typed(&h, "devices", "uuid").await;
    for (id, body) in [
        ("ints", "42\n7\n"),
        ("strs", "42\na+b@example.com\n"),
        ("devices", "3F2A6C1E-8B7D-4C2A-9E1F-0A1B2C3D4E5F\n"),
    ] {
        let (status, r) = h.upload(id, "replace", "text/plain", body).await;
        assert_eq!(status, StatusCode::OK, "{r}");
    }
    let fields = |user: &str| -> Vec<String> {
        let out = h
            .redis()
            .cli(&["HKEYS", &format!("guestlist:user:{{{user}}}:campaigns")]);
        let mut campaigns: Vec<String> = out
            .lines()
            .map(|f| f.split(':').next().unwrap_or_default().to_string())
            .collect();
        campaigns.sort();
        campaigns
    };
    assert_eq!(fields("42"), ["ints", "strs"]);
    assert_eq!(fields("a+b@example.com"), ["strs"]);
    assert_eq!(fields("3f2a6c1e-8b7d-4c2a-9e1f-0a1b2c3d4e5f"), ["devices"]);
    assert_eq!(
        h.get("/v1/users/42/campaigns").await.1["campaigns"],
        json!(["ints", "strs"])
    );

    // Removing the string "42" leaves the integer 42 where it was.
    let (status, r) = h.upload("strs", "remove", "text/plain", "42\n").await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(member(&h, "strs", "42").await.1["member"], false);
    assert_eq!(member(&h, "ints", "42").await.1["member"], true);
    assert_eq!(
        h.get("/v1/users/42/campaigns").await.1["campaigns"],
        json!(["ints"])
    );
    let (_, answer) = member(&h, "devices", "3F2A6C1E8B7D4C2A9E1F0A1B2C3D4E5F").await;
    assert_eq!(answer["member"], true, "{answer}");
}
