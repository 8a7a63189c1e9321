//! TypeScript declarations of an application's own hub: its events, procedures and
//! declared server events, from its Rust types, written by `Hub::write_typescript`.

#![allow(clippy::unwrap_used)]

use serde::{Deserialize, Serialize};
use ts_rs::TS;
use zapsocket_realtime::{Hub, ReplyError, Socket};

/// A move in a game.
#[derive(Deserialize, TS)]
struct Move {
    /// The square, 0 to 8.
    square: u8,
    player: String,
}

#[derive(Serialize, TS)]
struct Board {
    cells: Vec<Option<String>>,
}

#[derive(Deserialize, TS)]
struct Score {
    game: u64,
}

fn game_hub() -> Hub {
    let hub = Hub::new();
    hub.on("move", |_: Socket, m: Move| async move {
        Ok::<_, ReplyError>(Board { cells: vec![Some(m.player); usize::from(m.square) + 1] })
    });
    hub.procedure("score", |_: Socket, s: Score| async move { Ok::<_, ReplyError>(s.game * 10) });
    hub.declare_event::<Board>("board");
    hub
}

#[test]
fn a_hubs_own_types_events_and_procedures_are_declared() {
    let ts = game_hub().typescript();
    for needle in [
        "export type Move = { \n/**\n * The square, 0 to 8.\n */\nsquare: number, player: string, };",
        "export type Board = { cells: Array<string | null>, };",
        "\"move\": { data: Move; reply: Board };",
        "\"score\": { input: Score; output: number };",
        "\"board\": Board;",
        "export interface ClientEvents",
        "export interface ServerEvents",
        "export interface Procedures",
    ] {
        assert!(ts.contains(needle), "missing {needle:?} in:\n{ts}");
    }
    assert!(!ts.contains("ChatMessage"), "nothing of zap serve's hub");
}

#[test]
fn write_typescript_writes_only_when_the_declarations_changed() {
    let dir = std::env::temp_dir().join(format!("zap-ts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("api.generated.d.ts");
    let hub = game_hub();
    assert!(hub.write_typescript(&path).unwrap(), "a new file");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), hub.typescript());
    assert!(!hub.write_typescript(&path).unwrap(), "unchanged: not written");
    hub.procedure("reset", |_: Socket, _: ()| async move { Ok::<_, ReplyError>(()) });
    assert!(hub.write_typescript(&path).unwrap(), "a new procedure: written again");
    assert!(std::fs::read_to_string(&path).unwrap().contains("\"reset\": { input: null; output: null };"));
    assert!(Hub::new().write_typescript(dir.join("missing/dir/x.d.ts")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
