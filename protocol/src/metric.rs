//! Metric and statistics values as the container wrote them, and the figures a
//! release publishes.
//!
//! [`MetricValue`] keeps a YAML document faithfully: null, booleans, integers,
//! floats (NaN and infinities included), strings, lists and string-keyed maps.
//! Canonical CBOR has no floats (the strict decoder refuses them, so that no value
//! has two encodings), so a float travels as a **byte string of its 8 IEEE-754
//! bytes, big-endian**. Byte strings occur nowhere else in a value, so the encoding
//! is unambiguous; every NaN is stored as the one quiet NaN `0x7ff8_0000_0000_0000`
//! and any other NaN payload is refused when decoded, so one value has one
//! encoding. `-0.0` and `0.0` stay distinct, as YAML writes them. In JSON (the
//! control API, `--json`) a finite float is a JSON number and a non-finite one is
//! `{"$float": ".nan" | ".inf" | "-.inf"}`, YAML's spelling, so JSON round-trips
//! exactly too.
//!
//! [`Figure`] is a released number: fixed-point millionths, or NaN. It encodes as a
//! plain integer (so releases without NaN keep their bytes) or the text `"NaN"`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Deepest nesting of maps and lists in one value.
pub const METRIC_DEPTH_MAX: usize = 8;
/// Most scalars, lists and maps in one value, all levels counted.
pub const METRIC_NODES_MAX: usize = 1024;
/// The key that marks a non-finite float in JSON.
const FLOAT_KEY: &str = "$float";
/// The one NaN stored.
const NAN_BITS: u64 = 0x7ff8_0000_0000_0000;

/// A float kept by its bits, so that values compare and hash exactly (NaN
/// equals NaN; `-0.0` differs from `0.0`). Every NaN is the canonical one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Float(u64);

impl Float {
    pub fn new(v: f64) -> Self {
        Self(if v.is_nan() { NAN_BITS } else { v.to_bits() })
    }
    pub fn get(self) -> f64 {
        f64::from_bits(self.0)
    }
    /// Refuses a NaN other than the canonical one (it would be a second encoding).
    fn from_be_bytes(b: &[u8]) -> Result<Self, String> {
        let bits = u64::from_be_bytes(
            b.try_into().map_err(|_| format!("a float has 8 bytes, not {}", b.len()))?,
        );
        if f64::from_bits(bits).is_nan() && bits != NAN_BITS {
            return Err("a NaN other than the canonical quiet NaN".into());
        }
        Ok(Self(bits))
    }
}

impl fmt::Debug for Float {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", yaml_float(self.get()))
    }
}

/// A float as YAML writes it: `.nan`, `.inf`, `-.inf`, or a decimal.
fn yaml_float(v: f64) -> String {
    if v.is_nan() {
        ".nan".into()
    } else if v == f64::INFINITY {
        ".inf".into()
    } else if v == f64::NEG_INFINITY {
        "-.inf".into()
    } else {
        format!("{v:?}")
    }
}

/// A value from statistics.yaml or results.yaml, kept as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(Float),
    Text(String),
    List(Vec<MetricValue>),
    Map(BTreeMap<String, MetricValue>),
}

/// Why a value breaks the bounds.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetricError {
    #[error("nested deeper than {METRIC_DEPTH_MAX}")]
    TooDeep,
    #[error("more than {METRIC_NODES_MAX} values")]
    TooMany,
    #[error("a text or key longer than {max} bytes")]
    TooLong { max: usize },
}

impl MetricValue {
    pub fn float(v: f64) -> Self {
        Self::Float(Float::new(v))
    }

