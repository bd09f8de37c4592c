//! A stateful property test: random sequences of API calls run against each
//! backend, and after every step the responses and every read are compared
//! with a small reference model (campaign → window, version and audience).
//!
//! The domains are tiny on purpose (three campaigns, forty users, a few large
//! ids) so that random sequences collide: creating what exists, removing what
//! was never added, replacing a deleted campaign's audience. An occasional
//! upload carries 1,200 filler ids so the big-change path (a rebuild instead
//! of an in-place delta) runs too.
//!
//! Each backend keeps one harness (one redis-server) for all its cases:
//! starting a server per case would cost more than the cases themselves. A
//! case starts by deleting every campaign through the API, and its campaigns
//! "a", "b" and "c" are stored as "a-<case>" and so on, so that nothing an
//! earlier case left behind (say, a deleted audience that still answers) can
//! leak into a later case and make its minimal sequence misleading. The same
//! leftovers are why the reset is not `FLUSHALL`: it would also reset the
//! generation counter, and clean-up tasks still pending from an earlier case
//! could then delete entries of a new audience that reused an old number.
//!
//! `PROPTEST_CASES` raises the number of cases for a longer hunt.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use axum::http::StatusCode;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use common::{Backend, Harness};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestCaseResult, TestError, TestRunner};
use proptest_state_machine::ReferenceStateMachine;
use serde_json::{Value, json};

const CAMPAIGNS: [&str; 3] = ["a", "b", "c"];
/// Ids around the bitmap design's limit (2^32 - 1) and the top of u64.
const LARGE_USERS: [u64; 4] = [4_000_000_000, u32::MAX as u64, 1 << 32, u64::MAX];
/// More than the stores' 1,000-id delta limit, disjoint from every other id.
const FILLER: std::ops::Range<u64> = 10_000..11_200;

const NO_LIMIT: u64 = u64::MAX;

/// The bitmap design refuses an audience whose bitmap (one bit per id up to
/// the largest) would take more than 1 MiB and more than the same ids as a
/// SET (48 bytes each).
fn bitmap_too_sparse(audience: &BTreeSet<u64>) -> bool {
    audience.last().is_some_and(|max| {
        let bytes = max / 8 + 1;
        bytes > 1 << 20 && bytes > 48 * audience.len() as u64
    })
}
const BITMAP_LIMIT: u64 = u32::MAX as u64;

const CASES: u32 = 32;
const MAX_TRANSITIONS: usize = 30;

#[test]
fn embedded() {
    run::<NO_LIMIT>(Backend::Embedded);
}

#[test]
fn redis_set() {
    run::<NO_LIMIT>(Backend::RedisSet);
}

#[test]
fn redis_per_user() {
    run::<NO_LIMIT>(Backend::RedisPerUser);
}

#[test]
fn redis_bitmap() {
    run::<BITMAP_LIMIT>(Backend::RedisBitmap);
}

// ---------------------------------------------------------------------------
// Transitions

/// A campaign window, relative to when the test started. Fixed shapes rather
/// than random instants so the model knows every timestamp exactly; none of
/// them changes status while a test runs, and `Ended` stays well inside the
/// Redis retention so an ended audience is still there when reopened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Window {
    Active,
    /// Also active, with other bounds, so a patch visibly moves it.
    Extended,
    Ended,
    Scheduled,
    /// Ends before it starts: refused with 400.
    Backwards,
}

impl Window {
    /// (starts_at, ends_at) in hours from the test's start.
    fn hours(self) -> (i64, i64) {
        match self {
            Window::Active => (-1, 1),
            Window::Extended => (-2, 3),
            Window::Ended => (-3, -1),
            Window::Scheduled => (1, 3),
            Window::Backwards => (1, -1),
        }
    }

    fn status(self) -> &'static str {
        match self {
            Window::Active | Window::Extended => "active",
            Window::Ended => "ended",
            Window::Scheduled => "scheduled",
            Window::Backwards => unreachable!("a backwards window is never stored"),
        }
    }

    fn is_active(self) -> bool {
        self.status() == "active"
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Replace,
    Add,
    Remove,
}

/// How an audience body is written; every form must parse to the same ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// `application/json`, an array.
    Json,
    /// `text/plain`, one id per line.
    Lines,
    /// `text/plain` with a header line.
    Header,
    /// `text/csv` with a BOM, a header, CRLF, padding and a blank line.
    Csv,
}

