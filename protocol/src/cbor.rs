//! Canonical CBOR: RFC 8949 section 4.2.1 core deterministic encoding, on top of
//! ciborium, and a strict decoder that accepts nothing else.
//!
//! ciborium alone is not canonical: derived structs encode their fields in
//! declaration order, and its decoder accepts trailing bytes, non-minimal integers,
//! indefinite lengths and tags. So encoding goes value -> [`Value`] -> keys sorted by
//! the bytewise order of their own encodings -> bytes; and decoding parses with a
//! recursion limit, refuses tags, floats and trailing bytes, re-encodes
//! canonically and requires byte equality before the value is interpreted.
//!
//! Policy (documented in ARCHITECTURE.md): non-canonical input is *rejected*. A
//! record id therefore always covers bytes that have exactly one decoding, and no
//! peer can mint two encodings of the same content.

use ciborium::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::CborError;
use crate::limits::CBOR_DEPTH_MAX;

/// Encode `value` as canonical CBOR.
pub fn to_canonical<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CborError> {
    let v = Value::serialized(value).map_err(|e| CborError::Encode(e.to_string()))?;
    let v = canonicalize(v)?;
    let mut out = Vec::with_capacity(256);
    ciborium::into_writer(&v, &mut out).map_err(|e| CborError::Encode(e.to_string()))?;
    Ok(out)
}

/// Decode canonical CBOR strictly into `T`.
pub fn from_canonical<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CborError> {
    let value = parse_canonical(bytes)?;
    value.deserialized::<T>().map_err(|e| CborError::Schema(e.to_string()))
}

/// Parse canonical CBOR into a generic [`Value`], refusing anything non-canonical.
pub fn parse_canonical(bytes: &[u8]) -> Result<Value, CborError> {
    let mut rest = bytes;
    let value: Value = ciborium::de::from_reader_with_recursion_limit(&mut rest, CBOR_DEPTH_MAX)
        .map_err(|e| match e {
            ciborium::de::Error::RecursionLimitExceeded => {
                CborError::TooDeep { max: CBOR_DEPTH_MAX }
            }
            ciborium::de::Error::Io(e) => {
                CborError::Malformed(format!("truncated or unreadable: {e}"))
            }
            ciborium::de::Error::Syntax(at) => {
                CborError::Malformed(format!("syntax error at byte {at}"))
            }
            ciborium::de::Error::Semantic(at, msg) => {
                CborError::Malformed(format!("{msg} at byte {}", at.unwrap_or(0)))
            }
        })?;
    if !rest.is_empty() {
        return Err(CborError::TrailingBytes(rest.len()));
    }
    let canonical = canonicalize(value.clone())?;
    let mut again = Vec::with_capacity(bytes.len());
    ciborium::into_writer(&canonical, &mut again).map_err(|e| CborError::Encode(e.to_string()))?;
    if again != bytes {
        return Err(CborError::NonCanonical);
    }
    Ok(value)
}

