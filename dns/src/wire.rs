//! Encoding replies for a transport: UDP answers that do not fit the client's limit
//! lose their additional records first, then answers, with the TC bit set so that the
//! client asks again over TCP.

use hickory_proto::op::{Message, ResponseCode};

/// The largest UDP reply `request`'s sender accepts: 512 bytes, or its EDNS payload
/// size (RFC 6891).
pub fn udp_limit(request: &Message) -> usize {
    request.max_payload() as usize
}

/// Encode `reply` in at most `limit` bytes (`None`: no limit, as over TCP).
pub fn encode(mut reply: Message, limit: Option<usize>) -> Vec<u8> {
    let fits = |m: &Message| match m.to_vec() {
        Ok(b) if limit.is_none_or(|l| b.len() <= l) => Some(b),
        _ => None,
    };
    if let Some(b) = fits(&reply) {
        return b;
    }
    if limit.is_some() {
        // Additional records are optional: dropping them needs no TC (RFC 2181 9).
        reply.additionals.clear();
        if let Some(b) = fits(&reply) {
            return b;
        }
        reply.metadata.truncation = true;
        reply.authorities.clear();
        while !reply.answers.is_empty() {
            reply.answers.pop();
            if let Some(b) = fits(&reply) {
                return b;
            }
        }
    }
    // Nothing encodes (a name too long to write back, say): SERVFAIL with the header.
    let mut failed = Message::response(reply.metadata.id, reply.metadata.op_code);
    failed.metadata.recursion_desired = reply.metadata.recursion_desired;
    failed.metadata.response_code = ResponseCode::ServFail;
    failed.add_queries(reply.queries.iter().cloned());
    failed
        .to_vec()
        .or_else(|_| {
            failed.queries.clear();
            failed.to_vec()
        })
        .unwrap_or_default()
}

/// A minimal reply to bytes that do not parse: FORMERR with the query's id, when the
/// header at least is there.
pub fn formerr_for(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.len() < 12 || bytes[2] & 0x80 != 0 {
        // No header, or itself a response: never answer those (reflection loops).
        return None;
    }
    let mut out = vec![0u8; 12];
    out[0] = bytes[0];
    out[1] = bytes[1];
    // QR=1, the opcode and RD copied, RCODE=FORMERR.
    out[2] = 0x80 | (bytes[2] & 0x79);
    out[3] = 0x01;
    Some(out)
}
