//! `nvr status`: the API's documents fetched over HTTP and printed readably.

use super::*;

/// A few readable lines for one of `nvr status`'s documents.
fn readable_status(path: &str, v: &Value) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let n = |x: &Value| x.as_f64().map_or("-".to_string(), |f| format!("{f:.1}"));
    let s = |x: &Value| x.as_str().unwrap_or("-").to_string();
    match path {
        "/api/v1/system/health" => {
            let _ = writeln!(out, "health     {}", s(&v["status"]));
            for r in v["reasons"].as_array().into_iter().flatten() {
                let _ = writeln!(out, "  - {}", s(r));
            }
            let nats = &v["nats"];
            let _ = writeln!(
                out,
                "nats       {} ({}, server {}, jetstream {})",
                if nats["connected"] == true {
                    "connected"
                } else {
                    "NOT connected"
                },
                s(&nats["url"]),
                s(&nats["server_version"]),
                nats["jetstream"]
            );
            for (name, st) in nats["streams"].as_object().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "  {name:<16} {:>9} messages {:>12} bytes",
                    st["messages"], st["bytes"]
                );
            }
            let cams = v["components"]["cameras"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !cams.is_empty() {
                let _ = writeln!(
                    out,
                    "cameras    {:<16} {:<13} {:>6} {:>7} {:>6}  last error",
                    "id", "state", "fps in", "fps out", "errors"
                );
                for c in &cams {
                    let _ = writeln!(
                        out,
                        "           {:<16} {:<13} {:>6} {:>7} {:>6}  {}",
                        s(&c["id"]),
                        s(&c["state"]),
                        n(&c["fps_in"]),
                        n(&c["fps_out"]),
                        c["errors"].to_string(),
                        c["last_error"].as_str().unwrap_or("")
                    );
                }
            }
        }
        "/api/v1/plugins/nvr-detection/status" => {
            let _ = writeln!(
                out,
                "detection  {} | backend {} | queue {} | {} fps | processed {} skipped {} errors {} | latency avg {} ms p99 {} ms",
                if v["connected"] == true { "connected" } else { "NO worker answers" },
                s(&v["backend"]),
                v["queue_size"],
                n(&v["fps"]),
                v["processed_count"],
                v["skipped_count"],
                v["error_count"],
                n(&v["avg_latency_ms"]),
                n(&v["p99_latency_ms"])
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "spatial    {} active, {} lost, {} static | handoffs {} done, {} failed | cycle avg {} ms p99 {} ms",
                v["active_tracks"],
                v["lost_tracks"],
                v["static_tracks"],
                v["handoffs_completed"],
                v["handoff_failures"],
                n(&v["avg_processing_ms"]),
                n(&v["p99_processing_ms"])
            );
        }
    }
    out
}

/// `nvr status`: prints the health, detection and spatial documents.
pub async fn print_status(
    cfg: &crate::config::Config,
    args: crate::cli::StatusArgs,
) -> Result<ExitCode> {
    let base = match args.api {
        Some(a) => a.trim_end_matches('/').to_string(),
        None => {
            let port = crate::config::host_port(&cfg.api.address)
                .map(|(_, p)| p)
                .unwrap_or(12000);
            format!("http://127.0.0.1:{port}")
        }
    };
    let mut failed = false;
    use std::io::IsTerminal;
    let as_json = args.json || !std::io::stdout().is_terminal();
    for path in [
        "/api/v1/system/health",
        "/api/v1/plugins/nvr-detection/status",
        "/api/v1/spatial/stats",
    ] {
        match http_get(&format!("{base}{path}"), &cfg.api.token).await {
            Ok((code, body)) => {
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
                if as_json {
                    println!(
                        "{}",
                        json!({"endpoint": path, "http_status": code, "body": v})
                    );
                } else {
                    print!("{}", readable_status(path, &v));
                }
                failed |= code >= 500;
            }
            Err(e) => {
                eprintln!("{base}{path}: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A minimal HTTP/1.1 GET (no TLS) for the CLI tools, with the API's bearer
/// token when one is configured.
pub async fn http_get(url: &str, token: &str) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("only http:// URLs are supported: {url}"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut conn = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(hostport),
    )
    .await
    .map_err(|_| anyhow::anyhow!("connect to {hostport} timed out"))??;
    let auth = if token.is_empty() {
        String::new()
    } else {
        format!("Authorization: Bearer {token}\r\n")
    };
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut buf))
        .await
        .map_err(|_| anyhow::anyhow!("reading {url} timed out"))??;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((code, body))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}