/// Sort every map's keys by the bytewise order of their encodings; refuse tags,
/// floats and duplicate keys.
fn canonicalize(v: Value) -> Result<Value, CborError> {
    Ok(match v {
        Value::Integer(_) | Value::Bytes(_) | Value::Text(_) | Value::Bool(_) | Value::Null => v,
        Value::Float(_) => return Err(CborError::Float),
        Value::Tag(..) => return Err(CborError::Tag),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(canonicalize).collect::<Result<_, _>>()?)
        }
        Value::Map(entries) => {
            let mut keyed = Vec::with_capacity(entries.len());
            for (k, val) in entries {
                let k = canonicalize(k)?;
                let mut kb = Vec::new();
                ciborium::into_writer(&k, &mut kb).map_err(|e| CborError::Encode(e.to_string()))?;
                keyed.push((kb, k, canonicalize(val)?));
            }
            keyed.sort_by(|a, b| a.0.cmp(&b.0));
            if keyed.windows(2).any(|w| w[0].0 == w[1].0) {
                return Err(CborError::DuplicateKey);
            }
            Value::Map(keyed.into_iter().map(|(_, k, v)| (k, v)).collect())
        }
        // `Value` is non-exhaustive; anything new is refused until understood.
        _ => return Err(CborError::Schema("unsupported CBOR item".into())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Declared {
        zeta: u64,
        ab: String,
        b: bool,
    }

    #[test]
    fn map_keys_are_sorted_by_encoded_bytes_not_declaration_order() {
        let bytes = to_canonical(&Declared { zeta: 1, ab: "x".into(), b: true }).unwrap();
        // RFC 8949 4.2.1: "b" (0x61 62) < "ab" (0x62 61 62) < "zeta" (0x64 ...).
        let v = parse_canonical(&bytes).unwrap();
        let keys: Vec<_> =
            v.as_map().unwrap().iter().map(|(k, _)| k.as_text().unwrap().to_string()).collect();
        assert_eq!(keys, ["b", "ab", "zeta"]);
        assert_eq!(from_canonical::<Declared>(&bytes).unwrap().zeta, 1);
    }

    #[test]
    fn the_same_value_encodes_to_the_same_bytes_whatever_the_insertion_order() {
        let mut a = BTreeMap::new();
        a.insert("long-key".to_string(), 1u64);
        a.insert("k".to_string(), 2u64);
        let one = to_canonical(&a).unwrap();
        let mut b = BTreeMap::new();
        b.insert("k".to_string(), 2u64);
        b.insert("long-key".to_string(), 1u64);
        assert_eq!(one, to_canonical(&b).unwrap());
    }

    #[test]
    fn unsorted_map_keys_are_rejected() {
        // {"b": 1, "a": 2} as written by a non-canonical encoder.
        let bytes = [0xa2, 0x61, b'b', 0x01, 0x61, b'a', 0x02];
        assert_eq!(parse_canonical(&bytes), Err(CborError::NonCanonical));
    }

    #[test]
    fn non_minimal_integers_are_rejected() {
        // 1 encoded in a one-byte argument (0x18 0x01) instead of inline.
        assert_eq!(parse_canonical(&[0x18, 0x01]), Err(CborError::NonCanonical));
    }

    #[test]
    fn indefinite_lengths_are_rejected() {
        // [_ 1, 2] with an indefinite-length array.
        assert_eq!(parse_canonical(&[0x9f, 0x01, 0x02, 0xff]), Err(CborError::NonCanonical));
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        assert_eq!(parse_canonical(&[0x01, 0x02]), Err(CborError::TrailingBytes(1)));
    }

    #[test]
    fn tags_and_floats_are_rejected() {
        // tag 1 (epoch time) around 0.
        assert_eq!(parse_canonical(&[0xc1, 0x00]), Err(CborError::Tag));
        // half-float 1.0
        assert_eq!(parse_canonical(&[0xf9, 0x3c, 0x00]), Err(CborError::Float));
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let bytes = [0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x02];
        assert_eq!(parse_canonical(&bytes), Err(CborError::DuplicateKey));
    }

    #[test]
    fn deep_nesting_is_a_typed_error_not_a_stack_overflow() {
        let mut bytes = vec![0x81u8; 100_000];
        bytes.push(0x00);
        assert_eq!(parse_canonical(&bytes), Err(CborError::TooDeep { max: CBOR_DEPTH_MAX }));
    }

    #[test]
    fn truncated_input_is_malformed() {
        let bytes = to_canonical(&Declared { zeta: 1, ab: "x".into(), b: true }).unwrap();
        for cut in 0..bytes.len() {
            assert!(
                matches!(parse_canonical(&bytes[..cut]), Err(CborError::Malformed(_))),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_huge_declared_length_does_not_allocate_it() {
        // A byte string claiming 2^63 bytes, followed by nothing.
        let bytes = [0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(parse_canonical(&bytes), Err(CborError::Malformed(_))));
    }
}
