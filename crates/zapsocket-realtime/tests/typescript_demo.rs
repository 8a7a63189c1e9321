//! The committed TypeScript declarations of `zap serve`'s hub match the Rust types (CI
//! fails on drift).

use zapsocket_realtime::Hub;

#[test]
fn committed_declarations_match_the_rust_types() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../js/types.generated.d.ts");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let generated = zapsocket_realtime::demo::hub(Hub::new()).typescript();
    assert!(
        committed == generated,
        "js/types.generated.d.ts differs from the Rust types: run \
         `cargo run -p zapsocket-realtime --features demo --example gen-ts` and commit the file"
    );
}

#[test]
fn declarations_name_every_event_and_procedure() {
    let ts = zapsocket_realtime::demo::hub(Hub::new()).typescript();
    for needle in [
        "export type ChatMessage = { \n/**\n * 1 to 4096 bytes.\n */\ntext: string,",
        "\"chat\": { data: ChatMessage; reply: ChatReply };",
        "\"add\": { input: AddInput; output: number };",
        "\"sleep\": { input: SleepInput; output: null };",
        "\"$joined\": PresenceEvent;",
        "export type Member = ",
    ] {
        assert!(ts.contains(needle), "missing {needle:?} in:\n{ts}");
    }
}
