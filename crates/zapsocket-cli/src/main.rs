//! `zap`: run a WebSocket server (`zap serve`) or talk to one (`zap connect`).

fn main() {}
