//! The Markdown table of one run.

use std::fmt::Write;

use crate::engines::is_durable;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// Operations per second: higher is better.
    Rate,
    /// Seconds: lower is better.
    Secs,
    /// Bytes, shown in MB: lower is better.
    Bytes,
    /// A plain number.
    Plain,
}

struct Row {
    label: &'static str,
    /// Workload the row belongs to (shown only if it ran), if any.
    needs: Option<&'static str>,
    kind: Kind,
    value: fn(&Lookup, &str) -> Option<f64>,
}

struct Lookup(std::collections::BTreeMap<(String, String), f64>);

impl Lookup {
    fn get(&self, engine: &str, metric: &str) -> Option<f64> {
        self.0.get(&(engine.to_string(), metric.to_string())).copied()
    }
}

fn max2(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn rows() -> Vec<Row> {
    vec![
        Row {
            label: "W1 bulk load, one transaction (puts/s)",
            needs: None,
            kind: Kind::Rate,
            value: |l, e| l.get(e, "W1"),
        },
        Row {
            label: "W2 single-put transactions (commits/s)",
            needs: Some("W2"),
            kind: Kind::Rate,
            value: |l, e| l.get(e, "W2"),
        },
        Row {
            label: "disk before this engine: 4 KiB in place + fdatasync (per s)",
            needs: None,
            kind: Kind::Plain,
            value: |l, e| l.get(e, "fdatasync_in_place_4k_before"),
        },
        Row {
            label: "disk before this engine: 4 KiB appended + fdatasync (per s)",
            needs: None,
            kind: Kind::Plain,
            value: |l, e| l.get(e, "fdatasync_append_4k_before"),
        },
        Row {
            label: "W2 as a fraction of the in-place fdatasync rate measured just before",
            needs: Some("W2"),
            kind: Kind::Plain,
            value: |l, e| Some(l.get(e, "W2")? / l.get(e, "fdatasync_in_place_4k_before")?),
        },
        Row {
            label: "W3 100 transactions of 1,000 puts (puts/s)",
            needs: Some("W3"),
            kind: Kind::Rate,
            value: |l, e| l.get(e, "W3"),
        },
        Row {
            label: "W4 random point reads, 1 thread (reads/s)",
            needs: Some("W4"),
            kind: Kind::Rate,
            value: |l, e| l.get(e, "W4"),
        },
        Row {
            label: "W4x2 random point reads, 2 threads (reads/s)",
            needs: Some("W4x2"),
            kind: Kind::Rate,
            value: |l, e| l.get(e, "W4x2"),
        },
        Row {
            label: "W5 scans of 100 entries (scans/s)",
            needs: Some("W5"),
            kind: Kind::Rate,
            value: |l, e| l.get(e, "W5"),
        },
        Row {
            label: "W6 delete half the keys, one transaction (deletes/s)",
            needs: Some("W6"),
            kind: Kind::Rate,
            value: |l, e| l.get(e, "W6"),
        },
        Row {
            label: "W7 8 threads of single-put transactions (commits/s)",
            needs: Some("W7"),
            kind: Kind::Rate,
            value: |l, e| l.get(e, "W7"),
        },
        Row {
            label: "W8 reopen + first read after a crash, warm (s)",
            needs: Some("W8"),
            kind: Kind::Secs,
            value: |l, e| l.get(e, "W8"),
        },
        Row {
            label: "W8c the same, files evicted from the page cache (s)",
            needs: Some("W8c"),
            kind: Kind::Secs,
            value: |l, e| l.get(e, "W8c"),
        },
        Row {
            label: "W8 transactions found after the crash (of 100 committed)",
            needs: Some("W8"),
            kind: Kind::Plain,
            value: |l, e| l.get(e, "W8_txns_recovered"),
        },
        Row {
            label: "W8c transactions found after the crash (of 100 committed)",
            needs: Some("W8c"),
            kind: Kind::Plain,
            value: |l, e| l.get(e, "W8c_txns_recovered"),
        },
        Row {
            label: "bytes on disk after W1 (allocated blocks)",
            needs: None,
            kind: Kind::Bytes,
            value: |l, e| l.get(e, "disk_after_W1"),
        },
        Row {
            label: "bytes on disk after W6",
            needs: Some("W6"),
            kind: Kind::Bytes,
            value: |l, e| l.get(e, "disk_after_W6"),
        },
        Row {
            label: "file lengths after W1 (sparse files count in full)",
            needs: None,
            kind: Kind::Bytes,
            value: |l, e| l.get(e, "disk_after_W1_apparent"),
        },
        Row {
            label: "file lengths after W6",
            needs: Some("W6"),
            kind: Kind::Bytes,
            value: |l, e| l.get(e, "disk_after_W6_apparent"),
        },
        Row {
            label: "peak RSS, W1-W7 process",
            needs: None,
            kind: Kind::Bytes,
            value: |l, e| l.get(e, "peak_rss_main"),
        },
        Row {
            label: "peak RSS, W8 writer process",
            needs: None,
            kind: Kind::Bytes,
            value: |l, e| max2(l.get(e, "peak_rss_W8_writer"), l.get(e, "peak_rss_W8c_writer")),
        },
        Row {
            label: "peak RSS, W8 recovery process",
            needs: None,
            kind: Kind::Bytes,
            value: |l, e| max2(l.get(e, "peak_rss_W8_recover"), l.get(e, "peak_rss_W8c_recover")),
        },
        Row {
            label: "log fsyncs per commit in W2 (ariesdb Stats)",
            needs: Some("W2"),
            kind: Kind::Plain,
            value: |l, e| l.get(e, "fsyncs_per_commit_W2"),
        },
        Row {
            label: "log fsyncs per commit in W7 (ariesdb Stats)",
            needs: Some("W7"),
            kind: Kind::Plain,
            value: |l, e| l.get(e, "fsyncs_per_commit_W7"),
        },
    ]
}

fn ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.2}")
    }
}

