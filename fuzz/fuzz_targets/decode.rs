//! Every message a gateway or a client can be sent decodes or fails with an error; nothing
//! panics: server messages (with the loose delta path), client messages (commands included),
//! and producers' NDJSON bodies.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = datawall::net::backbone::parse_events(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = datawall::net::client::decode_server_msg(text);
        let _ = serde_json::from_str::<datawall::protocol::session::ClientMsg>(text);
    }
});
