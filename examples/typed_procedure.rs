//! Typed procedures, like tRPC: Rust input and output types, and the TypeScript
//! declarations the JS client uses, from the same types.
//!
//! ```sh
//! cargo run --example typed_procedure              # calls from Rust, prints the .d.ts
//! cargo run --example typed_procedure -- --serve   # serve ws://127.0.0.1:8080/ for JS
//! ```
//!
//! From JavaScript (`js/zapsocket.js`), with the declarations this prints saved as
//! `api.d.ts`:
//!
//! ```js
//! import { connect } from './zapsocket.js';
//! /** @typedef {import('./api').Procedures} Procedures */
//!
//! const socket = connect('ws://127.0.0.1:8080/');   // Node 20: connect(url, { WebSocket })
//! const { total, average } = await socket.call('stats', { values: [1, 2, 3, 4] });
//! console.log(total, average);                       // 10 2.5
//! try {
//!   await socket.call('stats', { values: [] });
//! } catch (e) {
//!   console.log(e.code, e.message);                  // handler_error no values
//! }
//! try {
//!   await socket.call('stats', { values: 'x' });
//! } catch (e) {
//!   console.log(e.code);                             // bad_payload (serde's message in e.message)
//! }
//! ```
//!
//! In TypeScript: `connect<{ Procedures: Procedures }>(url)` types `call`'s name, input
//! and output.

use serde::{Deserialize, Serialize};
use ts_rs::TS;
use zapsocket_realtime::client::Client;
use zapsocket_realtime::{Hub, Socket};

/// The input of `stats`.
#[derive(Serialize, Deserialize, TS)]
struct StatsInput {
    /// The numbers.
    values: Vec<f64>,
}

/// The output of `stats`.
#[derive(Serialize, Deserialize, TS, Debug)]
struct StatsOutput {
    total: f64,
    average: f64,
}

fn hub() -> Hub {
    let hub = Hub::new();
    hub.procedure("stats", |_: Socket, input: StatsInput| async move {
        if input.values.is_empty() {
            return Err("no values");
        }
        let total: f64 = input.values.iter().sum();
        Ok(StatsOutput { total, average: total / input.values.len() as f64 })
    });
    hub
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let serve = std::env::args().any(|a| a == "--serve");
    let port = if serve { 8080 } else { 0 };
    let server =
        zapsocket::Server::builder().port(port).subprotocol(zapsocket_realtime::SUBPROTOCOL).bind().await?;
    let url = format!("ws://{}/", server.local_addr());
    let hub = hub();
    println!("{}", hub.typescript());
    let serving = tokio::spawn(server.serve(move |ws| hub.clone().handle(ws)));
    if serve {
        println!("serving {url}");
        serving.await??;
        return Ok(());
    }
    let client = Client::connect(&url).await?;
    let out: StatsOutput = client.call("stats", &StatsInput { values: vec![1.0, 2.0, 3.0, 4.0] }).await?;
    println!("stats: {out:?}");
    if let Err(err) = client.call::<_, StatsOutput>("stats", &StatsInput { values: vec![] }).await {
        println!("error: {err}"); // handler_error: no values
    }
    if let Err(err) = client.call::<_, StatsOutput>("stats", &serde_json::json!({"values": "x"})).await {
        println!("error: {err}"); // bad_payload: invalid type: string "x", expected a sequence
    }
    Ok(())
}
