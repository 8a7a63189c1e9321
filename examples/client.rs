//! A client: connect to a URL, send a message, print the reply, close.
//!
//! Run a server first (`cargo run --example echo_server`), then
//! `cargo run --example client -- [URL] [MESSAGE]` (defaults: `ws://127.0.0.1:8080`
//! and `hello`).
//!
//! The same client with Node's `ws`:
//!
//! ```js
//! import WebSocket from 'ws';
//!
//! const ws = new WebSocket('ws://127.0.0.1:8080');
//! ws.on('open', () => ws.send('hello'));
//! ws.on('message', (data, isBinary) => {
//!   console.log('received: %s', isBinary ? `${data.length} bytes` : data);
//!   ws.close(1000, 'done');
//! });
//! ws.on('close', (code, reason) => console.log('closed', code, reason.toString()));
//! ```

use std::time::Duration;

use zapsocket::{Client, CloseCode, Message};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "ws://127.0.0.1:8080".to_owned());
    let text = args.next().unwrap_or_else(|| "hello".to_owned());

    // Resolves once the handshake is done (the `open` event); fails with the HTTP status
    // if the server refuses (`error.status()`).
    let mut ws = Client::connect(&url).await?;
    println!("connected to {url}");
    ws.send(text.as_str()).await?;

    // Wait for the first data message; pings are answered by the library as we read.
    let reply = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(message) = ws.recv().await {
            match message? {
                Message::Text(text) => return Ok(Some(format!("{text}"))),
                Message::Binary(data) => return Ok(Some(format!("{} bytes", data.len()))),
                Message::Ping(_) | Message::Pong(_) => {}
            }
        }
        Ok::<_, zapsocket::Error>(None)
    })
    .await?;
    match reply? {
        Some(reply) => println!("received: {reply}"),
        None => println!("the server closed before replying"),
    }

    // Waits for the server's answer (or the close timeout).
    ws.close(CloseCode::NORMAL, "done").await?;
    if let Some(frame) = ws.close_frame() {
        println!("closed {} {:?}", frame.code, frame.reason);
    }
    Ok(())
}
