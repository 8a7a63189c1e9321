//! `zap connect`: a client like wscat. With `-x` (and `--hex`, `--file`), it sends
//! those messages, prints what arrives for `-w` seconds and closes (for scripts).
//! Otherwise interactive on a terminal (a prompt, commands), or line by line when stdin
//! is piped (each line out as a text message, each message in as a line).

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
    /// For wss://: do not check the server's certificate (a self-signed test server).
    /// Dangerous: anyone on the way can read and change the traffic.
    #[arg(long)]
    no_check: bool,
    /// Connect through this HTTP proxy, `http://[user:password@]host:port` (CONNECT
    /// tunnel). Default: the environment's, as curl reads it (HTTPS_PROXY for wss://,
    /// HTTP_PROXY for ws://, ALL_PROXY, NO_PROXY).
    #[arg(long, value_name = "URL", conflicts_with = "no_proxy")]
    proxy: Option<String>,
    /// Connect directly, ignoring HTTP_PROXY, HTTPS_PROXY and ALL_PROXY.
    #[arg(long)]
    no_proxy: bool,
    /// Follow redirects (301, 302, 303, 307, 308) of the upgrade, up to 10 (wscat's -L).
    /// Authorization and Cookie headers are not sent to another origin.
    #[arg(short = 'L', long = "follow-redirects", visible_alias = "location")]
    follow_redirects: bool,
    /// Send this text message once connected (repeatable, sent in the order given with
    /// --hex and --file), print what arrives for --wait seconds, then close (wscat's -x).
    #[arg(short = 'x', long = "execute", value_name = "TEXT")]
    execute: Vec<String>,
    /// Send a binary message given in hex (`68656c6c6f`, `68 65 6c`), like -x.
    #[arg(long = "hex", value_name = "HEX")]
    hex: Vec<String>,
    /// Send a binary message with this file's bytes, like -x.
    #[arg(long = "file", value_name = "PATH")]
    file: Vec<std::path::PathBuf>,
    /// With -x, --hex or --file: how long to wait for answers before closing, in seconds.
    #[arg(short = 'w', long = "wait", value_name = "SECS", default_value_t = 2.0)]
    wait: f64,
    /// The messages of -x, --hex and --file, in command-line order.
    #[arg(skip)]
    sends: Vec<Outgoing>,
}

/// A message to send given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outgoing {
    Text(String),
    Hex(String),
    File(std::path::PathBuf),
}

impl ConnectArgs {
    /// Puts the messages of -x, --hex and --file in the order they were given (`matches`
    /// are the subcommand's; clap keeps each option's values apart).
    pub(crate) fn order_sends(&mut self, matches: Option<&clap::ArgMatches>) {
        let indices = |id: &str| -> Vec<usize> {
            matches.and_then(|m| m.indices_of(id)).map(Iterator::collect).unwrap_or_default()
        };
        let mut sends: Vec<(usize, Outgoing)> = Vec::new();
        let texts = self.execute.iter().cloned().map(Outgoing::Text);
        let hexes = self.hex.iter().cloned().map(Outgoing::Hex);
        let files = self.file.iter().cloned().map(Outgoing::File);
        for (id, values) in
            [("execute", texts.collect::<Vec<_>>()), ("hex", hexes.collect()), ("file", files.collect())]
        {
            let at = indices(id);
            for (i, value) in values.into_iter().enumerate() {
                sends.push((at.get(i).copied().unwrap_or(usize::MAX), value));
            }
        }
        sends.sort_by_key(|(at, _)| *at);
        self.sends = sends.into_iter().map(|(_, send)| send).collect();
    }
}

/// How many redirects `-L` follows (as Node's `ws` with `followRedirects`).
const MAX_REDIRECTS: usize = 10;
/// How long piped mode waits, after stdin ends, for the answers to what it sent.
const PIPE_LINGER: Duration = Duration::from_secs(2);
/// The most bytes of a binary message shown.
const HEX_PREVIEW: usize = 32;

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
    if !args.sends.is_empty() {
        return execute(ws, &args.sends, args.wait).await;
    }
    let lines = stdin_lines();
    if std::io::stdin().is_terminal() { interactive(ws, lines).await } else { piped(ws, lines).await }
}

