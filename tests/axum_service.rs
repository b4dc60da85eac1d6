//! examples/axum_service over HTTP: the service listens on 127.0.0.1 and a
//! real HTTP client (reqwest) drives it: statuses and bodies, pagination,
//! concurrent transfers checked against the sums they must keep, the NDJSON
//! export streamed a chunk at a time, `/metrics` against `db.metrics()`,
//! graceful shutdown with a response in flight, and the program itself
//! started and stopped with SIGTERM.
//!
//! Every step runs under a timeout, so a hang fails instead of stalling CI.

#[path = "../examples/axum_service/app.rs"]
mod app;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use aiolite::prelude::*;
use aiolite::Database;
use futures_util::StreamExt;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const STEP: Duration = Duration::from_secs(30);

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer in {STEP:?}"))
}

/// One recorder per process (the `metrics` facade has one global), installed
/// before any pool opens so that every pool registers with it.
fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .expect("the test's recorder is the only one")
        })
        .clone()
}

struct Service {
    base: String,
    http: reqwest::Client,
    db: Database,
    path: String,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start(readers: usize) -> Service {
    let prometheus = prometheus();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bank.db").display().to_string();
    let url = format!("sqlite://{path}?mode=rwc&readers={readers}&group_commit=true");
    let db = within("open", app::open(&url)).await.expect("open");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = oneshot::channel::<()>();
    let state = app::AppState {
        db: db.clone(),
        prometheus: Some(prometheus),
    };
    let server = tokio::spawn(app::serve(listener, state, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::builder()
        // An HTTP_PROXY in CI's environment must not reroute 127.0.0.1.
        .no_proxy()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");
    Service {
        base,
        http,
        db,
        path,
        stop,
        server,
        _dir: dir,
    }
}

impl Service {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let what = format!("{method} {path}");
        let resp = within(&what, req.send())
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = resp.status();
        let text = within(&what, resp.text()).await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn create(&self, owner: &str, email: &str, balance: i64) -> i64 {
        let (status, body) = self
            .post(
                "/accounts",
                json!({"owner": owner, "email": email, "balance": balance}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_i64().expect("id")
    }

    /// Stops accepting, waits for the requests in flight, then closes the
    /// pool: the order `main.rs` keeps.
    async fn shut_down(self) {
        let _ = self.stop.send(());
        within("graceful shutdown", self.server)
            .await
            .expect("join")
            .expect("serve");
        within("close", self.db.close()).await.expect("close");
    }
}

fn error_text(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error text in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_answers_and_errors_map_to_statuses() {
    let s = start(2).await;
    let id = s.create("ada", "ada@example.com", 100).await;
    let (status, ada) = s.get(&format!("/accounts/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (ada["owner"].as_str(), ada["balance"].as_i64()),
        (Some("ada"), Some(100))
    );
    assert!(
        ada["created_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{ada}"
    );

    // Each schema rule answers with its status, and no SQL reaches the client.
    let cases = [
        (
            json!({"owner": "x", "email": "ada@example.com"}),
            StatusCode::CONFLICT,
            "UNIQUE",
        ),
        (
            json!({"owner": "x", "email": "no-at-sign"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "CHECK",
        ),
        (
            json!({"owner": "", "email": "e@example.com"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "CHECK",
        ),
        (
            json!({"owner": "x", "email": "n@example.com", "balance": -1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "CHECK",
        ),
    ];
    for (body, want, says) in cases {
        let (status, answer) = s.post("/accounts", body.clone()).await;
        assert_eq!(status, want, "{body} -> {answer}");
        let text = error_text(&answer);
        assert!(text.contains(says), "{text}");
        assert!(!text.contains("INSERT"), "SQL leaked to the client: {text}");
    }
    // A body that is not the JSON asked for answers in the same error body.
    let (status, body) = s.post("/accounts", json!({"email": "missing owner"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(error_text(&body).contains("owner"), "{body}");
    let raw = |body: &'static str, content_type: &'static str| {
        s.http
            .post(format!("{}/accounts", s.base))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    for (body, content_type, want) in [
        ("{not json", "application/json", StatusCode::BAD_REQUEST),
        (
            r#"{"owner":"x","email":"y@z.io"}"#,
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ] {
        let resp = within("raw post", raw(body, content_type))
            .await
            .expect("post");
        assert_eq!(resp.status(), want, "{body}");
        let answer: Value = within("body", resp.json())
            .await
            .expect("a JSON error body");
        assert!(!error_text(&answer).is_empty());
    }

    let (status, body) = s.get("/accounts/999").await;
    assert_eq!(
        (status, error_text(&body)),
        (StatusCode::NOT_FOUND, "no account 999")
    );

    // Update: the changed column only, seen by the next read.
    let bob = s.create("bob", "bob@example.com", 5).await;
    let (status, body) = s
        .call(
            reqwest::Method::PATCH,
            &format!("/accounts/{bob}"),
            Some(json!({"owner": "robert"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, read) = s.get(&format!("/accounts/{bob}")).await;
    assert_eq!(
        (read["owner"].as_str(), read["email"].as_str()),
        (Some("robert"), Some("bob@example.com"))
    );
    let (status, _) = s
        .call(
            reqwest::Method::PATCH,
            &format!("/accounts/{bob}"),
            Some(json!({"email": "ada@example.com"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = s
        .call(
            reqwest::Method::PATCH,
            "/accounts/999",
            Some(json!({"owner": "z"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Transfers: the happy path, then each way to fail, none of which moves money.
    let (status, t) = s
        .post("/transfers", json!({"from": id, "to": bob, "amount": 30}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    for (body, want) in [
        (
            json!({"from": bob, "to": id, "amount": 1000}),
            StatusCode::CONFLICT,
        ),
        (
            json!({"from": bob, "to": 999, "amount": 1}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"from": 999, "to": bob, "amount": 1}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"from": bob, "to": bob, "amount": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"from": bob, "to": id, "amount": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (status, answer) = s.post("/transfers", body.clone()).await;
        assert_eq!(status, want, "{body} -> {answer}");
    }
    let balance = |v: &Value| v["balance"].as_i64();
    assert_eq!(
        balance(&s.get(&format!("/accounts/{id}")).await.1),
        Some(70)
    );
    assert_eq!(
        balance(&s.get(&format!("/accounts/{bob}")).await.1),
        Some(35),
        "the failed credit to 999 was rolled back"
    );

    // Delete: kept by its transfers (409), gone without them (204, then 404).
    let (status, body) = s
        .call(reqwest::Method::DELETE, &format!("/accounts/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let carol = s.create("carol", "carol@example.com", 0).await;
    let (status, _) = s
        .call(reqwest::Method::DELETE, &format!("/accounts/{carol}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s
        .call(reqwest::Method::DELETE, &format!("/accounts/{carol}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _) = s.get("/accounts?limit=0").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, health) = s.get("/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (health["status"].as_str(), health["readers"].as_u64()),
        (Some("ok"), Some(2))
    );
    s.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_filters_and_pages_by_key() {
    let s = start(2).await;
    let mut by_owner: BTreeMap<&str, Vec<(i64, i64)>> = BTreeMap::new();
    for i in 0..45 {
        let owner = ["ann", "ben", "cy"][i % 3];
        let balance = (i as i64) * 10;
        let id = s.create(owner, &format!("u{i}@example.com"), balance).await;
        by_owner.entry(owner).or_default().push((id, balance));
    }
    for (owner, accounts) in &by_owner {
        for min in [0, 200] {
            let want: Vec<i64> = accounts
                .iter()
                .filter(|a| a.1 >= min)
                .map(|a| a.0)
                .collect();
            let mut got = Vec::new();
            let mut after = None::<i64>;
            let mut pages = 0;
            loop {
                let mut q = format!("/accounts?owner={owner}&min_balance={min}&limit=4");
                if let Some(a) = after {
                    q.push_str(&format!("&after={a}"));
                }
                let (status, page) = s.get(&q).await;
                assert_eq!(status, StatusCode::OK, "{page}");
                let items = page["items"].as_array().expect("items");
                assert!(items.len() <= 4);
                got.extend(items.iter().map(|a| a["id"].as_i64().expect("id")));
                pages += 1;
                match page["next"].as_i64() {
                    Some(n) => after = Some(n),
                    None => break,
                }
                assert!(pages <= 20, "the pages do not end");
            }
            assert_eq!(got, want, "owner {owner}, min_balance {min}");
        }
    }
    s.shut_down().await;
}

/// A seeded generator, so that a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transfers_keep_the_books() {
    const ACCOUNTS: usize = 12;
    const CLIENTS: u64 = 32;
    const EACH: usize = 25;
    const START: i64 = 1000;
    let s = std::sync::Arc::new(start(2).await);
    let mut ids = Vec::new();
    for i in 0..ACCOUNTS {
        ids.push(s.create("bank", &format!("a{i}@example.com"), START).await);
    }
    let ids = std::sync::Arc::new(ids);

    // 32 clients at once: transfers that may overdraw (409), and new
    // accounts created among them (more writers on the same queue).
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (s, ids) = (s.clone(), ids.clone());
            tokio::spawn(async move {
                let mut rng = Rng(0x5eed ^ c);
                let mut done = Vec::new();
                for k in 0..EACH {
                    if k % 10 == 9 {
                        s.create("newcomer", &format!("c{c}k{k}@example.com"), 0)
                            .await;
                        continue;
                    }
                    let from = ids[rng.below(ACCOUNTS as u64) as usize];
                    let mut to = ids[rng.below(ACCOUNTS as u64) as usize];
                    if to == from {
                        to = ids[(ids.iter().position(|&i| i == from).expect("id") + 1) % ACCOUNTS];
                    }
                    let amount = 1 + rng.below(400) as i64;
                    let (status, body) = s
                        .post(
                            "/transfers",
                            json!({"from": from, "to": to, "amount": amount}),
                        )
                        .await;
                    match status {
                        StatusCode::CREATED => done.push((from, to, amount)),
                        StatusCode::CONFLICT => {
                            assert!(error_text(&body).contains("insufficient"), "{body}");
                        }
                        other => panic!("transfer {from}->{to} {amount}: {other} {body}"),
                    }
                }
                done
            })
        })
        .collect();
    let mut moved = Vec::new();
    for c in clients {
        moved.extend(within("client", c).await.expect("client"));
    }
    assert!(!moved.is_empty());

    // The model: every acknowledged transfer, and nothing else, moved money.
    let mut want: BTreeMap<i64, i64> = ids.iter().map(|&i| (i, START)).collect();
    for (from, to, amount) in &moved {
        *want.get_mut(from).expect("from") -= amount;
        *want.get_mut(to).expect("to") += amount;
    }
    let (status, page) = s.get("/accounts?owner=bank&limit=100").await;
    assert_eq!(status, StatusCode::OK);
    let got: BTreeMap<i64, i64> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|a| {
            (
                a["id"].as_i64().expect("id"),
                a["balance"].as_i64().expect("balance"),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(got.values().sum::<i64>(), START * ACCOUNTS as i64);
    let recorded = count(&s.db, "SELECT count(*) FROM transfers").await;
    assert_eq!(
        recorded as usize,
        moved.len(),
        "a transfer row per 201, no more"
    );
    let newcomers = count(
        &s.db,
        "SELECT count(*) FROM accounts WHERE owner = 'newcomer'",
    )
    .await;
    assert_eq!(newcomers as u64, CLIENTS * (EACH as u64 / 10));

    let s = std::sync::Arc::into_inner(s).expect("clients are done");
    s.shut_down().await;
}

async fn count(db: &Database, sql: &'static str) -> i64 {
    let (n,): (i64,) = db
        .fetch_one_as(sql, ())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    n
}

async fn seed_accounts(db: &Database, n: i64) {
    db.execute(
        "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?) \
         INSERT INTO accounts(owner, email, balance) SELECT 'bulk', 'b' || i || '@example.com', i FROM k",
        (n,),
    )
    .await
    .expect("seed");
}

fn parked(db: &Database) -> usize {
    db.metrics()
        .readers
        .iter()
        .map(|r| r.parked_statements)
        .sum()
}

/// Waits, with a bound, for the readers' parked statements to reach `n`.
async fn parked_reaches(db: &Database, n: usize) {
    within(&format!("parked statements to reach {n}"), async {
        while parked(db) != n {
            // A request to each reader publishes what it parked after its last answer.
            for r in db.readers() {
                let _ = r.execute("SELECT 1", ()).await;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_streams_while_the_client_reads() {
    const ROWS: i64 = 20_000;
    let s = start(2).await;
    seed_accounts(&s.db, ROWS).await;

    let resp = within("export", s.http.get(format!("{}/export", s.base)).send())
        .await
        .expect("export");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/x-ndjson")
    );
    let mut body = resp.bytes_stream();
    let first = within("first chunk", body.next())
        .await
        .expect("a chunk")
        .expect("bytes");
    assert!(!first.is_empty());
    // The client has read one chunk and stopped: the server has not read the
    // table ahead into memory, its statement waits parked on a reader.
    parked_reaches(&s.db, 1).await;

    let mut text = first.to_vec();
    while let Some(chunk) = within("chunk", body.next()).await {
        text.extend_from_slice(&chunk.expect("bytes"));
    }
    let lines: Vec<Value> = String::from_utf8(text)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len() as i64, ROWS);
    assert!(lines
        .iter()
        .enumerate()
        .all(|(i, a)| a["id"].as_i64() == Some(i as i64 + 1)
            && a["balance"].as_i64() == Some(i as i64 + 1)));
    parked_reaches(&s.db, 0).await;

    // A client that hangs up mid-way frees the reader's statement.
    let resp = s
        .http
        .get(format!("{}/export", s.base))
        .send()
        .await
        .expect("export");
    let mut body = resp.bytes_stream();
    within("first chunk", body.next())
        .await
        .expect("a chunk")
        .expect("bytes");
    parked_reaches(&s.db, 1).await;
    drop(body);
    parked_reaches(&s.db, 0).await;
    s.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_response_in_flight_then_closes() {
    const ROWS: i64 = 20_000;
    let s = start(1).await;
    seed_accounts(&s.db, ROWS).await;
    let resp = within("export", s.http.get(format!("{}/export", s.base)).send())
        .await
        .expect("export");
    let mut body = resp.bytes_stream();
    let mut text = within("first chunk", body.next())
        .await
        .expect("chunk")
        .expect("bytes")
        .to_vec();

    // Shutdown begins while the export is mid-way.
    let Service {
        base,
        http,
        db,
        stop,
        server,
        _dir,
        ..
    } = s;
    let _ = stop.send(());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !server.is_finished(),
        "the server must wait for the export in flight"
    );
    while let Some(chunk) = within("chunk", body.next()).await {
        text.extend_from_slice(&chunk.expect("the export completes"));
    }
    assert_eq!(text.iter().filter(|&&b| b == b'\n').count() as i64, ROWS);
    within("graceful shutdown", server)
        .await
        .expect("join")
        .expect("serve");
    within("close", db.close()).await.expect("close");
    assert!(db.is_closed());

    // Nothing listens any more.
    let refused = http.get(format!("{base}/health")).send().await;
    assert!(refused.is_err(), "{refused:?}");
    drop(_dir);
}

/// Reads one sample of Prometheus's text format: `name{labels} value`.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let head = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&head))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_as_prometheus_text_and_json() {
    let s = start(2).await;
    for i in 0..5 {
        s.create("m", &format!("m{i}@example.com"), 10).await;
    }
    let (status, _) = s
        .post(
            "/accounts",
            json!({"owner": "m", "email": "m0@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    let snapshot = s.db.metrics();
    let resp = within("metrics", s.http.get(format!("{}/metrics", s.base)).send())
        .await
        .expect("metrics");
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.expect("text");
    // The HTTP layer's own counters (shared by every test in this process).
    let created = sample(
        &text,
        "http_requests_total",
        r#"method="POST",route="/accounts",status="201""#,
    );
    assert!(created.is_some_and(|n| n >= 5.0), "{text}");
    assert!(sample(
        &text,
        "http_requests_total",
        r#"method="POST",route="/accounts",status="409""#
    )
    .is_some());
    // The gauges read from the snapshot at the scrape.
    assert!(text.contains("aiolite_queued_requests{"), "{text}");
    assert!(text.contains("aiolite_wal_bytes "), "{text}");
    // aiolite's own counters, through the facade: the writer's match its
    // snapshot (this pool's label is its own file).
    #[cfg(feature = "metrics")]
    {
        let writer = format!(r#"db="{}",role="writer""#, s.path);
        assert_eq!(
            sample(&text, "aiolite_requests_total", &writer),
            Some(snapshot.writer.requests as f64),
            "{text}"
        );
        assert!(snapshot.writer.requests >= 6);
        assert!(text.contains("aiolite_exec_seconds"), "{text}");
    }

    let (status, json) = s.get("/metrics.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["readers"].as_array().map(Vec::len), Some(2));
    assert!(
        json["writer"]["requests"].as_u64() >= Some(snapshot.writer.requests),
        "{json}"
    );
    assert!(json["writer"]["exec"]["buckets"].is_array());
    s.shut_down().await;
}

/// The program itself: started as `cargo test` built it, driven over HTTP,
/// stopped with SIGTERM, and its file checked after it exited.
#[cfg(unix)]
#[test]
fn the_program_serves_and_stops_cleanly_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    // target/<profile>/deps/<this test> -> target/<profile>/examples/axum_service
    let exe = std::env::current_exe().expect("test binary");
    let program = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join("axum_service"))
        .expect("target directory");
    assert!(
        program.exists(),
        "{} is missing: `cargo test` builds the examples with the tests; \
         alone, run `cargo build --example axum_service` first",
        program.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let db_path = dir.path().join("svc.db");
    let mut child = Command::new(&program)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc&readers=2", db_path.display()),
        )
        .env("ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the example");
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = lines_rx
        .recv_timeout(STEP)
        .expect("the program says where it listens");
    let base = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        let post = |path: &str, body: Value| {
            within("request", http.post(format!("{base}{path}")).json(&body).send())
        };
        for (owner, balance) in [("ada", 100), ("bob", 0)] {
            let r = post("/accounts", json!({"owner": owner, "email": format!("{owner}@example.com"), "balance": balance}))
                .await
                .expect("create");
            assert_eq!(r.status(), StatusCode::CREATED);
        }
        let r = post("/transfers", json!({"from": 1, "to": 2, "amount": 40})).await.expect("transfer");
        assert_eq!(r.status(), StatusCode::CREATED);
        let r = within("health", http.get(format!("{base}/health")).send()).await.expect("health");
        assert_eq!(r.status(), StatusCode::OK);
        let r = within("metrics", http.get(format!("{base}/metrics")).send()).await.expect("metrics");
        let text = r.text().await.expect("text");
        assert!(text.contains("http_requests_total"), "{text}");
    });

    // The shell's own `kill`: no procps needed on the machine.
    let killed = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", child.id())])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = std::time::Instant::now() + STEP;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the program did not exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    let rest: Vec<String> = lines_rx.try_iter().collect();
    assert_eq!(rest, ["closed the database; bye"]);

    // Closed means checkpointed: the WAL is folded into the file and gone,
    // and the file holds exactly what was acknowledged.
    assert!(
        !dir.path().join("svc.db-wal").exists(),
        "the WAL outlived close"
    );
    let conn = rusqlite::Connection::open(&db_path).expect("open the file");
    let balances: Vec<(i64, i64)> = conn
        .prepare("SELECT id, balance FROM accounts ORDER BY id")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .expect("balances");
    assert_eq!(balances, [(1, 60), (2, 40)]);
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok");
}
