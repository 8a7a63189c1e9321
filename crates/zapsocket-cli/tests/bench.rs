//! `zap bench` against a real `zap serve`, and against servers that answer wrongly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Output};

use common::{Serve, ZAP};
use serde_json::Value;
use zapsocket::{Message, WebSocket};

/// Runs `zap bench ARGS... --json --quiet`; the exit status and the JSON summary.
fn bench(args: &[&str]) -> (Output, Value) {
    let output =
        Command::new(ZAP).arg("bench").args(args).args(["--json", "--quiet"]).output().expect("run zap");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().find(|l| l.starts_with('{')).unwrap_or_else(|| {
        panic!("no JSON line; stdout {stdout:?}, stderr {:?}", String::from_utf8_lossy(&output.stderr))
    });
    let report: Value = serde_json::from_str(line).expect("the summary is JSON");
    (output, report)
}

fn number(report: &Value, key: &str) -> f64 {
    report[key].as_f64().unwrap_or_else(|| panic!("{key} missing in {report}"))
}

/// Latency percentiles are present and ordered.
fn check_latency(report: &Value, key: &str) {
    let l = &report[key];
    let (p50, p99, max) = (l["p50"].as_u64(), l["p99"].as_u64(), l["max"].as_u64());
    let (Some(p50), Some(p99), Some(max)) = (p50, p99, max) else { panic!("{key} incomplete in {report}") };
    assert!(p50 >= 1 && p50 <= p99 && p99 <= max, "{key}: {l}");
}

#[test]
fn echo_counts_checked_messages_and_reports_latency_and_server_cpu() {
    let serve = Serve::start(&[]);
    let url = serve.url("/echo");
    let pid = serve.pid();
    let (output, report) = bench(&[
        "echo",
        &url,
        "-c",
        "8",
        "-s",
        "1KiB",
        "-p",
        "4",
        "-d",
        "1",
        "-w",
        "0.2",
        "--server-pid",
        &pid,
    ]);
    assert!(output.status.success(), "{report}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["mode"], "echo");
    assert_eq!(report["size"], 1024);
    assert_eq!(report["connections"], 8);
    let messages = number(&report, "messages");
    assert!(messages >= 8.0, "{report}");
    let rate = number(&report, "messages_per_s");
    let seconds = number(&report, "seconds");
    assert!((rate * seconds - messages).abs() < 1.0, "{report}");
    check_latency(&report, "latency_us");
    assert!(number(&report, "server_cpu_us_per_message") > 0.0, "{report}");
}

#[test]
fn echo_of_text_and_of_a_large_message() {
    let serve = Serve::start(&[]);
    let url = serve.url("/");
    let (output, report) =
        bench(&["echo", &url, "-c", "2", "-s", "200KiB", "-d", "0.5", "-w", "0", "--text"]);
    assert!(output.status.success(), "{report}");
    assert_eq!(report["text"], true);
    assert!(number(&report, "messages") >= 1.0, "{report}");
}

#[test]
fn broadcast_reaches_every_subscriber_in_order() {
    let serve = Serve::start(&[]);
    let url = serve.url("/broadcast");
    let pid = serve.pid();
    let (output, report) =
        bench(&["broadcast", &url, "-c", "50", "-m", "40", "--window", "4", "--server-pid", &pid]);
    assert!(output.status.success(), "{report}");
    assert_eq!(report["deliveries"], 50 * 40);
    assert!(number(&report, "deliveries_per_s") > 0.0);
    check_latency(&report, "fanout_latency_us");
    check_latency(&report, "delivery_latency_us");
    assert!(number(&report, "server_cpu_us_per_delivery") > 0.0, "{report}");
}

#[test]
fn realtime_events_reach_every_member_of_the_room() {
    let serve = Serve::start(&[]);
    let url = serve.url("/ws");
    let (output, report) =
        bench(&["realtime", &url, "-c", "30", "-m", "20", "--window", "2", "--room", "r1"]);
    assert!(output.status.success(), "{report}");
    assert_eq!(report["mode"], "realtime");
    assert_eq!(report["deliveries"], 30 * 20);
    check_latency(&report, "fanout_latency_us");
}

#[test]
fn connect_reports_handshakes_and_memory_per_idle_connection() {
    let serve = Serve::start(&[]);
    let url = serve.url("/");
    let pid = serve.pid();
    let (output, report) =
        bench(&["connect", &url, "-c", "500", "-k", "32", "--hold", "0.5", "--verify", "--server-pid", &pid]);
    assert!(output.status.success(), "{report}");
    assert_eq!(report["connections"], 500);
    assert_eq!(report["verified"], true);
    assert!(number(&report, "handshakes_per_s") > 0.0);
    check_latency(&report, "connect_latency_us");
    // 500 connections take some memory, and not megabytes each.
    let per = number(&report, "server_bytes_per_connection");
    assert!(per > 0.0 && per < 1_000_000.0, "{report}");
}

/// A server built with the library that echoes, but changes one byte of the fifth
/// message of each connection.
async fn corrupting_server() -> String {
    let server = zapsocket::Server::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(|mut ws: WebSocket| async move {
        let mut count = 0;
        while let Some(Ok(message)) = ws.recv().await {
            if !message.is_data() {
                continue;
            }
            count += 1;
            let mut data = message.as_bytes().to_vec();
            if count == 5 {
                let last = data.len() - 1;
                data[last] ^= 1;
            }
            let reply = if message.is_text() {
                Message::text(String::from_utf8(data).unwrap())
            } else {
                Message::binary(data)
            };
            if ws.send(reply).await.is_err() {
                return;
            }
        }
    }));
    format!("ws://{addr}/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_echo_fails_the_run_with_what_differed() {
    let url = corrupting_server().await;
    let (output, report) =
        tokio::task::spawn_blocking(move || bench(&["echo", &url, "-c", "2", "-d", "1", "-w", "0"]))
            .await
            .unwrap();
    assert!(!output.status.success());
    assert_eq!(report["ok"], false);
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("the echo of message 4 differs"), "{error}");
}

