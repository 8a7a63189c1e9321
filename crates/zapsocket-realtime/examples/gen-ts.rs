//! Writes `js/types.generated.d.ts`: the TypeScript declarations of the hub `zap serve`
//! runs (its chat and helpers), from their Rust types, with `Hub::write_typescript` (the
//! same call writes any hub's).
//!
//! ```sh
//! cargo run -p zapsocket-realtime --features demo --example gen-ts
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../js/types.generated.d.ts");
    let hub = zapsocket_realtime::demo::hub(zapsocket_realtime::Hub::new());
    match hub.write_typescript(&path) {
        Ok(true) => println!("wrote {}", path.display()),
        Ok(false) => println!("{} is up to date", path.display()),
        Err(e) => {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
