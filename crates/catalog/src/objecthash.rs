//! objecthash (as in benlaurie/objecthash, `CommonJSONHash`): a SHA-256 over a JSON value in
//! which every node is hashed with a one-letter type tag, dictionaries as their sorted
//! (key hash, value hash) pairs, and every number as a float in a normalized binary form.

use serde_json::Value;
use sha2::{Digest, Sha256};

fn tagged(tag: &[u8], bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(tag);
    h.update(bytes);
    h.finalize().into()
}

/// `+|-` exponent `:` mantissa bits, the mantissa in (0.5, 1].
fn float_normalize(mut f: f64) -> String {
    if f == 0.0 {
        return "+0:".into();
    }
    let mut s = String::from(if f < 0.0 { "-" } else { "+" });
    f = f.abs();
    let mut e = 0i32;
    while f > 1.0 {
        f /= 2.0;
        e += 1;
    }
    while f <= 0.5 {
        f *= 2.0;
        e -= 1;
    }
    s.push_str(&format!("{e}:"));
    while f != 0.0 && s.len() < 1000 {
        if f >= 1.0 {
            s.push('1');
            f -= 1.0;
        } else {
            s.push('0');
        }
        f *= 2.0;
    }
    s
}

pub fn hash(v: &Value) -> [u8; 32] {
    match v {
        Value::Null => tagged(b"n", b""),
        Value::Bool(b) => tagged(b"b", if *b { b"1" } else { b"0" }),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            let norm = if f.is_nan() {
                "NaN".to_string()
            } else if f.is_infinite() {
                if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
            } else {
                float_normalize(f)
            };
            tagged(b"f", norm.as_bytes())
        }
        Value::String(s) => tagged(b"u", s.as_bytes()),
        Value::Array(items) => {
            let mut buf = Vec::with_capacity(items.len() * 32);
            for i in items {
                buf.extend_from_slice(&hash(i));
            }
            tagged(b"l", &buf)
        }
        Value::Object(m) => {
            let mut pairs: Vec<([u8; 32], [u8; 32])> = m
                .iter()
                .map(|(k, v)| (tagged(b"u", k.as_bytes()), hash(v)))
                .collect();
            pairs.sort();
            let mut buf = Vec::with_capacity(pairs.len() * 64);
            for (k, v) in pairs {
                buf.extend_from_slice(&k);
                buf.extend_from_slice(&v);
            }
            tagged(b"d", &buf)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_normalize_like_objecthash() {
        // exponent e with f = m·2^e, m in (0.5, 1], mantissa bits after the point
        assert_eq!(float_normalize(1.0), "+0:1");
        assert_eq!(float_normalize(0.5), "+-1:1");
        assert_eq!(float_normalize(-1.5), "-1:011");
        assert_eq!(float_normalize(3.0), "+2:011");
        assert_eq!(float_normalize(0.0), "+0:");
        // JSON numbers hash as floats whatever their spelling.
        assert_eq!(hash(&serde_json::json!(2)), hash(&serde_json::json!(2.0)));
        // Key order does not matter.
        assert_eq!(
            hash(&serde_json::json!({"a": 1, "b": [true, null]})),
            hash(&serde_json::json!({"b": [true, null], "a": 1}))
        );
    }
}
