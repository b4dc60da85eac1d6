//! The service: its models, routes and handlers, and how aiolite's errors
//! become HTTP statuses. `main.rs` runs it as a program; the HTTP test
//! (`tests/axum_service.rs`) and the load generator (`examples/axum_load.rs`)
//! include this file to start the same service on a port of their own.

use std::future::Future;
use std::time::Instant;

use aiolite::prelude::*;
use aiolite::{Database, DatabaseBuilder};
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, MatchedPath, Path, Query as QueryString, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::StreamExt;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

/// Opens the pool a URL names (`sqlite://bank.db?mode=rwc&readers=4`) and
/// brings its schema up to date before the first request: a service that
/// starts serves the schema it was built for, or does not start.
pub(crate) async fn open(url: &str) -> aiolite::Result<Database> {
    DatabaseBuilder::from_url(url)?
        .migrations(aiolite::embed_migrations!(
            "examples/axum_service/migrations"
        ))
        .migrate_on_open(true)
        .open()
        .await
}

/// What every handler gets: the pool (cheap to clone: handles to the same
/// connections) and, when a Prometheus recorder is installed, its handle.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) db: Database,
    pub(crate) prometheus: Option<PrometheusHandle>,
}

/// Serves until `shutdown` resolves, then lets the requests in flight finish
/// (a streamed export included) and returns. The caller closes the
/// `Database` after this returns, so that no handler finds it closed.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/accounts", get(list_accounts).post(create_account))
        .route(
            "/accounts/{id}",
            get(get_account)
                .patch(update_account)
                .delete(delete_account),
        )
        .route("/transfers", axum::routing::post(transfer))
        .route("/export", get(export))
        .route("/health", get(health))
        .route("/metrics", get(prometheus_metrics))
        .route("/metrics.json", get(json_metrics))
        .layer(middleware::from_fn(trace_request))
        .with_state(state)
}

#[derive(Debug, Clone, Serialize, aiolite::FromRow, aiolite::Model)]
#[aiolite(table = "accounts")]
pub(crate) struct Account {
    #[aiolite(primary_key)]
    pub(crate) id: i64,
    pub(crate) owner: String,
    pub(crate) email: String,
    pub(crate) balance: i64,
    #[aiolite(db_default)]
    pub(crate) created_at: String,
}

