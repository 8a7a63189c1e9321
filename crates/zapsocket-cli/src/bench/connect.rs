//! `zap bench connect`: handshakes per second, and the server's memory per idle
//! connection.

use zapsocket::{CloseCode, Message, WebSocket};

use super::common::*;
use super::*;

pub(super) async fn connect(args: ConnectArgs) -> Outcome {
    const MODE: &str = "connect";
    let fail = |e: String| Failure::new(MODE, e);
    let progress = Progress::new(&args.common);
    let builder = builder(&args.common).map_err(fail)?;
    let pid = args.common.server_pid;
    let rss_before = pid.and_then(server_rss);
    let cpu_before = server_cpu(pid);
    let (mut sockets, hist, took) =
        open_all(&builder, &args.common.url, args.connections, args.common.concurrency, &progress)
            .await
            .map_err(fail)?;
    let cpu_after = server_cpu(pid);
    progress.done();
    zapsocket::time::sleep(Duration::from_secs_f64(args.hold.max(0.0))).await;
    let rss_after = pid.and_then(server_rss);
    if let Some(ws) = sockets.iter().find(|ws| ws.ready_state() != zapsocket::ReadyState::Open) {
        let frame = ws.close_frame().map(|f| format!("{} {:?}", f.code.0, f.reason)).unwrap_or_default();
        return Err(fail(format!("the server closed an idle connection ({frame})")));
    }
    if args.verify {
        verify(&mut sockets).await.map_err(fail)?;
    }
    let n = sockets.len();
    let closes = sockets.into_iter().map(|ws| async move { ws.close(CloseCode::NORMAL, "").await });
    futures_util::future::join_all(closes).await;
    let per_connection = match (rss_before, rss_after) {
        (Some(before), Some(after)) if n > 0 => json!((after as f64 - before as f64) / n as f64),
        _ => Value::Null,
    };
    let seconds = took.as_secs_f64().max(1e-9);
    Ok(json!({
        "tool": "zap bench",
        "mode": MODE,
        "ok": true,
        "url": args.common.url,
        "connections": n,
        "concurrency": args.common.concurrency,
        "seconds": seconds,
        "handshakes_per_s": n as f64 / seconds,
        "connect_latency_us": latency(&hist),
        "server_cpu_us_per_handshake": cpu_per(cpu_before, cpu_after, n as u64),
        "server_rss_before": rss_before,
        "server_rss_after": rss_after,
        "server_bytes_per_connection": per_connection,
        "verified": args.verify,
    }))
}

/// One 16-byte message on every connection, each echo checked.
async fn verify(sockets: &mut [WebSocket]) -> Result<(), String> {
    let filler = filler(SEQ_DIGITS);
    let checks = sockets.iter_mut().enumerate().map(|(i, ws)| {
        let data = payload(&filler, i as u64, SEQ_DIGITS);
        async move {
            ws.send(Message::binary(data.clone())).await.map_err(|e| format!("connection {}: {e}", i + 1))?;
            loop {
                match zapsocket::time::timeout(patience(), ws.recv()).await {
                    Ok(Some(Ok(m))) if m.is_data() && m.as_bytes() == data.as_ref() => return Ok(()),
                    Ok(Some(Ok(m))) if m.is_data() => {
                        return Err(format!("connection {}: wrong echo {}", i + 1, preview(m.as_bytes())));
                    }
                    Ok(Some(Ok(_))) => continue,
                    Ok(Some(Err(e))) => return Err(format!("connection {}: {e}", i + 1)),
                    Ok(None) => return Err(format!("connection {}: closed before its echo", i + 1)),
                    Err(_) => {
                        return Err(format!(
                            "connection {}: no echo within {} s",
                            i + 1,
                            patience().as_secs_f64()
                        ));
                    }
                }
            }
        }
    });
    for result in futures_util::future::join_all(checks).await {
        result?;
    }
    Ok(())
}
