//! BENCHMARKS.md and its chart, from one run of every contestant.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use super::{unit, Medians};

pub(crate) struct Report<'a> {
    pub(crate) table: &'a [(&'a str, Vec<(String, Medians)>)],
    pub(crate) runs: usize,
    pub(crate) scale: String,
}

/// The chart's colour of each contestant.
fn colour(name: &str) -> &'static str {
    match name {
        "aiolite" => "#1f77b4",
        "aiolite-db" => "#6baed6",
        "tokio-rusqlite" => "#ff7f0e",
        "async-sqlite" => "#2ca02c",
        "sqlx" => "#d62728",
        _ => "#7f7f7f",
    }
}

fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn proc_field(file: &str, key: &str) -> String {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn human(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.2}M", rate / 1e6)
    } else if rate >= 1e3 {
        format!("{:.1}k", rate / 1e3)
    } else {
        format!("{rate:.0}")
    }
}

impl Report<'_> {
    fn row(&self, workload: &str) -> Option<&Vec<(String, Medians)>> {
        self.table
            .iter()
            .find(|(w, _)| *w == workload)
            .map(|(_, r)| r)
    }

    /// aiolite's ratio on `workload` (and the medians behind it).
    fn aiolite(&self, workload: &str) -> Option<(f64, &Medians, &Medians)> {
        let row = self.row(workload)?;
        let base = &row.first()?.1;
        let (_, m) = row.iter().find(|(n, _)| n == "aiolite")?;
        Some((m.rate / base.rate, m, base))
    }

    /// The best peer on `workload` (not the baseline, not aiolite): its
    /// name and its median figures.
    fn best_peer(&self, workload: &str) -> Option<(&str, &Medians)> {
        self.peers(workload)
            .max_by(|a, b| a.1.rate.total_cmp(&b.1.rate))
    }

    /// The peers that ran `workload`: neither the baseline nor aiolite.
    fn peers(&self, workload: &str) -> impl Iterator<Item = (&str, &Medians)> {
        self.row(workload)
            .into_iter()
            .flatten()
            .filter(|(n, _)| n != "rusqlite" && !n.starts_with("aiolite"))
            .map(|(n, m)| (n.as_str(), m))
    }

    /// The smallest, over the rounds, of `m`'s rate against the best peer
    /// of the same round (NaN when no peer ran).
    fn worst_lead_over_peers(&self, workload: &str, m: &Medians) -> f64 {
        let peers: Vec<&Medians> = self.peers(workload).map(|(_, p)| p).collect();
        if peers.is_empty() {
            return f64::NAN;
        }
        // Each round's ratios share that round's baseline, so their
        // quotient is the quotient of the rates.
        m.round_ratios
            .iter()
            .enumerate()
            .map(|(r, ours)| {
                let best = peers
                    .iter()
                    .filter_map(|p| p.round_ratios.get(r).copied())
                    .fold(0.0, f64::max);
                ours / best
            })
            .fold(f64::INFINITY, f64::min)
    }

    /// The goals of issue #19, each checked in every round (the worst
    /// round's ratio), and against the best peer of the same run.
    fn targets(&self) -> Vec<(String, String, bool)> {
        let mut out = Vec::new();
        let worst = |m: &Medians| m.round_ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let peer_note = |w: &str, ratio: f64| match self.best_peer(w) {
            Some((name, p)) => {
                let base = self.row(w).map_or(f64::NAN, |r| r[0].1.rate);
                let theirs = p.rate / base;
                (format!(", best peer {name} {theirs:.2}"), ratio >= theirs)
            }
            None => (", no peer ran".to_owned(), true),
        };
        if let Some((ratio, m, base)) = self.aiolite("W1") {
            let times = self
                .best_peer("W1")
                .map_or(f64::NAN, |(_, p)| m.rate / p.rate);
            // The lead over the peers moves with the machine's wake-ups
            // (benches/HOW.md, "The peers' W1"), so it too must hold in
            // every round: each round against that round's best peer.
            let worst_times = self.worst_lead_over_peers("W1", m);
            let cpu = m.cpu_us_per_op / base.cpu_us_per_op;
            out.push((
                "W1 >= 3x the best peer's ops/s in every round, p50 <= 1.5x the baseline's, CPU per op <= 2x".to_owned(),
                format!(
                    "{times:.1}x the best peer, worst round {worst_times:.1}x (ratio {ratio:.2}, worst round {:.2}), p50 {:.1} us against {:.1} us, CPU {cpu:.2}x",
                    worst(m),
                    m.p50,
                    base.p50
                ),
                worst_times >= 3.0 && m.p50 <= 1.5 * base.p50 && cpu <= 2.0,
            ));
        }
        for (w, min) in [
            ("W2", 0.90),
            ("W3", 1.0),
            ("W4", 1.5),
            ("W6", 0.95),
            ("W6conn", 0.95),
        ] {
            if let Some((ratio, m, _)) = self.aiolite(w) {
                let (peer, ahead) = peer_note(w, ratio);
                out.push((
                    format!("{w} >= {min:.2} in every round, and ahead of every peer"),
                    format!("{ratio:.2}, worst round {:.2}{peer}", worst(m)),
                    worst(m) >= min && ahead,
                ));
            }
        }
        if let Some((ratio, m, _)) = self.aiolite("W5") {
            let mib = m.rss_kb / 1024.0;
            let (peer, ahead) = peer_note("W5", ratio);
            out.push((
                "W5 >= 0.80 in every round with peak RSS < 16 MiB".to_owned(),
                format!(
                    "{ratio:.2}, worst round {:.2}, {mib:.1} MiB{peer}",
                    worst(m)
                ),
                worst(m) >= 0.80 && mib < 16.0 && ahead,
            ));
        }
        for (w, what) in [
            ("W6group", "W6 with group commit"),
            ("W6groupexec", "W6 as single writes with group commit"),
        ] {
            if let Some((ratio, m, _)) = self.aiolite(w) {
                out.push((
                    format!("{what} >= 10x in every round (synchronous=FULL)"),
                    format!("{ratio:.2}x, worst round {:.2}x", worst(m)),
                    worst(m) >= 10.0,
                ));
            }
        }
        if let Some((ratio, m, base)) = self.aiolite("W7") {
            let writes = m.writes / base.writes;
            let best_writes = self
                .best_peer("W7")
                .and_then(|_| self.row("W7"))
                .map(|row| {
                    row.iter()
                        .filter(|(n, _)| n != "rusqlite" && !n.starts_with("aiolite"))
                        .map(|(_, p)| p.writes / base.writes)
                        .fold(0.0, f64::max)
                })
                .unwrap_or(0.0);
            out.push((
                "W7 with the guard: reads >= 0.5, writes >= 1.0 and ahead of every peer, zero locked errors".to_owned(),
                format!(
                    "reads {ratio:.2}, writes {writes:.2} (best peer {best_writes:.2}), {:.0} errors",
                    m.errors
                ),
                ratio >= 0.5 && writes >= 1.0 && writes >= best_writes && m.errors == 0.0,
            ));
        }
        if let (Some((guard, _, _)), Some((closure, _, _))) =
            (self.aiolite("W6"), self.aiolite("W6closure"))
        {
            out.push((
                "W6: the guard costs no more than the closure".to_owned(),
                format!("guard {guard:.2}, closure {closure:.2}"),
                guard >= closure,
            ));
        }
        if let (Some((_, g, gb)), Some((_, c, cb))) =
            (self.aiolite("W7"), self.aiolite("W7closure"))
        {
            let (guard, closure) = (g.writes / gb.writes, c.writes / cb.writes);
            out.push((
                "W7 writes: the guard costs no more than the closure".to_owned(),
                format!("guard {guard:.2}, closure {closure:.2}"),
                guard >= closure,
            ));
        }
        if let Some((ratio, m, base)) = self.aiolite("W8") {
            let (peer, ahead) = peer_note("W8", ratio);
            out.push((
                "W8 transfer: ahead of every peer".to_owned(),
                format!(
                    "{ratio:.2}, p99 {:.0} us against {:.0} us{peer}",
                    m.p99, base.p99
                ),
                ahead,
            ));
        }
        out
    }

    pub(crate) fn write(&self, path: &Path) -> std::io::Result<()> {
        let svg_name = "benchmarks.svg";
        let svg_path = path.with_file_name(svg_name);
        std::fs::write(&svg_path, self.chart())?;

        let mut md = String::new();
        let _ = writeln!(md, "# Benchmarks\n");
        let _ = writeln!(
            md,
            "Written by `bash benches/run.sh` (the workloads of `benches/WORKLOADS.md`, \
             in `benches/workloads.rs` and the peer programs under `benches/peers/`); the \
             \"How\" section is `benches/HOW.md`. Do not edit this file by hand: run the script.\n"
        );
        let _ = writeln!(md, "## Machine and versions\n");
        let _ = writeln!(
            md,
            "- CPU: {} ({} cores visible)",
            proc_field("/proc/cpuinfo", "model name"),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let _ = writeln!(md, "- Memory: {}", proc_field("/proc/meminfo", "MemTotal"));
        let _ = writeln!(md, "- Kernel: {}", first_line("uname", &["-sr"]));
        let _ = writeln!(md, "- Rust: {}", first_line("rustc", &["-V"]));
        if let Ok(v) = std::env::var("AIOLITE_BENCH_VERSIONS") {
            let _ = writeln!(md, "- Crates: {v}");
        }
        let mut sqlite: Vec<String> = Vec::new();
        for (_, row) in self.table {
            for (name, m) in row {
                let entry = format!("{name} {}", m.sqlite);
                if !m.sqlite.is_empty() && !sqlite.contains(&entry) {
                    sqlite.push(entry);
                }
            }
        }
        let _ = writeln!(
            md,
            "- SQLite linked by each contestant: {}",
            sqlite.join(", ")
        );
        let _ = writeln!(
            md,
            "- Runs: median of {} per contestant, rounds alternating the contestants; scale {} \
             (times the row counts of WORKLOADS.md); tokio multi-thread runtime with 2 workers; \
             a file database in a temporary directory, WAL, synchronous=NORMAL (FULL for W6*); \
             each goal below is checked in its worst round.\n",
            self.runs, self.scale
        );

        let _ = writeln!(md, "## Results\n");
        let _ = writeln!(
            md,
            "Each cell: the median figure, in bold its ratio to synchronous rusqlite on the \
             calling thread in the same run, and the CPU seconds per operation of the whole \
             process against the baseline's (W1 adds p50 latency; W5 peak RSS; W7 reads, \
             writes and 'database is locked' errors; W8 p99 latency). Every workload body runs \
             as a task spawned on the runtime; `aiolite-main` runs W1 inside `block_on` on the \
             main thread. `aiolite` runs W1, W2, W4 and W5 on a `Connection` and W3, W6, W7 \
             and W8 on a `Database` (1 writer + 4 readers), transactions with the `begin()` \
             guard; `aiolite-db` runs W1, W2, W4 and W5 on a `Database` too. W6conn is W6 on \
             one `Connection`, W6closure and W7closure use `transaction(|tx| ..)`, W6group \
             and W7group `group_commit(true)`, W6exec single `execute` writes and W6groupexec those with \
             group commit; W5derive decodes into a `#[derive(FromRow)]` struct.\n"
        );
        let _ = writeln!(
            md,
            "![ratio to synchronous rusqlite, per workload and contestant]({svg_name})\n"
        );
        let mut names: Vec<&str> = Vec::new();
        for (_, row) in self.table {
            for (n, _) in row {
                if !names.contains(&n.as_str()) {
                    names.push(n);
                }
            }
        }
        let _ = writeln!(md, "| workload | {} |", names.join(" | "));
        let _ = writeln!(md, "|---|{}", "---:|".repeat(names.len()));
        for (workload, row) in self.table {
            let base = &row[0].1;
            let mut cells = Vec::new();
            for name in &names {
                let cell = match row.iter().find(|(n, _)| n == name) {
                    None => "".to_owned(),
                    Some((_, m)) => {
                        let mut c = format!("{} **{:.2}**", human(m.rate), m.rate / base.rate);
                        match *workload {
                            "W1" => c += &format!(" ({:.1} us)", m.p50),
                            "W5" => c += &format!(", {:.1} MiB", m.rss_kb / 1024.0),
                            "W8" => c += &format!(" (p99 {:.0} us)", m.p99),
                            "W7" | "W7closure" | "W7group" => {
                                c += &format!(
                                    "; writes {} **{:.2}**, {:.0} errors",
                                    human(m.writes),
                                    m.writes / base.writes,
                                    m.errors
                                )
                            }
                            _ => {}
                        }
                        if base.cpu_us_per_op > 0.0 {
                            c += &format!(", CPU {:.1}x", m.cpu_us_per_op / base.cpu_us_per_op);
                        }
                        c
                    }
                };
                cells.push(cell);
            }
            let _ = writeln!(
                md,
                "| {workload} ({}) | {} |",
                unit(workload).replace("_per_s", "/s"),
                cells.join(" | ")
            );
        }
        if let Some(row) = self.row("W5derive") {
            if let Some((_, m)) = row.iter().find(|(n, _)| n == "aiolite") {
                let _ = writeln!(
                    md,
                    "\nW5derive, alternated in each run: `#[derive(FromRow)]` {} rows/s against hand-written `row.get` {} rows/s ({:+.1} %).",
                    human(m.rate),
                    human(m.by_hand),
                    (m.by_hand / m.rate - 1.0) * 100.0
                );
            }
        }

        let _ = writeln!(md, "\n## Rounds and the machine's hand-over speed\n");
        let _ = writeln!(
            md,
            "aiolite's ratio in each round, with the round trip of a cache line between two \
             spinning threads measured just before that run (`handoff_ns` in \
             `benches/workloads.rs`). This VM flips between about 100 ns and about 500 ns; \
             what hands requests between threads follows it, the synchronous baseline \
             does not, so compare rounds of the same speed.\n"
        );
        let _ = writeln!(md, "| workload | rounds: ratio (hand-over ns) |\n|---|---|");
        for (workload, row) in self.table {
            if let Some((_, m)) = row.iter().find(|(n, _)| n == "aiolite") {
                let rounds: Vec<String> = m
                    .round_ratios
                    .iter()
                    .zip(&m.round_handoffs)
                    .map(|(r, h)| format!("{r:.2} ({h:.0})"))
                    .collect();
                let _ = writeln!(md, "| {workload} | {} |", rounds.join(", "));
            }
        }

        if let Some(row) = self.row("W1") {
            let _ = writeln!(md, "\n## W1 in each round, every contestant\n");
            let _ = writeln!(
                md,
                "The peers' W1 sleeps and wakes a thread twice per query, and what that costs on \
                 this VM moves between runs by a factor of 3 to 4 (benches/HOW.md, \"The peers' \
                 W1\"), so the lead over them is checked round by round. Each cell: the ratio to \
                 the baseline of the same round, and the p50.\n"
            );
            let rounds = row.first().map_or(0, |(_, m)| m.round_ratios.len());
            let head: Vec<String> = (1..=rounds).map(|r| format!("round {r}")).collect();
            let _ = writeln!(
                md,
                "| contestant | {} |\n|---|{}",
                head.join(" | "),
                "---:|".repeat(rounds)
            );
            for (name, m) in row {
                let cells: Vec<String> = m
                    .round_ratios
                    .iter()
                    .zip(&m.round_p50s)
                    .map(|(r, p50)| format!("**{r:.2}**, {p50:.1} us"))
                    .collect();
                let _ = writeln!(md, "| {name} | {} |", cells.join(" | "));
            }
        }

        let _ = writeln!(md, "\n## Goals (issue #19), aiolite in this run\n");
        let _ = writeln!(md, "| target | measured | met |\n|---|---|---|");
        for (target, measured, met) in self.targets() {
            let _ = writeln!(
                md,
                "| {target} | {measured} | {} |",
                if met { "yes" } else { "**no**" }
            );
        }
        let how =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/HOW.md"))
                .unwrap_or_default();
        let _ = writeln!(md, "\n{how}");
        std::fs::write(path, md)
    }

    /// Horizontal bars of each contestant's ratio, grouped by workload, with
    /// the baseline's 1.0 marked.
    fn chart(&self) -> String {
        let bar_h = 14.0;
        let gap = 10.0;
        let left = 90.0;
        let width = 560.0;
        let max_ratio = self
            .table
            .iter()
            .flat_map(|(_, row)| {
                let base = row[0].1.rate;
                row.iter().map(move |(_, m)| m.rate / base)
            })
            .fold(1.0, f64::max)
            .ceil();
        let x = |r: f64| left + width * (r / max_ratio);
        let mut body = String::new();
        let mut y = 40.0;
        let mut legend: Vec<&str> = Vec::new();
        for (workload, row) in self.table {
            let base = row[0].1.rate;
            let bars: Vec<_> = row.iter().filter(|(n, _)| n != "rusqlite").collect();
            let group_h = bars.len() as f64 * bar_h;
            let _ = writeln!(
                body,
                r#"<text x="{:.0}" y="{:.1}" text-anchor="end" font-size="13">{workload}</text>"#,
                left - 8.0,
                y + group_h / 2.0 + 4.0
            );
            for (name, m) in bars {
                if !legend.contains(&name.as_str()) {
                    legend.push(name);
                }
                let r = m.rate / base;
                let _ = writeln!(
                    body,
                    r#"<rect x="{left}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{name} {workload}: {r:.2}</title></rect><text x="{:.1}" y="{:.1}" font-size="10">{r:.2}</text>"#,
                    (x(r) - left).max(1.0),
                    bar_h - 2.0,
                    colour(name),
                    x(r) + 3.0,
                    y + bar_h - 4.0
                );
                y += bar_h;
            }
            y += gap;
        }
        let height = y + 30.0;
        let mut svg = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{:.0}" height="{height:.0}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="{left}" y="20" font-size="14">Throughput as a fraction of synchronous rusqlite in the same run (higher is better)</text>
"#,
            left + width + 140.0
        );
        for tick in 0..=(max_ratio as usize) {
            let tx = x(tick as f64);
            let stroke = if tick == 1 { "#000" } else { "#ddd" };
            let _ = writeln!(
                svg,
                r#"<line x1="{tx:.1}" y1="30" x2="{tx:.1}" y2="{:.1}" stroke="{stroke}"/><text x="{tx:.1}" y="{:.1}" font-size="11" text-anchor="middle">{tick}</text>"#,
                y,
                y + 15.0
            );
        }
        svg += &body;
        for (i, name) in legend.iter().enumerate() {
            let ly = 40.0 + i as f64 * 18.0;
            let lx = left + width + 20.0;
            let _ = writeln!(
                svg,
                r#"<rect x="{lx}" y="{ly}" width="12" height="12" fill="{}"/><text x="{:.0}" y="{:.0}" font-size="12">{name}</text>"#,
                colour(name),
                lx + 16.0,
                ly + 11.0
            );
        }
        svg += "</svg>\n";
        svg
    }
}
