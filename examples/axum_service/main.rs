//! A bank-account service on axum and aiolite: accounts (create, get, a
//! filtered and paginated list, update, delete), atomic transfers, an NDJSON
//! export streamed from the database, `/health`, and `/metrics` for
//! Prometheus. The schema is migrated as the pool opens; SIGINT or SIGTERM
//! stops taking connections, lets the requests in flight finish, then closes
//! the `Database`.
//!
//!     cargo run --example axum_service --features metrics
//!     curl -X POST localhost:3000/accounts -H 'content-type: application/json' \
//!          -d '{"owner":"ada","email":"ada@example.com","balance":100}'
//!
//! Settings come from the environment:
//! - `DATABASE_URL`: the pool, as one URL (default
//!   `sqlite://axum_service.db?mode=rwc&readers=4&group_commit=true`);
//! - `ADDR`: where to listen (default `127.0.0.1:3000`; port 0 picks one);
//! - `RUST_LOG`: what to log (default `info`; `aiolite_conn=debug` shows
//!   every statement with its queue wait and execution time).
//!
//! Without the `metrics` feature the service runs the same, and `/metrics`
//! has the HTTP counters and the gauges read from `db.metrics()`, not
//! aiolite's own counters and histograms.

mod app;

use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tracing_subscriber::EnvFilter;

const DEFAULT_URL: &str = "sqlite://axum_service.db?mode=rwc&readers=4&group_commit=true";

/// Seconds, for every `*_seconds` histogram: 50 us to 10 s.
const BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    // Before the pool opens: each connection registers its counters with
    // the recorder installed when it opens.
    let prometheus = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)?
        .install_recorder()?;

    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let db = app::open(&url).await?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    // The HTTP test reads this line for the port.
    println!("listening on http://{}", listener.local_addr()?);

    let state = app::AppState {
        db: db.clone(),
        prometheus: Some(prometheus),
    };
    let server = app::serve(listener, state, shutdown_signal());
    server.await?;

    // Every handler has answered: nothing uses the pool any more. close()
    // lets what is queued finish, then closes each connection, the last of
    // which checkpoints the WAL into the database file.
    tokio::time::timeout(Duration::from_secs(30), db.close())
        .await
        .map_err(|_| "the database did not close within 30 s")??;
    println!("closed the database; bye");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing the requests in flight");
}
