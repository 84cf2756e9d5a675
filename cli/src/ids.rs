//! Record ids on the command line: printed short, accepted as any unique prefix,
//! as git does with commits.

use protocol::RecordId;
use thiserror::Error;

/// The fewest hex digits accepted as a prefix.
pub const PREFIX_DIGITS_MIN: usize = 4;

/// An id argument could not be resolved.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LookupError {
    #[error(
        "`{0}` is not an id: use hex digits (at least {PREFIX_DIGITS_MIN}), as printed by `ls`"
    )]
    NotHex(String),
    #[error("no {what} has an id starting with `{prefix}`; list them with `medmesh {what} ls`")]
    Unknown { what: &'static str, prefix: String },
    #[error("`{prefix}` matches several {what}s ({}); give more digits", .matches.join(", "))]
    Ambiguous { what: &'static str, prefix: String, matches: Vec<String> },
}

/// Resolve `prefix` against `candidates`.
pub fn resolve(
    prefix: &str,
    candidates: impl IntoIterator<Item = RecordId>,
    what: &'static str,
) -> Result<RecordId, LookupError> {
    let p = prefix.trim().to_ascii_lowercase();
    if p.len() < PREFIX_DIGITS_MIN || p.len() > 64 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(LookupError::NotHex(prefix.to_string()));
    }
    let mut matches: Vec<RecordId> =
        candidates.into_iter().filter(|id| id.to_hex().starts_with(&p)).collect();
    matches.sort();
    matches.dedup();
    match matches.as_slice() {
        [] => Err(LookupError::Unknown { what, prefix: p }),
        [one] => Ok(*one),
        many => Err(LookupError::Ambiguous {
            what,
            prefix: p,
            matches: many.iter().map(|m| m.short()).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(first: u8, second: u8) -> RecordId {
        let mut b = [0u8; 32];
        b[0] = first;
        b[1] = second;
        RecordId::from_bytes(b)
    }

    #[test]
    fn a_unique_prefix_resolves() {
        let ids = [id(0xab, 0xcd), id(0xab, 0xef), id(0x12, 0x34)];
        assert_eq!(resolve("abcd", ids, "benchmark"), Ok(ids[0]));
        assert_eq!(resolve("ABEF", ids, "benchmark"), Ok(ids[1]));
    }

    #[test]
    fn an_ambiguous_prefix_lists_the_matches() {
        let ids = [id(0xab, 0xcd), id(0xab, 0xce)];
        let err = resolve("abcc", ids, "dataset").unwrap_err();
        assert!(matches!(err, LookupError::Unknown { .. }));
        let mut a = [0u8; 32];
        a[0] = 0xab;
        a[1] = 0xcd;
        let mut b = a;
        b[5] = 1;
        let err = resolve("abcd", [RecordId::from_bytes(a), RecordId::from_bytes(b)], "dataset")
            .unwrap_err();
        assert!(
            matches!(err, LookupError::Ambiguous { ref matches, .. } if matches.len() == 2),
            "{err}"
        );
    }

    #[test]
    fn too_short_or_non_hex_prefixes_are_refused() {
        assert!(matches!(resolve("ab", [id(0xab, 0)], "model"), Err(LookupError::NotHex(_))));
        assert!(matches!(resolve("xyz1", [id(0xab, 0)], "model"), Err(LookupError::NotHex(_))));
    }

    #[test]
    fn an_unknown_id_says_how_to_list() {
        let err = resolve("ffff", [id(0xab, 0)], "benchmark").unwrap_err();
        assert!(err.to_string().contains("medmesh benchmark ls"));
    }
}