#[derive(Clone, Debug)]
enum Transition {
    Create(&'static str),
    Delete(&'static str),
    Patch {
        campaign: &'static str,
        window: Window,
        rename: Option<&'static str>,
    },
    Upload {
        op: Op,
        campaign: &'static str,
        ids: Vec<u64>,
        /// Appends the 1,200 `FILLER` ids (kept out of `ids` so a failing
        /// sequence still prints readably).
        filler: bool,
        format: Format,
    },
}

impl Transition {
    fn upload_ids(ids: &[u64], filler: bool) -> Vec<u64> {
        let mut all = ids.to_vec();
        if filler {
            all.extend(FILLER);
        }
        all
    }
}

fn any_campaign() -> BoxedStrategy<&'static str> {
    prop::sample::select(CAMPAIGNS.to_vec()).boxed()
}

/// Mostly a campaign that exists, so that most steps change something
/// rather than answer 404.
fn target_campaign(model: &Model) -> BoxedStrategy<&'static str> {
    let existing: Vec<&'static str> = model.campaigns.keys().copied().collect();
    if existing.is_empty() {
        return any_campaign();
    }
    prop_oneof![1 => any_campaign(), 3 => prop::sample::select(existing)].boxed()
}

/// Mostly small ids; some large ones; and, once audiences exist, their
/// members, so removals and repeated adds hit.
fn user(model: &Model) -> BoxedStrategy<u64> {
    let small = 0..40u64;
    let large = prop::sample::select(LARGE_USERS.to_vec());
    let members: BTreeSet<u64> = model
        .campaigns
        .values()
        .flat_map(|c| c.audience.iter().copied())
        .filter(|u| !FILLER.contains(u))
        .collect();
    if members.is_empty() {
        return prop_oneof![8 => small, 1 => large].boxed();
    }
    let members = prop::sample::select(members.into_iter().collect::<Vec<_>>());
    prop_oneof![8 => small, 1 => large, 4 => members].boxed()
}

fn transition(model: &Model) -> impl Strategy<Value = Transition> + use<> {
    let op = prop_oneof![Just(Op::Replace), Just(Op::Add), Just(Op::Remove)];
    let format = prop_oneof![
        Just(Format::Json),
        Just(Format::Lines),
        Just(Format::Header),
        Just(Format::Csv),
    ];
    let window = prop_oneof![
        Just(Window::Active),
        Just(Window::Extended),
        Just(Window::Ended),
        Just(Window::Scheduled),
        Just(Window::Backwards),
    ];
    let rename = prop::option::of(prop::sample::select(vec!["Spring", "Summer"]));
    // Creating is likelier while few campaigns exist, so a sequence does not
    // spend its first steps on 404s.
    let create = [12, 4, 2, 1][model.campaigns.len()];
    prop_oneof![
        create => any_campaign().prop_map(Transition::Create),
        1 => target_campaign(model).prop_map(Transition::Delete),
        2 => (target_campaign(model), window, rename).prop_map(|(campaign, window, rename)| {
            Transition::Patch { campaign, window, rename }
        }),
        9 => (
            op,
            target_campaign(model),
            prop::collection::vec(user(model), 0..8),
            prop::bool::weighted(0.1),
            format,
        )
            .prop_map(|(op, campaign, ids, filler, format)| Transition::Upload {
                op,
                campaign,
                ids,
                filler,
                format,
            }),
    ]
}

// ---------------------------------------------------------------------------
// The reference model

#[derive(Clone, Debug)]
struct Campaign {
    name: String,
    window: Window,
    /// The model pins one step per change: the README promises only an
    /// increase, but both stores count by one, and a double bump is a bug.
    version: u64,
    audience: BTreeSet<u64>,
}

#[derive(Clone, Debug)]
struct Model {
    /// The largest id the backend's design accepts.
    max_user_id: u64,
    campaigns: BTreeMap<&'static str, Campaign>,
}

