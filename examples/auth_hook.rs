//! The `authorize` hook: three ways a client proves who it is before the 101 answer,
//! each attaching a user that the handler reads with `ws.data::<User>()`.
//!
//! - `ws://127.0.0.1:8080/query?access_token=t0ken` (like `ws`'s `verifyClient` examples)
//! - `ws://127.0.0.1:8080/cookie` with `Cookie: session=s3ssion`
//! - `ws://127.0.0.1:8080/protocol` offering the subprotocols `chat` and `token.t0ken`
//!   (the token stays out of URLs and access logs; the server answers `chat`)
//!
//! Run: `cargo run --example auth_hook`, then e.g.
//! `zap connect 'ws://127.0.0.1:8080/query?access_token=t0ken'` or
//! `zap connect ws://127.0.0.1:8080/protocol -s chat -s token.t0ken`.

use zapsocket::{Accept, HttpResponse, Request, Server};

/// Who the client is: attached by the hook, read by the handler.
struct User(String);

/// A stand-in for a token or session store lookup.
async fn lookup(credential: Option<&str>) -> Option<User> {
    match credential {
        Some("t0ken") => Some(User("ada".into())),
        Some("s3ssion") => Some(User("grace".into())),
        _ => None,
    }
}

async fn authorize(request: Request) -> Result<Accept, HttpResponse> {
    let credential = match request.path() {
        "/query" => request.query_param("access_token"),
        "/cookie" => request.cookie("session").map(str::to_owned),
        _ => request.subprotocols().iter().find_map(|p| p.strip_prefix("token.").map(str::to_owned)),
    };
    match lookup(credential.as_deref()).await {
        Some(user) => Ok(Accept::new().data(user)),
        None => Err(HttpResponse::text(401, "unknown or missing credentials")),
    }
}

#[tokio::main]
async fn main() -> zapsocket::Result<()> {
    let server = Server::builder()
        .port(8080)
        .path("/query")
        .path("/cookie")
        .path("/protocol")
        .subprotocol("chat")
        .allowed_origin("http://localhost:8080")
        .authorize(authorize)
        .bind()
        .await?;
    println!("listening on ws://{}", server.local_addr());
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    server
        .serve_with_shutdown(
            |mut ws| async move {
                let name = ws.data::<User>().map_or("?", |u| u.0.as_str()).to_owned();
                let _ = ws.send(format!("welcome, {name}")).await;
                while let Some(Ok(msg)) = ws.recv().await {
                    if msg.is_data() && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            },
            ctrl_c,
        )
        .await
}