    /// The value as a number, if it is one (integers and floats, NaN included).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Int(i) => Some(*i as f64),
            Self::Float(f) => Some(f.get()),
            _ => None,
        }
    }

    /// Check depth, size and text lengths (every text and key at most `text_max`).
    pub fn check(&self, text_max: usize) -> Result<(), MetricError> {
        let mut nodes = 0usize;
        self.check_at(0, text_max, &mut nodes)
    }

    fn check_at(
        &self,
        depth: usize,
        text_max: usize,
        nodes: &mut usize,
    ) -> Result<(), MetricError> {
        *nodes += 1;
        if *nodes > METRIC_NODES_MAX {
            return Err(MetricError::TooMany);
        }
        if depth > METRIC_DEPTH_MAX {
            return Err(MetricError::TooDeep);
        }
        match self {
            Self::Text(s) if s.len() > text_max => Err(MetricError::TooLong { max: text_max }),
            Self::List(items) => {
                items.iter().try_for_each(|v| v.check_at(depth + 1, text_max, nodes))
            }
            Self::Map(m) => m.iter().try_for_each(|(k, v)| {
                if k.len() > text_max {
                    return Err(MetricError::TooLong { max: text_max });
                }
                v.check_at(depth + 1, text_max, nodes)
            }),
            _ => Ok(()),
        }
    }

    /// Every number under this value with its dotted path (`dice.ET`), maps by key
    /// and lists by index; `prefix` names this value.
    pub fn numbers(&self, prefix: &str, out: &mut BTreeMap<String, f64>) {
        let join =
            |k: &str| if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
        match self {
            Self::Map(m) => m.iter().for_each(|(k, v)| v.numbers(&join(k), out)),
            Self::List(items) => {
                items.iter().enumerate().for_each(|(i, v)| v.numbers(&join(&i.to_string()), out))
            }
            v => {
                if let Some(n) = v.as_f64() {
                    out.insert(prefix.to_string(), n);
                }
            }
        }
    }
}

