//! `zap connect`: a client like wscat. Interactive on a terminal (a prompt, commands),
//! line by line when stdin is piped (each line out as a text message, each text message
//! in as a line).

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use zapsocket::{
    Client, ClientBuilder, CloseCode, CloseFrame, Message, WebSocket, WebSocketReceiver, WebSocketSender,
};

use crate::Output;

/// Options of `zap connect`.
#[derive(clap::Args, Debug)]
pub(crate) struct ConnectArgs {
    /// The server's URL, e.g. `ws://127.0.0.1:8080/echo`.
    url: String,
    /// A request header, `'Name: value'` (may be repeated).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// A subprotocol to offer, in order of preference (may be repeated).
    #[arg(short = 's', long = "protocol", visible_alias = "subprotocol", value_name = "PROTOCOL")]
    protocols: Vec<String>,
    /// Do not offer permessage-deflate (offered by default; used if the server agrees).
    #[arg(long)]
    no_deflate: bool,
    /// For wss://: also trust the CA certificate(s) in this PEM file (the system's roots
    /// are trusted too).
    #[arg(long, value_name = "PATH")]
    ca: Option<std::path::PathBuf>,
}

/// How long piped mode waits, after stdin ends, for the answers to what it sent.
const PIPE_LINGER: Duration = Duration::from_secs(2);
/// The most bytes of a binary message shown in hex.
const HEX_PREVIEW: usize = 16;

/// Connects, then talks interactively or pipes stdin, depending on stdin.
pub(crate) async fn run(args: ConnectArgs) -> ExitCode {
    crate::init_logging("warn", Output::Stderr);
    let ws = match open(&args).await {
        Ok(ws) => ws,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    let lines = stdin_lines();
    if std::io::stdin().is_terminal() { interactive(ws, lines).await } else { piped(ws, lines).await }
}

/// Connects with the headers and subprotocols asked for; `Err` is the message to show.
async fn open(args: &ConnectArgs) -> Result<WebSocket, String> {
    let builder = client_builder(&args.headers, &args.protocols, !args.no_deflate, args.ca.as_deref())?;
    builder.connect(&args.url).await.map_err(|e| match e.is_handshake() {
        true => e.to_string(),
        false => format!("cannot connect to {}: {e}", args.url),
    })
}

/// A client with `'Name: value'` headers, subprotocols, permessage-deflate offered or not,
/// and an extra CA file (for `zap connect` and `zap bench`); `Err` is the message to show.
pub(crate) fn client_builder(
    headers: &[String],
    protocols: &[String],
    deflate: bool,
    ca: Option<&std::path::Path>,
) -> Result<ClientBuilder, String> {
    let mut builder = Client::builder();
    for header in headers {
        let (name, value) =
            header.split_once(':').ok_or_else(|| format!("bad header {header:?}: expected 'Name: value'"))?;
        builder = builder.header(name.trim(), value.trim());
    }
    for protocol in protocols {
        builder = builder.protocol(protocol.as_str());
    }
    if !deflate {
        builder = builder.deflate(None);
    }
    if let Some(path) = ca {
        let ca = zapsocket::Certificate::from_pem_file(path).map_err(|e| format!("--ca: {e}"))?;
        builder = builder.add_root_certificate(ca);
    }
    Ok(builder)
}

/// Reads stdin lines on a thread of their own (a blocking read cannot be cancelled, and
/// must not hold up the runtime's shutdown); the channel closes at end of input.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match stdin.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\n', '\r']).to_owned();
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A prompt, commands, and every message shown as it arrives.
async fn interactive(ws: WebSocket, mut lines: mpsc::Receiver<String>) -> ExitCode {
    let (tx, mut rx) = ws.split();
    let screen = Screen { clear: std::io::stdout().is_terminal() };
    match tx.deflate() {
        Some(params) => {
            screen.say(&format!("connected, compressed ({}) (press CTRL+C to quit)", params.to_header()))
        }
        None => screen.say("connected (press CTRL+C to quit)"),
    }
    screen.prompt();
    let mut stdin_open = true;
    let mut failed = false;
    loop {
        tokio::select! {
            line = lines.recv(), if stdin_open => match line {
                Some(line) => match command(&tx, &line, &screen).await {
                    Flow::Continue => screen.prompt(),
                    Flow::Quit => return ExitCode::SUCCESS,
                },
                None => {
                    // Ctrl-D: close politely, then report how the server answered.
                    stdin_open = false;
                    let _ = tx.close(CloseCode::NORMAL, "").await;
                }
            },
            message = rx.recv() => match message {
                Some(Ok(message)) => {
                    if let Some(text) = describe(&message) {
                        screen.say(&text);
                        screen.prompt();
                    }
                }
                Some(Err(e)) => {
                    screen.say(&format!("error: {e}"));
                    failed = true;
                }
                None => {
                    screen.say(&disconnected(&rx));
                    return if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS };
                }
            }
        }
    }
}

/// What to do after a line typed at the prompt.
enum Flow {
    Continue,
    Quit,
}