#[derive(Debug, Clone, Serialize, aiolite::FromRow, aiolite::Model)]
#[aiolite(table = "transfers")]
pub(crate) struct Transfer {
    #[aiolite(primary_key)]
    pub(crate) id: i64,
    pub(crate) from_id: i64,
    pub(crate) to_id: i64,
    pub(crate) amount: i64,
    #[aiolite(db_default)]
    pub(crate) created_at: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct NewAccount {
    pub(crate) owner: String,
    pub(crate) email: String,
    #[serde(default)]
    pub(crate) balance: i64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct AccountPatch {
    pub(crate) owner: Option<String>,
    pub(crate) email: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct NewTransfer {
    pub(crate) from: i64,
    pub(crate) to: i64,
    pub(crate) amount: i64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListParams {
    pub(crate) owner: Option<String>,
    pub(crate) min_balance: Option<i64>,
    /// Keyset pagination: the `next` of the previous page.
    pub(crate) after: Option<i64>,
    pub(crate) limit: Option<u32>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Page {
    pub(crate) items: Vec<Account>,
    /// Pass as `after` for the next page; `None` on the last one.
    pub(crate) next: Option<i64>,
}

/// A handler's failure, as the client sees it: a status and a message
/// without SQL in it. The full error (with the SQL) goes to the log.
#[derive(Debug)]
pub(crate) enum ApiError {
    NotFound(String),
    Conflict(String),
    Invalid(String),
    /// A body axum could not read as the JSON asked for (malformed, a field
    /// missing or mistyped, not `application/json`), with axum's status.
    Body(StatusCode, String),
    Db(aiolite::Error),
}

/// `Json<T>`, whose rejections answer in the same `{"error": ..}` body as
/// every other failure, not axum's plain text.
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(ApiError::Body(rejection.status(), rejection.body_text())),
        }
    }
}

impl From<aiolite::Error> for ApiError {
    fn from(e: aiolite::Error) -> ApiError {
        ApiError::Db(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m),
            ApiError::Invalid(m) => (StatusCode::UNPROCESSABLE_ENTITY, m),
            ApiError::Body(status, m) => (status, m),
            // The request broke a rule the schema states: the client's to fix.
            ApiError::Db(e) if e.is_unique_violation() || e.is_foreign_key_violation() => {
                (StatusCode::CONFLICT, e.message())
            }
            ApiError::Db(e) if e.is_check_violation() || e.is_not_null_violation() => {
                (StatusCode::UNPROCESSABLE_ENTITY, e.message())
            }
            // Another process held the file past the busy timeout, or the
            // service is shutting down: worth a retry, elsewhere or later.
            ApiError::Db(e) if e.is_busy() || e.is_closed() => {
                tracing::warn!(error = %e, "database unavailable");
                let mut response = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(ErrorBody {
                        error: "the database is unavailable; retry".into(),
                    }),
                )
                    .into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return response;
            }
            ApiError::Db(e) => {
                tracing::error!(error = %e, "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
            }
        };
        (status, Json(ErrorBody { error: message })).into_response()
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ErrorBody {
    pub(crate) error: String,
}

type ApiResult<T> = Result<T, ApiError>;

async fn create_account(
    State(s): State<AppState>,
    ApiJson(new): ApiJson<NewAccount>,
) -> ApiResult<(StatusCode, Json<Account>)> {
    let account = Account {
        id: 0,
        owner: new.owner,
        email: new.email,
        balance: new.balance,
        created_at: String::new(),
    };
    // RETURNING: the id and created_at the database assigned, in one request.
    let stored = s.db.insert_returning(&account).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

async fn get_account(State(s): State<AppState>, Path(id): Path<i64>) -> ApiResult<Json<Account>> {
    let account = s.db.find::<Account>(id).await?;
    account
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no account {id}")))
}

async fn list_accounts(
    State(s): State<AppState>,
    QueryString(p): QueryString<ListParams>,
) -> ApiResult<Json<Page>> {
    let limit = p.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::Invalid("limit must be between 1 and 100".into()));
    }
    let mut select = Account::select();
    if let Some(owner) = p.owner {
        select.and_where(AccountColumn::Owner.eq(owner));
    }
    if let Some(min) = p.min_balance {
        select.and_where(AccountColumn::Balance.gte(min));
    }
    if let Some(after) = p.after {
        select.and_where(AccountColumn::Id.gt(after));
    }
    // One row past the page says whether there is a next one.
    select
        .order_by(AccountColumn::Id, Order::Asc)
        .limit(u64::from(limit) + 1);
    let mut items: Vec<Account> = s.db.query_all(select).await?;
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|a| a.id)
    } else {
        None
    };
    Ok(Json(Page { items, next }))
}