fn sig3(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn fmt(kind: Kind, x: f64) -> String {
    if kind == Kind::Plain && (x >= 1000.0 || x.fract() == 0.0) {
        return format!("{x:.0}");
    }
    match kind {
        Kind::Rate if x >= 1e6 => format!("{} M", sig3(x / 1e6)),
        Kind::Rate if x >= 1e3 => format!("{} k", sig3(x / 1e3)),
        Kind::Rate => sig3(x),
        Kind::Secs if x < 1.0 => format!("{} ms", sig3(x * 1e3)),
        Kind::Secs => format!("{} s", sig3(x)),
        Kind::Bytes => format!("{} MB", sig3(x / 1e6)),
        Kind::Plain => sig3(x),
    }
}

/// The table: one column per engine that ran, and ariesdb's ratio to each
/// peer of its durability class (ariesdb vs sqlite and redb; ariesdb-eventual
/// vs sqlite-normal and redb-none).
pub fn table(
    results: &[serde_json::Value],
    engines: &[String],
    workloads: &[String],
    quick: bool,
    n: u64,
    cache_mib: usize,
) -> String {
    let l = Lookup(crate::index(results));
    let ran = |e: &str| engines.iter().any(|x| x == e);
    // Columns: (header, engine, Some(peer) for a ratio column).
    let mut cols: Vec<(String, &str, Option<&str>)> = Vec::new();
    for (ours, peers) in [("ariesdb", ["sqlite", "redb"]), ("ariesdb-eventual", ["sqlite-normal", "redb-none"])] {
        let class: Vec<&str> = std::iter::once(ours).chain(peers).filter(|e| ran(e)).collect();
        for e in &class {
            cols.push((e.to_string(), e, None));
        }
        if ran(ours) {
            for p in peers.iter().filter(|p| ran(p)) {
                cols.push((format!("{ours} ÷ {p}"), ours, Some(p)));
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{} run: {} pairs (24-byte keys, 150-byte values), cache {} MiB per engine.",
        if quick { "Quick" } else { "Full" },
        n,
        cache_mib
    );
    if let (Some(ip), Some(ap)) = (l.get("disk", "fdatasync_in_place_4k"), l.get("disk", "fdatasync_append_4k")) {
        let _ = writeln!(
            out,
            "Disk at the start of the run ({} s each): 4 KiB written in place then fdatasync {}/s; 4 KiB appended then \
             fdatasync {}/s. The disk is probed again (1 s each; quick mode 0.25 s) just before each engine.\n",
            l.get("disk", "probe_secs").unwrap_or(0.0),
            sig3(ip),
            sig3(ap)
        );
    }
    let _ = write!(out, "| workload |");
    for (h, _, _) in &cols {
        let _ = write!(out, " {h} |");
    }
    let _ = write!(out, "\n|---|");
    for _ in &cols {
        let _ = write!(out, "---:|");
    }
    out.push('\n');
    for row in rows() {
        if let Some(w) = row.needs {
            if !workloads.iter().any(|x| x == w) {
                continue;
            }
        }
        let cells: Vec<String> = cols
            .iter()
            .map(|(_, e, peer)| {
                let ours = (row.value)(&l, e);
                match peer {
                    None => ours.map(|x| fmt(row.kind, x)).unwrap_or_else(|| "–".into()),
                    Some(p) => match (ours, (row.value)(&l, p)) {
                        (Some(a), Some(b)) if b > 0.0 && row.kind != Kind::Plain => ratio(a / b),
                        _ => "–".into(),
                    },
                }
            })
            .collect();
        if cells.iter().all(|c| c == "–") {
            continue;
        }
        let _ = writeln!(out, "| {} | {} |", row.label, cells.join(" | "));
    }
    let eventual: Vec<&str> = engines.iter().map(String::as_str).filter(|e| !is_durable(e)).collect();
    out.push('\n');
    out.push_str(
        "Ratios are ariesdb's figure divided by the peer's of the same durability class: above 1 is better \
         for rates, below 1 is better for seconds, bytes and RSS.",
    );
    if !eventual.is_empty() {
        let _ = write!(
            out,
            " {}: commits return before they are durable, so their \"durable\" commits (W1, W2, W3, W6, W7) are \
             plain commits, and a crash may lose the latest ones (W8 rows above).",
            eventual.join(", ")
        );
    }
    out.push('\n');
    out
}