/// What the API must answer to one transition.
#[derive(Debug)]
enum Outcome {
    /// An error with this status and `error` code.
    Error(StatusCode, &'static str),
    /// This status, and the body is the campaign as the model now holds it.
    Campaign(StatusCode, &'static str),
    /// 204, empty.
    Deleted,
    /// 200 with exactly this body.
    Audience(Value),
}

impl Model {
    fn new(max_user_id: u64) -> Model {
        Model {
            max_user_id,
            campaigns: BTreeMap::new(),
        }
    }

    /// Applies one transition and says what the API must answer.
    fn step(&mut self, transition: &Transition) -> Outcome {
        const NOT_FOUND: Outcome = Outcome::Error(StatusCode::NOT_FOUND, "campaign_not_found");
        match *transition {
            Transition::Create(id) => {
                if self.campaigns.contains_key(id) {
                    return Outcome::Error(StatusCode::CONFLICT, "campaign_exists");
                }
                let campaign = Campaign {
                    name: format!("Campaign {id}"),
                    window: Window::Active,
                    version: 0,
                    audience: BTreeSet::new(),
                };
                self.campaigns.insert(id, campaign);
                Outcome::Campaign(StatusCode::CREATED, id)
            }
            Transition::Delete(id) => match self.campaigns.remove(id) {
                Some(_) => Outcome::Deleted,
                None => NOT_FOUND,
            },
            Transition::Patch {
                campaign: id,
                window,
                rename,
            } => {
                let Some(campaign) = self.campaigns.get_mut(id) else {
                    return NOT_FOUND;
                };
                if window == Window::Backwards {
                    return Outcome::Error(StatusCode::BAD_REQUEST, "invalid_campaign");
                }
                campaign.window = window;
                if let Some(name) = rename {
                    campaign.name = name.to_string();
                }
                Outcome::Campaign(StatusCode::OK, id)
            }
            Transition::Upload {
                op,
                campaign: id,
                ref ids,
                filler,
                format,
            } => {
                let Some(campaign) = self.campaigns.get_mut(id) else {
                    return NOT_FOUND;
                };
                let sent = Transition::upload_ids(ids, filler);
                // Only JSON can say "no ids" (`[]`); an empty text body is
                // taken for a mistake.
                if sent.is_empty() && format != Format::Json {
                    return Outcome::Error(StatusCode::BAD_REQUEST, "empty_audience");
                }
                if sent.iter().any(|&u| u > self.max_user_id) {
                    return Outcome::Error(StatusCode::BAD_REQUEST, "user_id_out_of_range");
                }
                let distinct: BTreeSet<u64> = sent.iter().copied().collect();
                let bitmap = self.max_user_id == BITMAP_LIMIT;
                let too_sparse = |audience: &BTreeSet<u64>| bitmap && bitmap_too_sparse(audience);
                const TOO_SPARSE: Outcome =
                    Outcome::Error(StatusCode::BAD_REQUEST, "bitmap_too_sparse");
                match op {
                    Op::Replace => {
                        if too_sparse(&distinct) {
                            return TOO_SPARSE;
                        }
                        campaign.audience = distinct.clone();
                        campaign.version += 1;
                        Outcome::Audience(json!({
                            "audience_size": campaign.audience.len(),
                            "version": campaign.version,
                            "received": sent.len(),
                            "duplicates": sent.len() - distinct.len(),
                        }))
                    }
                    Op::Add => {
                        let union: BTreeSet<u64> =
                            campaign.audience.union(&distinct).copied().collect();
                        if union.len() > campaign.audience.len() && too_sparse(&union) {
                            return TOO_SPARSE;
                        }
                        let before = campaign.audience.len();
                        campaign.audience.extend(distinct.iter().copied());
                        let added = campaign.audience.len() - before;
                        if added > 0 {
                            campaign.version += 1;
                        }
                        Outcome::Audience(json!({
                            "audience_size": campaign.audience.len(),
                            "version": campaign.version,
                            "added": added,
                            "received": sent.len(),
                            "duplicates": sent.len() - distinct.len(),
                        }))
                    }
                    Op::Remove => {
                        let before = campaign.audience.len();
                        campaign.audience.retain(|u| !distinct.contains(u));
                        let removed = before - campaign.audience.len();
                        if removed > 0 {
                            campaign.version += 1;
                        }
                        Outcome::Audience(json!({
                            "audience_size": campaign.audience.len(),
                            "version": campaign.version,
                            "removed": removed,
                            "received": sent.len(),
                            "duplicates": sent.len() - distinct.len(),
                        }))
                    }
                }
            }
        }
    }

    /// Active campaigns holding `user`, sorted.
    fn campaigns_of(&self, user: u64) -> Vec<&'static str> {
        self.campaigns
            .iter()
            .filter(|(_, c)| c.window.is_active() && c.audience.contains(&user))
            .map(|(id, _)| *id)
            .collect()
    }
}

/// The model for a backend whose design takes ids up to `MAX_USER_ID`.
struct Reference<const MAX_USER_ID: u64>;

impl<const MAX_USER_ID: u64> ReferenceStateMachine for Reference<MAX_USER_ID> {
    type State = Model;
    type Transition = Transition;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model::new(MAX_USER_ID)).boxed()
    }

    // The state only biases what is drawn. Every transition is valid in
    // every state (a wrong one has a defined error), so shrinking may drop
    // any step without preconditions getting in the way.
    fn transitions(state: &Model) -> BoxedStrategy<Transition> {
        transition(state).boxed()
    }

    fn apply(mut state: Model, transition: &Transition) -> Model {
        state.step(transition);
        state
    }
}