/// The message of an [`Outgoing`]; `Err` is the message to show.
fn outgoing(send: &Outgoing) -> Result<Message, String> {
    match send {
        Outgoing::Text(text) => Ok(Message::from(text.as_str())),
        Outgoing::Hex(hex) => parse_hex(hex).map(Message::from),
        Outgoing::File(path) => {
            std::fs::read(path).map(Message::from).map_err(|e| format!("--file {}: {e}", path.display()))
        }
    }
}

/// Bytes from hex digits, spaces allowed between them.
fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("bad hex {text:?}: an odd number of digits"));
    }
    digits
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("bad hex {text:?}"))
        })
        .collect()
}

/// Sends `sends`, prints every message that arrives for `wait` seconds (or until the
/// server closes), then closes with 1000.
async fn execute(ws: WebSocket, sends: &[Outgoing], wait: f64) -> ExitCode {
    let (tx, mut rx) = ws.split();
    for send in sends {
        let sent = match outgoing(send) {
            Ok(message) => tx.send(message).await.map_err(|e| e.to_string()),
            Err(message) => Err(message),
        };
        if let Err(message) = sent {
            eprintln!("error: {message}");
            let _ = tx.close(CloseCode::NORMAL, "").await;
            return ExitCode::FAILURE;
        }
    }
    let deadline = Instant::now() + Duration::from_secs_f64(wait.clamp(0.0, 86_400.0));
    loop {
        tokio::select! {
            () = zapsocket::time::sleep_until(deadline) => break,
            message = rx.recv() => match message {
                Some(Ok(message)) => print_line(&message),
                Some(Err(e)) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
                None => {
                    eprintln!("{}", disconnected(&rx));
                    return ExitCode::SUCCESS;
                }
            }
        }
    }
    let _ = zapsocket::time::timeout(Duration::from_secs(2), tx.close(CloseCode::NORMAL, "")).await;
    ExitCode::SUCCESS
}

/// Connects with the headers and subprotocols asked for; `Err` is the message to show.
async fn open(args: &ConnectArgs) -> Result<WebSocket, String> {
    let mut builder = client_builder(&args.headers, &args.protocols, !args.no_deflate, args.ca.as_deref())?
        .danger_accept_invalid_certs(args.no_check);
    if let Some(proxy) = &args.proxy {
        builder = builder.proxy(proxy);
    }
    if args.no_proxy {
        builder = builder.no_proxy();
    }
    if args.follow_redirects {
        builder = builder.follow_redirects(MAX_REDIRECTS);
    }
    builder.connect(&args.url).await.map_err(|e| match e.status() {
        Some(300..400) if e.is_handshake() && !args.follow_redirects => {
            format!("{e} (a redirect: -L follows it)")
        }
        _ if e.is_handshake() => e.to_string(),
        _ => format!("cannot connect to {}: {e}", args.url),
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
                "/ping [payload]   send a ping\n/binary HEX   send a binary message\n/file PATH   send a file as a binary message\n/close [CODE [REASON]]   close (default 1000)\n/quit   leave",
            );
            Ok(())
        }
        "/binary" | "/file" => {
            let send =
                if word == "/binary" { Outgoing::Hex(rest.to_owned()) } else { Outgoing::File(rest.into()) };
            match outgoing(&send) {
                Ok(message) => tx.send(message).await,
                Err(message) => {
                    screen.say(&format!("error: {message}"));
                    Ok(())
                }
            }
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

/// `[binary N bytes] 68 69 00 ff |hi..|`: the length, then the first bytes in hex and
/// as text (`.` for what is not printable ASCII).
fn binary_summary(data: &[u8]) -> String {
    let mut out = format!("[binary {} bytes]", data.len());
    let shown = &data[..data.len().min(HEX_PREVIEW)];
    for byte in shown {
        out.push_str(&format!(" {byte:02x}"));
    }
    if data.len() > HEX_PREVIEW {
        out.push('…');
    }
    if !shown.is_empty() {
        let text: String = shown
            .iter()
            .map(|b| if b.is_ascii_graphic() || *b == b' ' { char::from(*b) } else { '.' })
            .collect();
        out.push_str(&format!(" |{text}|"));
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

/// A received message as one line of stdout: text as is, binary as its length and first
/// bytes (pings and pongs are not shown).
fn print_line(message: &Message) {
    let mut out = std::io::stdout().lock();
    let _ = match message {
        Message::Text(text) => writeln!(out, "{text}"),
        Message::Binary(data) => writeln!(out, "{}", binary_summary(data)),
        Message::Ping(_) | Message::Pong(_) => Ok(()),
    };
}