async fn update_account(
    State(s): State<AppState>,
    Path(id): Path<i64>,
    ApiJson(patch): ApiJson<AccountPatch>,
) -> ApiResult<Json<Account>> {
    // Read and write under one lease of the writer, so that the row written
    // is the row read. A client gone mid-way drops the guard: rolled back.
    let tx = s.db.begin().await?;
    let before = tx
        .find::<Account>(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no account {id}")))?;
    let mut after = before.clone();
    if let Some(owner) = patch.owner {
        after.owner = owner;
    }
    if let Some(email) = patch.email {
        after.email = email;
    }
    tx.update_changed(&before, &after).await?;
    tx.commit().await?;
    Ok(Json(after))
}

async fn delete_account(State(s): State<AppState>, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    // An account with transfers is kept by its foreign keys: 409.
    if s.db.delete::<Account>(id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no account {id}")))
    }
}

/// Moves `amount` between two accounts and records it, all or nothing.
async fn transfer(
    State(s): State<AppState>,
    ApiJson(t): ApiJson<NewTransfer>,
) -> ApiResult<(StatusCode, Json<Transfer>)> {
    if t.amount <= 0 {
        return Err(ApiError::Invalid("amount must be positive".into()));
    }
    if t.from == t.to {
        return Err(ApiError::Invalid("from and to must differ".into()));
    }
    // Every early return below drops `tx` before its commit, which rolls the
    // transaction back; so does a client that hangs up (the handler's future
    // is dropped). Nothing of a failed transfer is ever stored.
    let tx = s.db.begin().await?;
    let debited = tx
        .execute(
            "UPDATE accounts SET balance = balance - ?1 WHERE id = ?2 AND balance >= ?1",
            (t.amount, t.from),
        )
        .await?;
    if debited == 0 {
        let found: Option<(i64,)> = tx
            .fetch_optional_as("SELECT balance FROM accounts WHERE id = ?", (t.from,))
            .await?;
        return Err(match found {
            None => ApiError::NotFound(format!("no account {}", t.from)),
            Some(_) => ApiError::Conflict(format!("insufficient funds in account {}", t.from)),
        });
    }
    let credited = tx
        .execute(
            "UPDATE accounts SET balance = balance + ? WHERE id = ?",
            (t.amount, t.to),
        )
        .await?;
    if credited == 0 {
        return Err(ApiError::NotFound(format!("no account {}", t.to)));
    }
    let stored = tx
        .insert_returning(&Transfer {
            id: 0,
            from_id: t.from,
            to_id: t.to,
            amount: t.amount,
            created_at: String::new(),
        })
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// Every account, one JSON object per line, streamed from a reader as the
/// client takes it: the rows come in chunks and the next chunk is fetched
/// only when the socket has taken the last one, so memory stays bounded
/// whatever the table's size. A client that hangs up drops the stream,
/// which finalizes the statement and releases the reader's snapshot.
async fn export(State(s): State<AppState>) -> Response {
    let rows = s.db.query_stream::<Account>(
        Account::select()
            .order_by(AccountColumn::Id, Order::Asc)
            .to_owned(),
    );
    let lines = rows.map(|row| {
        let account = row.inspect_err(|e| tracing::error!(error = %e, "export failed mid-way"))?;
        let mut line = serde_json::to_vec(&account).map_err(std::io::Error::other)?;
        line.push(b'\n');
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(line)
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Health {
    pub(crate) status: String,
    pub(crate) readers: usize,
    pub(crate) writer_queue: usize,
    pub(crate) wal_bytes: Option<u64>,
}

/// 200 when a reader and the writer both answer; 503 otherwise (a load
/// balancer stops sending requests, which is what shutdown needs too).
async fn health(State(s): State<AppState>) -> ApiResult<Json<Health>> {
    let _: (i64,) = s.db.fetch_one_as("SELECT 1", ()).await?;
    s.db.writer().fetch_all("SELECT 1", ()).await?;
    let m = s.db.metrics();
    Ok(Json(Health {
        status: "ok".into(),
        readers: m.readers.len(),
        writer_queue: m.writer.queued_requests,
        wal_bytes: m.wal_bytes,
    }))
}

/// Prometheus's text format. aiolite's counters and histograms arrive
/// through the `metrics` facade (with aiolite's `metrics` feature); what is
/// a state rather than an event (queue depth, open streams, the WAL's size)
/// is read from the snapshot at each scrape and set as gauges.
async fn prometheus_metrics(State(s): State<AppState>) -> Response {
    let Some(handle) = &s.prometheus else {
        return (StatusCode::NOT_FOUND, "no Prometheus recorder installed").into_response();
    };
    let m = s.db.metrics();
    let connections =
        std::iter::once(("writer", &m.writer)).chain(m.readers.iter().map(|r| ("reader", r)));
    for (i, (role, c)) in connections.enumerate() {
        let conn = i.to_string();
        metrics::gauge!("aiolite_queued_requests", "role" => role, "conn" => conn.clone())
            .set(c.queued_requests as f64);
        metrics::gauge!("aiolite_parked_statements", "role" => role, "conn" => conn.clone())
            .set(c.parked_statements as f64);
        metrics::gauge!("aiolite_oldest_snapshot_seconds", "role" => role, "conn" => conn)
            .set(c.oldest_snapshot_secs.unwrap_or(0.0));
    }
    metrics::gauge!("aiolite_wal_bytes").set(m.wal_bytes.unwrap_or(0) as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

async fn json_metrics(State(s): State<AppState>) -> Json<aiolite::DatabaseMetrics> {
    Json(s.db.metrics())
}

/// A span per request (aiolite's statement events land inside it, with
/// their queue wait and execution time), its outcome logged, and the
/// request counted and timed for /metrics.
async fn trace_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let span = tracing::info_span!("request", http.method = %method, http.route = %route);
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status();
    span.in_scope(|| {
        tracing::debug!(
            status = status.as_u16(),
            elapsed_us = elapsed.as_micros() as u64,
            "answered"
        );
    });
    let labels = [
        ("method", method.to_string()),
        ("route", route),
        ("status", status.as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(elapsed.as_secs_f64());
    response
}