// ---------------------------------------------------------------------------
// Driving the API

/// Users whose answers are read after every step: all small ones, the large
/// ones and the filler's edges.
fn probed_users() -> Vec<u64> {
    (0..40)
        .chain(LARGE_USERS)
        .chain([FILLER.start, FILLER.end - 1])
        .collect()
}

/// Users also checked one by one through the single-answer endpoints.
const SPOT_USERS: [u64; 6] = [0, 1, 39, 4_000_000_000, 1 << 32, 10_000];

/// One backend under test: the harness, the runtime it lives on, the
/// instant the windows are measured from, and the number of the running case.
struct Sut {
    runtime: tokio::runtime::Runtime,
    harness: Harness,
    t0: DateTime<Utc>,
    case: AtomicU64,
}

/// Runs the property on `backend`, whose design accepts ids up to `MAX_USER_ID`.
fn run<const MAX_USER_ID: u64>(backend: Backend) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let harness = runtime.block_on(Harness::new(backend));
    assert_eq!(
        MAX_USER_ID == BITMAP_LIMIT,
        harness.design() == "bitmap",
        "the model's id limit must match the design"
    );
    // Whole seconds, so the timestamps the API echoes match exactly.
    let t0 = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let sut = Sut {
        runtime,
        harness,
        t0,
        case: AtomicU64::new(0),
    };

    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CASES);
    let config = Config {
        cases,
        // The minimal sequence is printed below; no regression files.
        failure_persistence: None,
        max_shrink_iters: 4_096,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let strategy = Reference::<MAX_USER_ID>::sequential_strategy(1..=MAX_TRANSITIONS);
    let result = runner.run(&strategy, |(model, transitions, seen)| {
        sut.runtime
            .block_on(sut.case(model, &transitions, seen.as_deref()))
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, (_, transitions, _))) => {
            let steps: Vec<String> = transitions
                .iter()
                .enumerate()
                .map(|(i, t)| format!("  {:>2}. {t:?}", i + 1))
                .collect();
            panic!(
                "{backend:?}: {reason}\nminimal failing sequence:\n{}",
                steps.join("\n")
            );
        }
        Err(TestError::Abort(reason)) => panic!("{backend:?}: aborted: {reason}"),
    }
}