impl fmt::Display for MetricValue {
    /// YAML's flow style: `.nan`, `{a: 1, b: [x, 2.5]}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("null"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => f.write_str(&yaml_float(x.get())),
            Self::Text(s) => f.write_str(s),
            Self::List(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Self::Map(m) => {
                f.write_str("{")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

impl Serialize for MetricValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Null => s.serialize_unit(),
            Self::Bool(b) => s.serialize_bool(*b),
            Self::Int(i) => s.serialize_i64(*i),
            Self::Float(x) if s.is_human_readable() => {
                let v = x.get();
                if v.is_finite() {
                    s.serialize_f64(v)
                } else {
                    let mut m = s.serialize_map(Some(1))?;
                    m.serialize_entry(FLOAT_KEY, &yaml_float(v))?;
                    m.end()
                }
            }
            Self::Float(x) => s.serialize_bytes(&x.0.to_be_bytes()),
            Self::Text(t) => s.serialize_str(t),
            Self::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Self::Map(m) => {
                let mut map = s.serialize_map(Some(m.len()))?;
                for (k, v) in m {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for MetricValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = MetricValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a metric value (null, bool, number, text, list or map)")
    }
    fn visit_unit<E: de::Error>(self) -> Result<MetricValue, E> {
        Ok(MetricValue::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<MetricValue, E> {
        Ok(MetricValue::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<MetricValue, E> {
        Ok(MetricValue::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<MetricValue, E> {
        Ok(MetricValue::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<MetricValue, E> {
        i64::try_from(v)
            .map(MetricValue::Int)
            .map_err(|_| E::custom("an integer above the largest 64-bit signed integer"))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<MetricValue, E> {
        i64::try_from(v)
            .map(MetricValue::Int)
            .map_err(|_| E::custom("an integer outside the 64-bit signed range"))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<MetricValue, E> {
        i64::try_from(v)
            .map(MetricValue::Int)
            .map_err(|_| E::custom("an integer outside the 64-bit signed range"))
    }
    /// JSON numbers; canonical CBOR never gets here (its decoder refuses floats).
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<MetricValue, E> {
        Ok(MetricValue::float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<MetricValue, E> {
        Ok(MetricValue::Text(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<MetricValue, E> {
        Ok(MetricValue::Text(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<MetricValue, E> {
        Float::from_be_bytes(v).map(MetricValue::Float).map_err(E::custom)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MetricValue, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element()? {
            if items.len() >= METRIC_NODES_MAX {
                return Err(de::Error::custom(MetricError::TooMany));
            }
            items.push(v);
        }
        Ok(MetricValue::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MetricValue, A::Error> {
        let mut m = BTreeMap::new();
        while let Some((k, v)) = map.next_entry::<String, MetricValue>()? {
            if m.len() >= METRIC_NODES_MAX {
                return Err(de::Error::custom(MetricError::TooMany));
            }
            if m.insert(k, v).is_some() {
                return Err(de::Error::custom("a map repeats a key"));
            }
        }
        if m.len() == 1
            && let Some(MetricValue::Text(t)) = m.get(FLOAT_KEY)
        {
            return match t.as_str() {
                ".nan" => Ok(MetricValue::float(f64::NAN)),
                ".inf" => Ok(MetricValue::float(f64::INFINITY)),
                "-.inf" => Ok(MetricValue::float(f64::NEG_INFINITY)),
                other => Err(de::Error::custom(format!(
                    "`{FLOAT_KEY}` must be .nan, .inf or -.inf, not {other:?}"
                ))),
            };
        }
        Ok(MetricValue::Map(m))
    }
}

/// Millionths in a fixed-point figure.
pub const FIGURE_SCALE: f64 = 1_000_000.0;

/// A released number: fixed-point millionths, or NaN (what the container wrote
/// when its metric has no value). Infinities saturate to the largest and smallest
/// millionths. Encodes as an integer, or as the text `"NaN"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Figure {
    Millionths(i64),
    NaN,
}

impl Figure {
    /// `v` in millionths, rounded half away from zero; NaN stays NaN.
    pub fn from_f64(v: f64) -> Self {
        if v.is_nan() {
            Self::NaN
        } else {
            // `as` saturates, so infinities become i64::MAX and i64::MIN.
            Self::Millionths((v * FIGURE_SCALE).round() as i64)
        }
    }

    /// The figure in the state hash's fixed layout: the millionths' 8 bytes, or 9
    /// bytes for NaN (so no number spells it).
    pub fn hash_bytes(self) -> Vec<u8> {
        match self {
            Self::Millionths(v) => v.to_le_bytes().to_vec(),
            Self::NaN => b"\xffNaN\0\0\0\0\0".to_vec(),
        }
    }

    pub fn millionths(self) -> Option<i64> {
        match self {
            Self::Millionths(v) => Some(v),
            Self::NaN => None,
        }
    }

    /// The mean of `values`, or NaN when any of them is NaN (as IEEE arithmetic
    /// would have it); `None` for no values. Integer arithmetic: every node computes
    /// the same figure.
    pub fn mean(values: impl IntoIterator<Item = Figure>) -> Option<Figure> {
        let (mut sum, mut n, mut nan) = (0i128, 0i128, false);
        for v in values {
            n += 1;
            match v {
                Self::Millionths(x) => sum += i128::from(x),
                Self::NaN => nan = true,
            }
        }
        if n == 0 {
            return None;
        }
        Some(if nan {
            Self::NaN
        } else {
            Self::Millionths(i64::try_from(sum.div_euclid(n)).unwrap_or(i64::MAX))
        })
    }

    /// Order for ranking: better first by `higher_is_better`, NaN always last.
    pub fn rank_order(self, other: Self, higher_is_better: bool) -> std::cmp::Ordering {
        use std::cmp::Ordering::*;
        match (self, other) {
            (Self::NaN, Self::NaN) => Equal,
            (Self::NaN, _) => Greater,
            (_, Self::NaN) => Less,
            (Self::Millionths(x), Self::Millionths(y)) => {
                if higher_is_better {
                    y.cmp(&x)
                } else {
                    x.cmp(&y)
                }
            }
        }
    }
}

impl fmt::Display for Figure {
    /// A decimal with four places, `NaN`, or `inf`/`-inf` when saturated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NaN => f.write_str("NaN"),
            Self::Millionths(i64::MAX) => f.write_str("inf"),
            Self::Millionths(i64::MIN) => f.write_str("-inf"),
            Self::Millionths(v) => write!(f, "{:.4}", v as f64 / FIGURE_SCALE),
        }
    }
}

impl Serialize for Figure {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Millionths(v) => s.serialize_i64(*v),
            Self::NaN => s.serialize_str("NaN"),
        }
    }
}

impl<'de> Deserialize<'de> for Figure {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Figure;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("millionths (an integer) or \"NaN\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Figure, E> {
                Ok(Figure::Millionths(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Figure, E> {
                i64::try_from(v).map(Figure::Millionths).map_err(|_| E::custom("out of range"))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Figure, E> {
                i64::try_from(v).map(Figure::Millionths).map_err(|_| E::custom("out of range"))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Figure, E> {
                i64::try_from(v).map(Figure::Millionths).map_err(|_| E::custom("out of range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Figure, E> {
                if v == "NaN" {
                    Ok(Figure::NaN)
                } else {
                    Err(E::custom("the only text is \"NaN\""))
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cbor;

    fn sample() -> MetricValue {
        let mut inner = BTreeMap::new();
        inner.insert("dice".to_string(), MetricValue::float(0.9));
        inner.insert("hd95".to_string(), MetricValue::float(f64::INFINITY));
        let mut m = BTreeMap::new();
        m.insert("error".to_string(), MetricValue::float(f64::NAN));
        m.insert("down".to_string(), MetricValue::float(f64::NEG_INFINITY));
        m.insert("zero".to_string(), MetricValue::float(-0.0));
        m.insert("cases".to_string(), MetricValue::Int(30));
        m.insert("note".to_string(), MetricValue::Text("ok".into()));
        m.insert("none".to_string(), MetricValue::Null);
        m.insert("flag".to_string(), MetricValue::Bool(true));
        m.insert("left".to_string(), MetricValue::Map(inner));
        m.insert(
            "list".to_string(),
            MetricValue::List(vec![MetricValue::Int(1), MetricValue::float(2.5)]),
        );
        MetricValue::Map(m)
    }

    #[test]
    fn a_value_round_trips_through_canonical_cbor_and_json_exactly() {
        let v = sample();
        let bytes = cbor::to_canonical(&v).unwrap();
        assert_eq!(cbor::from_canonical::<MetricValue>(&bytes).unwrap(), v);
        let json = serde_json::to_string(&v).unwrap();
        assert!(json.contains(r#""error":{"$float":".nan"}"#), "{json}");
        assert!(json.contains(r#""dice":0.9"#), "{json}");
        assert_eq!(serde_json::from_str::<MetricValue>(&json).unwrap(), v);
    }

    #[test]
    fn a_float_is_its_eight_big_endian_bytes_and_only_one_nan_decodes() {
        let bytes = cbor::to_canonical(&MetricValue::float(1.5)).unwrap();
        assert_eq!(bytes, [&[0x48][..], &1.5f64.to_bits().to_be_bytes()].concat());
        let odd_nan = 0x7ff8_0000_0000_0001u64.to_be_bytes();
        let bytes = cbor::to_canonical(&serde_bytes_like(&odd_nan)).unwrap();
        assert!(cbor::from_canonical::<MetricValue>(&bytes).is_err());
        let short = cbor::to_canonical(&serde_bytes_like(&[0, 1])).unwrap();
        assert!(cbor::from_canonical::<MetricValue>(&short).is_err());
        // Every NaN built is the canonical one, so NaN equals NaN.
        assert_eq!(MetricValue::float(f64::NAN), MetricValue::float(-f64::NAN));
        assert_ne!(MetricValue::float(0.0), MetricValue::float(-0.0));
    }

    fn serde_bytes_like(b: &[u8]) -> ciborium::Value {
        ciborium::Value::Bytes(b.to_vec())
    }

    #[test]
    fn bounds_refuse_deep_wide_and_long_values() {
        let mut deep = MetricValue::Int(1);
        for _ in 0..=METRIC_DEPTH_MAX {
            deep = MetricValue::List(vec![deep]);
        }
        assert_eq!(deep.check(16), Err(MetricError::TooDeep));
        let wide = MetricValue::List(vec![MetricValue::Null; METRIC_NODES_MAX]);
        assert_eq!(wide.check(16), Err(MetricError::TooMany));
        assert_eq!(
            MetricValue::Text("x".repeat(17)).check(16),
            Err(MetricError::TooLong { max: 16 })
        );
        assert_eq!(sample().check(16), Ok(()));
    }

    #[test]
    fn numbers_are_found_under_their_dotted_paths() {
        let mut out = BTreeMap::new();
        sample().numbers("", &mut out);
        assert_eq!(out.get("left.dice"), Some(&0.9));
        assert_eq!(out.get("list.1"), Some(&2.5));
        assert!(out["error"].is_nan());
        assert!(!out.contains_key("note"));
    }

    #[test]
    fn figures_encode_as_integers_or_nan_and_rank_nan_last() {
        assert_eq!(
            cbor::to_canonical(&Figure::Millionths(5)).unwrap(),
            cbor::to_canonical(&5i64).unwrap()
        );
        let nan = cbor::to_canonical(&Figure::NaN).unwrap();
        assert_eq!(cbor::from_canonical::<Figure>(&nan).unwrap(), Figure::NaN);
        assert_eq!(Figure::from_f64(0.9123456), Figure::Millionths(912_346));
        assert_eq!(Figure::from_f64(f64::INFINITY).to_string(), "inf");
        assert_eq!(Figure::NaN.to_string(), "NaN");
        use std::cmp::Ordering::*;
        for higher in [true, false] {
            assert_eq!(Figure::NaN.rank_order(Figure::Millionths(i64::MIN), higher), Greater);
            assert_eq!(Figure::Millionths(i64::MIN).rank_order(Figure::NaN, higher), Less);
        }
        assert_eq!(Figure::mean([Figure::Millionths(1), Figure::NaN]), Some(Figure::NaN));
        assert_eq!(
            Figure::mean([Figure::Millionths(1), Figure::Millionths(4)]),
            Some(Figure::Millionths(2))
        );
    }
}
