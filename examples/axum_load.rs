//! A load generator for examples/axum_service: `--clients` HTTP clients (64
//! by default), each sending its next request as soon as the last one is
//! answered, for `--seconds`. The mix is a service's: 60 % account reads,
//! 10 % list pages, 25 % transfers, 5 % new accounts. It reports requests
//! per second, p50 and p99 latency per kind, and every answer that was not
//! the expected one (a 5xx, a "database is locked") counted apart.
//!
//! Against the program, as a service runs (the figures in the notes):
//!
//!     cargo run --release --example axum_service --features metrics &
//!     cargo run --release --example axum_load -- --url http://127.0.0.1:3000
//!
//! Without `--url` the service starts in this process on a temporary file
//! (quicker to try; the clients and the server then share the runtime).

#[path = "axum_service/app.rs"]
mod app;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Read,
    List,
    Transfer,
    Create,
}

const KINDS: [Kind; 4] = [Kind::Read, Kind::List, Kind::Transfer, Kind::Create];

struct Args {
    url: Option<String>,
    clients: usize,
    seconds: u64,
    accounts: u64,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        url: None,
        clients: 64,
        seconds: 10,
        accounts: 1000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = Some(value()?),
            "--clients" => a.clients = value()?.parse().map_err(|e| format!("--clients: {e}"))?,
            "--seconds" => a.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--accounts" => {
                a.accounts = value()?.parse().map_err(|e| format!("--accounts: {e}"))?;
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.clients == 0 || a.accounts < 2 {
        return Err("--clients must be at least 1 and --accounts at least 2".into());
    }
    Ok(a)
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    latencies_us: Vec<(Kind, u32)>,
    /// Answers other than the expected ones, with their text.
    unexpected: Vec<String>,
    insufficient: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let mut local = None;
    let base = match &args.url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let dir = tempfile::tempdir()?;
            let url = format!(
                "sqlite://{}?mode=rwc&readers=4&group_commit=true",
                dir.path().join("load.db").display()
            );
            let db = app::open(&url).await?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let base = format!("http://{}", listener.local_addr()?);
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let state = app::AppState {
                db: db.clone(),
                prometheus: None,
            };
            let server = tokio::spawn(app::serve(listener, state, async {
                let _ = stopped.await;
            }));
            println!("service in this process, on {}", dir.path().display());
            local = Some((stop, server, db, dir));
            base
        }
    };
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(args.clients)
        .build()?;

    // Accounts to read and move money between, tagged with this run so that
    // runs against the same service do not collide on emails.
    let tag = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let owner = format!("load{tag}");
    let mut ids = Vec::new();
    for chunk in (0..args.accounts).collect::<Vec<_>>().chunks(args.clients) {
        let creates = chunk.iter().map(|i| {
            let body = json!({"owner": owner, "email": format!("{owner}.{i}@example.com"), "balance": 1_000_000});
            http.post(format!("{base}/accounts")).json(&body).send()
        });
        for r in futures_util::future::join_all(creates).await {
            let r = r?.error_for_status()?;
            let account: serde_json::Value = r.json().await?;
            ids.push(account["id"].as_i64().ok_or("no id in the answer")?);
        }
    }
    let ids = Arc::new(ids);

    println!(
        "{} clients for {} s on {base}, {} accounts",
        args.clients, args.seconds, args.accounts
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let created = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..args.clients)
        .map(|c| {
            let (http, base, ids, owner, created) = (
                http.clone(),
                base.clone(),
                ids.clone(),
                owner.clone(),
                created.clone(),
            );
            tokio::spawn(async move {
                let mut rng = 0x9e37_79b9_7f4a_7c15_u64 ^ (c as u64).wrapping_mul(0x2545_f491);
                let mut next = move |n: u64| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng % n
                };
                let mut seen = Seen::default();
                while Instant::now() < deadline {
                    let roll = next(100);
                    let pick = |r: u64| ids[r as usize];
                    let (kind, request) = if roll < 60 {
                        let id = pick(next(ids.len() as u64));
                        (Kind::Read, http.get(format!("{base}/accounts/{id}")))
                    } else if roll < 70 {
                        let after = pick(next(ids.len() as u64));
                        let url = format!("{base}/accounts?owner={owner}&after={after}&limit=20");
                        (Kind::List, http.get(url))
                    } else if roll < 95 {
                        let from = next(ids.len() as u64);
                        let to = (from + 1 + next(ids.len() as u64 - 1)) % ids.len() as u64;
                        let body = json!({"from": pick(from), "to": pick(to), "amount": 1 + next(100)});
                        (Kind::Transfer, http.post(format!("{base}/transfers")).json(&body))
                    } else {
                        let n = created.fetch_add(1, Ordering::Relaxed);
                        let body = json!({"owner": format!("{owner}new"), "email": format!("{owner}.new{n}@example.com")});
                        (Kind::Create, http.post(format!("{base}/accounts")).json(&body))
                    };
                    let sent = Instant::now();
                    let outcome = match request.send().await {
                        Ok(r) => {
                            let status = r.status();
                            r.text().await.map(|text| (status, text))
                        }
                        Err(e) => Err(e),
                    };
                    let us = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
                    seen.latencies_us.push((kind, us));
                    match outcome {
                        Ok((status, _)) if status.is_success() => {}
                        Ok((status, text)) if status == 409 && text.contains("insufficient") => {
                            seen.insufficient += 1;
                        }
                        Ok((status, text)) => seen.unexpected.push(format!("{status} {text}")),
                        Err(e) => seen.unexpected.push(format!("transport: {e}")),
                    }
                }
                seen
            })
        })
        .collect();
    let mut all = Seen::default();
    for c in clients {
        let seen = c.await?;
        all.latencies_us.extend(seen.latencies_us);
        all.unexpected.extend(seen.unexpected);
        all.insufficient += seen.insufficient;
    }
    let elapsed = started.elapsed().as_secs_f64();

    println!(
        "{:<9} {:>9} {:>10} {:>9} {:>9} {:>9}",
        "kind", "requests", "req/s", "p50 ms", "p99 ms", "max ms"
    );
    let row = |name: &str, mut us: Vec<u32>| {
        us.sort_unstable();
        let q = |p: f64| {
            us.get(((us.len() as f64 - 1.0) * p).round() as usize)
                .map_or(0.0, |&v| f64::from(v) / 1000.0)
        };
        println!(
            "{name:<9} {:>9} {:>10.0} {:>9.2} {:>9.2} {:>9.2}",
            us.len(),
            us.len() as f64 / elapsed,
            q(0.5),
            q(0.99),
            q(1.0)
        );
    };
    for kind in KINDS {
        let us = all
            .latencies_us
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|&(_, us)| us)
            .collect();
        row(&format!("{kind:?}").to_lowercase(), us);
    }
    row("all", all.latencies_us.iter().map(|&(_, us)| us).collect());
    let locked = all
        .unexpected
        .iter()
        .filter(|u| u.contains("locked") || u.contains("503"))
        .count();
    let server_errors = all.unexpected.iter().filter(|u| u.starts_with('5')).count();
    println!(
        "unexpected answers: {} (5xx: {server_errors}, locked or unavailable: {locked}); \
         transfers refused for funds: {}",
        all.unexpected.len(),
        all.insufficient
    );
    for u in all.unexpected.iter().take(5) {
        println!("  {u}");
    }

    if let Some((stop, server, db, _dir)) = local {
        let _ = stop.send(());
        server.await??;
        db.close().await?;
    }
    if all.unexpected.is_empty() {
        Ok(())
    } else {
        Err(format!("{} unexpected answers", all.unexpected.len()).into())
    }
}