impl Sut {
    /// One case: a clean slate, then each transition checked against the model.
    async fn case(
        &self,
        mut model: Model,
        transitions: &[Transition],
        seen: Option<&AtomicUsize>,
    ) -> TestCaseResult {
        self.reset().await?;
        self.case.fetch_add(1, Ordering::SeqCst);
        for transition in transitions {
            // Tells the shrinker how far this case got, so it can drop the
            // steps after a failure first.
            if let Some(seen) = seen {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            let want = model.step(transition);
            let (status, body) = self.send(transition).await;
            self.check_outcome(&model, &want, status, &body)?;
            self.check_reads(&model).await?;
        }
        Ok(())
    }

    async fn reset(&self) -> TestCaseResult {
        let h = &self.harness;
        let (status, body) = h.get("/v1/campaigns").await;
        prop_assert_eq!(status, StatusCode::OK, "listing before a case: {}", body);
        for c in body["campaigns"].as_array().unwrap() {
            let id = c["id"].as_str().unwrap();
            let (status, body) = h.delete(&format!("/v1/campaigns/{id}")).await;
            prop_assert_eq!(status, StatusCode::NO_CONTENT, "clean-up: {}", body);
        }
        Ok(())
    }

    /// The stored id of the model's campaign `name` in the running case.
    fn id(&self, name: &str) -> String {
        format!("{name}-{}", self.case.load(Ordering::SeqCst))
    }

    fn ids(&self, names: &[&str]) -> Vec<String> {
        names.iter().map(|name| self.id(name)).collect()
    }

    fn time(&self, hours: i64) -> String {
        (self.t0 + Duration::hours(hours)).to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    async fn send(&self, transition: &Transition) -> (StatusCode, Value) {
        let h = &self.harness;
        match transition {
            Transition::Create(name) => {
                let (start, end) = Window::Active.hours();
                let body = json!({
                    "id": self.id(name),
                    "name": format!("Campaign {name}"),
                    "starts_at": self.time(start),
                    "ends_at": self.time(end),
                    "design": h.design(),
                });
                h.post_json("/v1/campaigns", body).await
            }
            Transition::Delete(name) => h.delete(&format!("/v1/campaigns/{}", self.id(name))).await,
            Transition::Patch {
                campaign,
                window,
                rename,
            } => {
                let (start, end) = window.hours();
                let mut body = json!({"starts_at": self.time(start), "ends_at": self.time(end)});
                if let Some(name) = rename {
                    body["name"] = json!(name);
                }
                h.patch_json(&format!("/v1/campaigns/{}", self.id(campaign)), body)
                    .await
            }
            Transition::Upload {
                op,
                campaign,
                ids,
                filler,
                format,
            } => {
                let ids = Transition::upload_ids(ids, *filler);
                let op = match op {
                    Op::Replace => "replace",
                    Op::Add => "add",
                    Op::Remove => "remove",
                };
                let (content_type, body) = encode(&ids, *format);
                h.upload(&self.id(campaign), op, content_type, body).await
            }
        }
    }

    /// The campaign as the API must show it, less its timestamps of change.
    fn view(&self, name: &str, c: &Campaign) -> Value {
        let (start, end) = c.window.hours();
        json!({
            "id": self.id(name),
            "name": c.name,
            "starts_at": self.time(start),
            "ends_at": self.time(end),
            "status": c.window.status(),
            "design": self.harness.design(),
            "audience_size": c.audience.len(),
            "version": c.version,
        })
    }

    fn check_campaign(&self, what: &str, name: &str, c: &Campaign, got: &Value) -> TestCaseResult {
        let want = self.view(name, c);
        let shown: serde_json::Map<String, Value> = want
            .as_object()
            .unwrap()
            .keys()
            .map(|k| (k.clone(), got[k].clone()))
            .collect();
        prop_assert_eq!(Value::Object(shown), want, "{}: {}", what, got);
        Ok(())
    }

    fn check_outcome(
        &self,
        model: &Model,
        want: &Outcome,
        status: StatusCode,
        body: &Value,
    ) -> TestCaseResult {
        match want {
            Outcome::Error(code, error) => {
                prop_assert_eq!(
                    (status, body["error"].as_str()),
                    (*code, Some(*error)),
                    "response: {}",
                    body
                );
            }
            Outcome::Campaign(code, name) => {
                prop_assert_eq!(status, *code, "response: {}", body);
                self.check_campaign("response", name, &model.campaigns[name], body)?;
            }
            Outcome::Deleted => {
                prop_assert_eq!(status, StatusCode::NO_CONTENT, "response: {}", body);
            }
            Outcome::Audience(expected) => {
                prop_assert_eq!(
                    (status, body),
                    (StatusCode::OK, expected),
                    "audience change response"
                );
            }
        }
        Ok(())
    }

    /// Every read the API offers must agree with the model.
    async fn check_reads(&self, model: &Model) -> TestCaseResult {
        let h = &self.harness;

        let (status, body) = h.get("/v1/campaigns").await;
        prop_assert_eq!(status, StatusCode::OK, "list: {}", body);
        let listed: Vec<&str> = body["campaigns"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["id"].as_str())
            .collect();
        let known: Vec<&str> = model.campaigns.keys().copied().collect();
        prop_assert_eq!(listed, self.ids(&known), "GET /v1/campaigns: {}", body);

        for name in CAMPAIGNS {
            let path = format!("/v1/campaigns/{}", self.id(name));
            let (status, body) = h.get(&path).await;
            let export = h.get(&format!("{path}/audience")).await;
            let Some(c) = model.campaigns.get(name) else {
                prop_assert_eq!(status, StatusCode::NOT_FOUND, "GET {}: {}", path, body);
                prop_assert_eq!(export.0, StatusCode::NOT_FOUND, "export of {}", name);
                continue;
            };
            self.check_campaign(&format!("GET {path}"), name, c, &body)?;
            prop_assert_eq!(export.0, StatusCode::OK, "export of {}: {}", name, export.1);
            let exported = parse_export(&export.1);
            let want: Vec<u64> = c.audience.iter().copied().collect();
            prop_assert_eq!(exported, want, "export of {}", name);
        }

        let users = probed_users();
        let (status, body) = h.post_json("/v1/check", json!({"user_ids": users})).await;
        let results: Vec<Value> = users
            .iter()
            .map(|&u| json!({"user_id": u, "campaigns": self.ids(&model.campaigns_of(u))}))
            .collect();
        check_batch(
            "POST /v1/check for every probed user",
            status,
            &body,
            results,
        )?;

        for name in CAMPAIGNS {
            let (status, body) = h
                .post_json(
                    "/v1/check",
                    json!({"user_ids": users, "campaign": self.id(name)}),
                )
                .await;
            let Some(c) = model.campaigns.get(name) else {
                prop_assert_eq!(status, StatusCode::NOT_FOUND, "batch on {}: {}", name, body);
                continue;
            };
            let results: Vec<Value> = users
                .iter()
                .map(|&u| json!({"user_id": u, "member": c.audience.contains(&u)}))
                .collect();
            let what = format!("POST /v1/check on campaign {}", self.id(name));
            check_batch(&what, status, &body, results)?;
        }

        for user in SPOT_USERS {
            for name in CAMPAIGNS {
                let id = self.id(name);
                let (status, body) = h.get(&format!("/v1/campaigns/{id}/members/{user}")).await;
                let Some(c) = model.campaigns.get(name) else {
                    prop_assert_eq!(status, StatusCode::NOT_FOUND, "member {}: {}", user, body);
                    continue;
                };
                let want = json!({
                    "campaign": id,
                    "user_id": user,
                    "member": c.audience.contains(&user),
                    "active": c.window.is_active(),
                    "source": "store",
                    "stale": false,
                });
                prop_assert_eq!(
                    (status, body),
                    (StatusCode::OK, want),
                    "GET /v1/campaigns/{}/members/{}",
                    id,
                    user
                );
            }
            let (status, body) = h.get(&format!("/v1/users/{user}/campaigns")).await;
            let want = json!({
                "user_id": user,
                "campaigns": self.ids(&model.campaigns_of(user)),
                "source": "store",
                "stale": false,
            });
            prop_assert_eq!(
                (status, body),
                (StatusCode::OK, want),
                "GET /v1/users/{}/campaigns",
                user
            );
        }
        Ok(())
    }
}

/// Checks a batch answer. On a mismatch, names only the entries that differ:
/// the whole body lists dozens of users.
fn check_batch(what: &str, status: StatusCode, got: &Value, results: Vec<Value>) -> TestCaseResult {
    let want = json!({"results": results, "source": "store", "stale": false});
    if status == StatusCode::OK && *got == want {
        return Ok(());
    }
    let differing: Vec<String> = match got["results"].as_array() {
        Some(answers) if answers.len() == results.len() => answers
            .iter()
            .zip(&results)
            .filter(|(got, want)| got != want)
            .map(|(got, want)| format!("got {got}, want {want}"))
            .collect(),
        _ => vec![format!("got {got}")],
    };
    Err(TestCaseError::fail(format!(
        "{what}: status {status}, source {}, stale {}; {}",
        got["source"],
        got["stale"],
        differing.join("; ")
    )))
}

/// An audience body in the given format, with its content type.
fn encode(ids: &[u64], format: Format) -> (&'static str, String) {
    let lines = |sep: &str| -> String { ids.iter().map(|u| format!("{u}{sep}")).collect() };
    match format {
        Format::Json => ("application/json", serde_json::to_string(ids).unwrap()),
        Format::Lines => ("text/plain", lines("\n")),
        Format::Header => (
            "text/plain; charset=utf-8",
            format!("user_id\n{}", lines("\n")),
        ),
        Format::Csv => {
            let mut body = String::from("\u{feff}user_id\r\n\r\n");
            for u in ids {
                body.push_str(&format!(" {u}\t\r\n"));
            }
            ("text/csv", body)
        }
    }
}

/// The export's text as ids. A one-line export parses as a JSON number in
/// the harness, and an empty one as an empty string.
fn parse_export(body: &Value) -> Vec<u64> {
    let text = match body {
        Value::String(s) => s.clone(),
        other => format!("{other}\n"),
    };
    text.lines().map(|l| l.parse().unwrap()).collect()
}
