//! TypeScript declarations from the Rust types of handlers and procedures (ts-rs).

use std::collections::BTreeMap;
use std::fmt::Write;

use ts_rs::{Config, TS, TypeVisitor};

use crate::error::ReplyError;
use crate::protocol::{MembersReply, PresenceEvent, Resync};

/// The types registered on a hub, rendered by [`crate::Hub::typescript`].
#[derive(Default)]
pub(crate) struct Types {
    /// Declarations by type name.
    decls: BTreeMap<String, String>,
    client_events: BTreeMap<String, (String, String)>,
    server_events: BTreeMap<String, String>,
    procedures: BTreeMap<String, (String, String)>,
}

struct Collect<'a> {
    cfg: &'a Config,
    decls: &'a mut BTreeMap<String, String>,
}

impl TypeVisitor for Collect<'_> {
    fn visit<T: TS + 'static + ?Sized>(&mut self) {
        // Containers (`Vec<T>`, `Option<T>`) list their items' dependencies themselves.
        if T::output_path().is_none() {
            return;
        }
        let name = T::ident(self.cfg);
        if self.decls.contains_key(&name) {
            return;
        }
        let docs = T::docs().unwrap_or_default();
        self.decls.insert(name, format!("{docs}export {}", T::decl(self.cfg)));
        T::visit_dependencies(self);
    }
}

impl Types {
    /// Declares `T` and its dependencies; returns its name in TypeScript.
    fn add<T: TS + 'static>(&mut self) -> String {
        let cfg = Config::new().with_large_int("number");
        let mut collect = Collect { cfg: &cfg, decls: &mut self.decls };
        collect.visit::<T>();
        T::visit_dependencies(&mut collect);
        T::name(&cfg)
    }

    pub(crate) fn client_event<T: TS + 'static, R: TS + 'static>(&mut self, event: &str) {
        let types = (self.add::<T>(), self.add::<R>());
        self.client_events.insert(event.to_owned(), types);
    }

    pub(crate) fn server_event<T: TS + 'static>(&mut self, event: &str) {
        let name = self.add::<T>();
        self.server_events.insert(event.to_owned(), name);
    }

    pub(crate) fn procedure<I: TS + 'static, O: TS + 'static>(&mut self, name: &str) {
        let types = (self.add::<I>(), self.add::<O>());
        self.procedures.insert(name.to_owned(), types);
    }

    pub(crate) fn render(&mut self) -> String {
        let presence = self.add::<PresenceEvent>();
        let resync = self.add::<Resync>();
        self.add::<MembersReply>();
        let error = self.add::<ReplyError>();
        let mut out = String::from(HEADER);
        for decl in self.decls.values() {
            let _ = writeln!(out, "{decl}\n");
        }
        out.push_str(
            "/** Events a client sends: the data, and the data of the reply when it asks for an ack. */\n",
        );
        out.push_str("export interface ClientEvents {\n");
        for (name, (data, reply)) in &self.client_events {
            let _ = writeln!(out, "  {}: {{ data: {data}; reply: {reply} }};", quote(name));
        }
        out.push_str(
            "}\n\n/** Events the server sends, with their data. */\nexport interface ServerEvents {\n",
        );
        let reserved =
            [("$joined", &presence), ("$left", &presence), ("$error", &error), ("$resync", &resync)];
        let reserved = reserved.iter().map(|(n, t)| ((*n).to_owned(), (*t).clone()));
        let events: BTreeMap<String, String> =
            self.server_events.clone().into_iter().chain(reserved).collect();
        for (name, data) in &events {
            let _ = writeln!(out, "  {}: {data};", quote(name));
        }
        out.push_str(
            "}\n\n/** Procedures: the input and the output of each. */\nexport interface Procedures {\n",
        );
        for (name, (input, output)) in &self.procedures {
            let _ = writeln!(out, "  {}: {{ input: {input}; output: {output} }};", quote(name));
        }
        out.push_str("}\n");
        out
    }
}

const HEADER: &str = "\
// TypeScript declarations of the events and procedures of a zapsocket-realtime Hub,
// generated from its Rust types (ts-rs) by Hub::typescript / Hub::write_typescript.
// Do not edit: regenerate them.

";

fn quote(name: &str) -> String {
    serde_json::to_string(name).unwrap_or_default()
}
