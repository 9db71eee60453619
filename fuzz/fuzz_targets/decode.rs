//! Every message a gateway or a client can be sent decodes or fails with an error; nothing
//! panics: server messages (with the loose delta path), binary server messages (snapshot
//! chunks and deltas, also behind a valid header so the fuzzer reaches their bodies), client
//! messages (commands included), and producers' NDJSON bodies.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = datawall::net::backbone::parse_events(data);
    let _ = datawall::net::client::decode_binary_msg(data);
    for kind in [
        datawall::protocol::binary::KIND_SNAPSHOT_CHUNK,
        datawall::protocol::binary::KIND_DELTA,
    ] {
        let mut message = datawall::protocol::binary::MAGIC.to_vec();
        message.push(kind);
        message.extend_from_slice(data);
        let _ = datawall::net::client::decode_binary_msg(&message);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = datawall::net::client::decode_server_msg(text);
        let _ = serde_json::from_str::<datawall::protocol::session::ClientMsg>(text);
    }
});
