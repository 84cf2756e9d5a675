//! Record ids on the command line: printed short, accepted as any unique prefix,
//! as git does with commits, or by name where the record has one (benchmarks,
//! containers, datasets).

use protocol::RecordId;
use thiserror::Error;

/// The fewest hex digits accepted as a prefix.
pub const PREFIX_DIGITS_MIN: usize = 4;

/// An id argument could not be resolved.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LookupError {
    #[error(
        "no {what} is named `{input}`, and it is not an id (use hex digits, at least {PREFIX_DIGITS_MIN}); list them with `medmesh {what} ls`"
    )]
    NotHex { what: &'static str, input: String },
    #[error("no {what} has an id starting with `{prefix}`; list them with `medmesh {what} ls`")]
    Unknown { what: &'static str, prefix: String },
    #[error("`{prefix}` matches several {what}s ({}); give more digits", .matches.join(", "))]
    Ambiguous { what: &'static str, prefix: String, matches: Vec<String> },
    #[error("several {what}s are named `{name}` ({}); give one of their ids", .matches.join(", "))]
    AmbiguousName { what: &'static str, name: String, matches: Vec<String> },
}

/// Something an id argument may name: an id, or an id with a name.
pub trait Candidate {
    fn id(&self) -> RecordId;
    fn name(&self) -> Option<&str> {
        None
    }
}

impl Candidate for RecordId {
    fn id(&self) -> RecordId {
        *self
    }
}

impl Candidate for &(RecordId, String) {
    fn id(&self) -> RecordId {
        self.0
    }
    fn name(&self) -> Option<&str> {
        Some(self.1.as_str()).filter(|n| !n.is_empty())
    }
}

impl Candidate for (RecordId, &str) {
    fn id(&self) -> RecordId {
        self.0
    }
    fn name(&self) -> Option<&str> {
        Some(self.1)
    }
}

/// Resolve `input` against `candidates`: an exact name first, else an id prefix.
pub fn resolve<C: Candidate>(
    input: &str,
    candidates: impl IntoIterator<Item = C>,
    what: &'static str,
) -> Result<RecordId, LookupError> {
    let candidates: Vec<C> = candidates.into_iter().collect();
    let trimmed = input.trim();
    let mut named: Vec<RecordId> =
        candidates.iter().filter(|c| c.name() == Some(trimmed)).map(|c| c.id()).collect();
    named.sort();
    named.dedup();
    match named.as_slice() {
        [] => {}
        [one] => return Ok(*one),
        many => {
            return Err(LookupError::AmbiguousName {
                what,
                name: trimmed.to_string(),
                matches: many.iter().map(|m| m.short()).collect(),
            });
        }
    }
    let p = trimmed.to_ascii_lowercase();
    if p.len() < PREFIX_DIGITS_MIN || p.len() > 64 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(LookupError::NotHex { what, input: input.to_string() });
    }
    let mut matches: Vec<RecordId> =
        candidates.iter().map(|c| c.id()).filter(|id| id.to_hex().starts_with(&p)).collect();
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
        assert!(matches!(resolve("ab", [id(0xab, 0)], "model"), Err(LookupError::NotHex { .. })));
        assert!(matches!(resolve("xyz1", [id(0xab, 0)], "model"), Err(LookupError::NotHex { .. })));
    }

    #[test]
    fn a_name_resolves_and_an_ambiguous_name_lists_the_candidates() {
        let (a, b, c) = (id(0xab, 1), id(0xcd, 2), id(0xef, 3));
        let named = [(a, "chest-xray"), (b, "brain-mri"), (c, "brain-mri")];
        assert_eq!(resolve("chest-xray", named, "benchmark"), Ok(a));
        let err = resolve("brain-mri", named, "benchmark").unwrap_err();
        assert_eq!(
            err,
            LookupError::AmbiguousName {
                what: "benchmark",
                name: "brain-mri".into(),
                matches: vec![b.short(), c.short()],
            }
        );
        assert!(err.to_string().contains(&b.short()) && err.to_string().contains(&c.short()));
        let err = resolve("liver-ct", named, "benchmark").unwrap_err();
        assert!(err.to_string().contains("no benchmark is named `liver-ct`"), "{err}");
        assert_eq!(resolve(&a.to_hex()[..6], named, "benchmark"), Ok(a));
    }

    #[test]
    fn an_unknown_id_says_how_to_list() {
        let err = resolve("ffff", [id(0xab, 0)], "benchmark").unwrap_err();
        assert!(err.to_string().contains("medmesh benchmark ls"));
    }
}