/// Runs a typed line: `/ping [payload]`, `/close [CODE [REASON...]]`, `/quit`, `/help`,
/// or a text message (`//text` sends `/text`).
async fn command(tx: &WebSocketSender, line: &str, screen: &Screen) -> Flow {
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    let result = match word {
        "/ping" => tx.ping(rest.as_bytes().to_vec()).await,
        "/close" => match parse_close(rest) {
            Ok((code, reason)) => tx.close(code, &reason).await,
            Err(message) => {
                screen.say(&format!("error: {message}"));
                Ok(())
            }
        },
        "/quit" => {
            let _ = zapsocket::time::timeout(Duration::from_secs(1), tx.close(CloseCode::NORMAL, "")).await;
            return Flow::Quit;
        }
        "/help" => {
            screen.say(
                "/ping [payload]   send a ping\n/close [CODE [REASON]]   close (default 1000)\n/quit   leave",
            );
            Ok(())
        }
        _ => tx.send(line.strip_prefix('/').filter(|l| l.starts_with('/')).unwrap_or(line)).await,
    };
    if let Err(e) = result {
        screen.say(&format!("error: {e}"));
    }
    Flow::Continue
}

/// Parses `[CODE [REASON...]]`; the code defaults to 1000.
fn parse_close(args: &str) -> Result<(CloseCode, String), String> {
    let args = args.trim();
    if args.is_empty() {
        return Ok((CloseCode::NORMAL, String::new()));
    }
    let (code, reason) = args.split_once(' ').unwrap_or((args, ""));
    let code: u16 = code.parse().map_err(|_| format!("bad close code {code:?}"))?;
    Ok((CloseCode(code), reason.trim().to_owned()))
}

/// How a received message is shown, or `None` for pings (the library answers them).
fn describe(message: &Message) -> Option<String> {
    match message {
        Message::Text(text) => Some(format!("< {text}")),
        Message::Binary(data) => Some(format!("< {}", binary_summary(data))),
        Message::Pong(payload) => Some(format!("< pong: {}", String::from_utf8_lossy(payload))),
        Message::Ping(_) => None,
    }
}

/// `[binary N bytes] 00 01 ff…`: the length and the first bytes in hex.
fn binary_summary(data: &[u8]) -> String {
    let mut out = format!("[binary {} bytes]", data.len());
    for byte in data.iter().take(HEX_PREVIEW) {
        out.push_str(&format!(" {byte:02x}"));
    }
    if data.len() > HEX_PREVIEW {
        out.push('…');
    }
    out
}

/// `disconnected (code: C, reason: "R")`.
fn disconnected(rx: &WebSocketReceiver) -> String {
    let frame = rx.close_frame().unwrap_or_else(|| CloseFrame::new(CloseCode::ABNORMAL, ""));
    format!("disconnected (code: {}, reason: {:?})", frame.code.0, frame.reason)
}

/// The terminal: lines printed above the prompt.
struct Screen {
    /// Whether stdout is a terminal, where the prompt line is erased before printing.
    clear: bool,
}

impl Screen {
    fn say(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let erase = if self.clear { "\r\x1b[2K" } else { "" };
        let _ = writeln!(out, "{erase}{text}");
        let _ = out.flush();
    }

    fn prompt(&self) {
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "> ");
        let _ = out.flush();
    }
}

/// Piped stdin: every line out as a text message, every message in as a line of stdout.
/// At the end of input, waits until as many messages came back as were sent (at most
/// [`PIPE_LINGER`]), then closes with 1000.
async fn piped(ws: WebSocket, lines: mpsc::Receiver<String>) -> ExitCode {
    let (tx, mut rx) = ws.split();
    // Sending runs on its own task, so that reading never waits for a send: a server
    // that echoes while we send must always find us reading.
    let mut writer = tokio::spawn(send_lines(tx.clone(), lines));
    let mut writer_done = false;
    let mut sent = 0u64;
    let mut received = 0u64;
    let mut deadline: Option<Instant> = None;
    let mut closing = false;
    let mut failed = false;
    loop {
        let linger_over = received >= sent || deadline.is_some_and(|d| d <= Instant::now());
        if writer_done && !closing && linger_over {
            // `recv()` ends once the server answers our close (or the close times out).
            closing = true;
            let tx = tx.clone();
            tokio::spawn(async move { tx.close(CloseCode::NORMAL, "").await });
        }
        tokio::select! {
            count = &mut writer, if !writer_done => {
                writer_done = true;
                sent = count.unwrap_or(0);
                deadline = Some(Instant::now() + PIPE_LINGER);
            }
            _ = sleep_until(deadline), if !closing => {}
            message = rx.recv() => match message {
                Some(Ok(message)) => {
                    if message.is_data() {
                        received += 1;
                        print_line(&message);
                    }
                }
                Some(Err(e)) => {
                    eprintln!("error: {e}");
                    failed = true;
                }
                None => {
                    writer.abort();
                    eprintln!("{}", disconnected(&rx));
                    return if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS };
                }
            }
        }
    }
}

/// Sends each line as a text message until stdin ends or the connection fails; returns
/// how many were sent.
async fn send_lines(tx: WebSocketSender, mut lines: mpsc::Receiver<String>) -> u64 {
    let mut sent = 0;
    while let Some(line) = lines.recv().await {
        if tx.send(line).await.is_err() {
            break;
        }
        sent += 1;
    }
    sent
}

/// Waits until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => zapsocket::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A received message as one line of stdout: text as is, binary as its length.
fn print_line(message: &Message) {
    let mut out = std::io::stdout().lock();
    let _ = match message {
        Message::Text(text) => writeln!(out, "{text}"),
        _ => writeln!(out, "[binary {} bytes]", message.len()),
    };
}
