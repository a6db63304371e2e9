//! Flyte's deterministic names: fixed-length unique ids and raw-output shards.

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz123456";
const SHARD_CHARS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

fn fnv32a(s: &str) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for b in s.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Unpadded base32 of the big-endian bytes, with Flyte's alphabet.
fn base32(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut buf: u64 = 0;
    let mut bits = 0;
    for &b in bytes {
        buf = (buf << 8) | b as u64;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buf >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// `parts` joined by `-`, or `f` + base32(fnv32a(joined)) when longer than `max`.
pub fn fixed_length_unique_id(max: usize, parts: &[&str]) -> String {
    let joined = parts.join("-");
    if joined.len() <= max {
        return joined;
    }
    format!("f{}", base32(&fnv32a(&joined).to_be_bytes()))
}

/// The two-character raw-output shard of a unique id (1296 shards, base36).
pub fn shard(unique_id: &str) -> String {
    let i = (fnv32a(unique_id) % 1296) as usize;
    let (a, b) = (i / 36, i % 36);
    format!("{}{}", SHARD_CHARS[a] as char, SHARD_CHARS[b] as char)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_are_joined_and_long_ones_hashed() {
        assert_eq!(fixed_length_unique_id(50, &["abc", "n0", "0"]), "abc-n0-0");
        let long = fixed_length_unique_id(20, &["a-very-long-execution-name", "n0", "0"]);
        assert!(long.starts_with('f') && long.len() == 8, "{long}");
        assert_eq!(
            long,
            fixed_length_unique_id(20, &["a-very-long-execution-name", "n0", "0"])
        );
        assert_eq!(fnv32a(""), 0x811c9dc5);
        assert_eq!(fnv32a("a"), 0xe40c292c);
        assert_eq!(shard("x").len(), 2);
    }
}