#[test]
fn a_refused_handshake_fails_the_run_with_the_status() {
    let serve = Serve::start(&[]);
    let url = serve.url("/nowhere");
    let (output, report) = bench(&["echo", &url, "-c", "1", "-d", "0.2", "-w", "0"]);
    assert!(!output.status.success());
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("404"), "{error}");
}

#[test]
fn the_human_summary_names_the_figures() {
    let serve = Serve::start(&[]);
    let url = serve.url("/echo");
    let output = Command::new(ZAP)
        .args(["bench", "echo", &url, "-c", "2", "-d", "0.3", "-w", "0"])
        .output()
        .expect("run zap");
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("messages/s") && stdout.contains("p99"), "{stdout}");
}

/// A broadcast server that relays the first two messages to everyone, then stops
/// relaying (connections stay open): a lost message must fail the run, not hang it.
async fn stalling_relay() -> String {
    let server = zapsocket::Server::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr();
    let clients = zapsocket::Clients::default();
    let relayed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(server.serve(move |mut ws: WebSocket| {
        let clients = clients.clone();
        let relayed = relayed.clone();
        async move {
            clients.insert(&ws.sender());
            while let Some(Ok(message)) = ws.recv().await {
                if message.is_data() && relayed.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
                    clients.broadcast(message);
                }
            }
        }
    }));
    format!("ws://{addr}/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_never_arrives_fails_the_run_within_the_timeout() {
    let url = stalling_relay().await;
    let started = std::time::Instant::now();
    let (output, report) = tokio::task::spawn_blocking(move || {
        bench(&["broadcast", &url, "-c", "5", "-m", "10", "--window", "1", "--timeout", "1"])
    })
    .await
    .unwrap();
    assert!(!output.status.success());
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("message 2 reached 0 of 5 subscribers"), "{error}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "took {:?}", started.elapsed());
}
