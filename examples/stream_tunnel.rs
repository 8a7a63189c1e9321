//! A TCP tunnel over a WebSocket, on loopback: `WebSocket::into_stream` turns a connection
//! into a byte stream (`AsyncRead + AsyncWrite`, like `ws`'s `createWebSocketStream`), and
//! `tokio::io::copy_bidirectional` joins it to a TCP connection.
//!
//! ```text
//! cargo run --example stream_tunnel
//! ```
//!
//! Starts a TCP service that answers each line upper-cased, a WebSocket server that joins
//! each connection to a new TCP connection to that service, and a client that sends a few
//! KiB of lines through the tunnel, prints what comes back, closes and exits.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use zapsocket::{Client, Server};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A plain TCP service.
    let service = TcpListener::bind("127.0.0.1:0").await?;
    let service_addr = service.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = service.accept().await {
            tokio::spawn(shout(tcp));
        }
    });

    // The tunnel's far end: each WebSocket is joined to a TCP connection to the service.
    let server = Server::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/tunnel", server.local_addr());
    tokio::spawn(server.serve(move |ws| async move {
        let Ok(mut tcp) = TcpStream::connect(service_addr).await else { return };
        let mut stream = ws.into_stream();
        let _ = tokio::io::copy_bidirectional(&mut stream, &mut tcp).await;
    }));

    // The near end: each write is one binary message.
    let mut stream = Client::connect(&url).await?.into_stream();
    let lines: Vec<String> = (1..=128).map(|i| format!("line {i:3} through the tunnel\n")).collect();
    for line in &lines {
        stream.write_all(line.as_bytes()).await?;
    }
    let sent = lines.concat();
    let mut answer = vec![0; sent.len()];
    stream.read_exact(&mut answer).await?;
    let answer = String::from_utf8(answer)?;
    assert_eq!(answer, sent.to_uppercase());

    let answer: Vec<&str> = answer.lines().collect();
    println!("sent {} bytes in {} messages, got them back upper-cased:", sent.len(), lines.len());
    println!("  {}\n  ...\n  {}", answer[0], answer[answer.len() - 1]);
    stream.shutdown().await?; // a close with 1000; the server ends the TCP connection
    println!("closed: {:?}", stream.close_frame().map(|f| f.code));
    Ok(())
}

/// Answers each line upper-cased.
async fn shout(tcp: TcpStream) -> std::io::Result<()> {
    let (reader, mut writer) = tcp.into_split();
    let mut lines = BufReader::new(reader).lines();
    while let Some(line) = lines.next_line().await? {
        writer.write_all(format!("{}\n", line.to_uppercase()).as_bytes()).await?;
    }
    Ok(())
}
