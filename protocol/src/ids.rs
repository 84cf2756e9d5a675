//! Identity types: public keys, record ids, content hashes and signatures.
//!
//! Every type here is validated when it is built (a [`PublicKey`] is the canonical
//! encoding of an Ed25519 point, not of small order; a [`RecordId`] is exactly 32 bytes) and serializes as a
//! CBOR byte string. `Display` prints the full hex; `Debug` prints a short prefix so
//! that logs stay readable.

use std::fmt;

use serde::de::{Error as _, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::IdError;

macro_rules! bytes_newtype {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub(crate) [u8; $len]);

        impl $name {
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Full lowercase hex.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 12 hex digits, as logs and tables print it.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..6])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&self.to_hex())
                } else {
                    s.serialize_bytes(&self.0)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = [u8; $len];
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "{} bytes (or {} hex digits)", $len, 2 * $len)
                    }
                    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                        <[u8; $len]>::try_from(v).map_err(|_| E::invalid_length(v.len(), &self))
                    }
                    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
                        self.visit_bytes(&v)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                        let mut out = [0u8; $len];
                        hex::decode_to_slice(v, &mut out).map_err(|_| E::invalid_value(serde::de::Unexpected::Str(v), &self))?;
                        Ok(out)
                    }
                }
                let bytes = if d.is_human_readable() {
                    d.deserialize_str(V)?
                } else {
                    d.deserialize_bytes(V)?
                };
                $name::try_from_bytes(bytes).map_err(D::Error::custom)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(s.trim(), &mut out).map_err(|_| IdError::BadHex {
                    what: stringify!($name),
                    expected_digits: 2 * $len,
                })?;
                Self::try_from_bytes(out)
            }
        }
    };
}

bytes_newtype!(
    /// The id of a record: BLAKE3 of its to-be-signed bytes (see [`crate::envelope`]).
    RecordId,
    32
);
bytes_newtype!(
    /// A BLAKE3 content hash (prepared data trees, demo datasets, weights, receipts).
    Hash32,
    32
);
bytes_newtype!(
    /// An Ed25519 public key: the canonical encoding of a curve point that is not
    /// of small order.
    PublicKey,
    32
);
bytes_newtype!(
    /// An X25519 public key, used to encrypt result metrics to a participant.
    X25519Key,
    32
);
bytes_newtype!(
    /// The id of a network: BLAKE3 of its root document (see [`crate::root`]).
    NetworkId,
    32
);
bytes_newtype!(
    /// An Ed25519 signature.
    SignatureBytes,
    64
);

impl RecordId {
    fn try_from_bytes(b: [u8; 32]) -> Result<Self, IdError> {
        Ok(Self(b))
    }
    /// Wrap 32 raw bytes (ids from a store or the wire).
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }
}

impl Hash32 {
    fn try_from_bytes(b: [u8; 32]) -> Result<Self, IdError> {
        Ok(Self(b))
    }
    /// Wrap 32 raw bytes.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }
    /// BLAKE3 of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }
}

impl X25519Key {
    fn try_from_bytes(b: [u8; 32]) -> Result<Self, IdError> {
        Ok(Self(b))
    }
    /// Wrap 32 raw bytes.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }
}

impl NetworkId {
    fn try_from_bytes(b: [u8; 32]) -> Result<Self, IdError> {
        Ok(Self(b))
    }
    /// Wrap 32 raw bytes.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }
}

impl SignatureBytes {
    fn try_from_bytes(b: [u8; 64]) -> Result<Self, IdError> {
        Ok(Self(b))
    }
    /// Wrap 64 raw bytes.
    pub fn from_bytes(b: [u8; 64]) -> Self {
        Self(b)
    }
}

impl PublicKey {
    fn try_from_bytes(b: [u8; 32]) -> Result<Self, IdError> {
        use crate::curve::{PointFault, check_encoding};
        check_encoding(&b).map_err(|f| match f {
            PointFault::NonCanonical => IdError::NonCanonicalKey,
            PointFault::SmallOrder => IdError::WeakKey,
        })?;
        ed25519_dalek::VerifyingKey::from_bytes(&b).map_err(|_| IdError::NotACurvePoint)?;
        Ok(Self(b))
    }

    /// Validate 32 bytes as an Ed25519 key: the canonical encoding of a curve
    /// point, not of small order (see `curve`).
    pub fn from_bytes(b: [u8; 32]) -> Result<Self, IdError> {
        Self::try_from_bytes(b)
    }

    /// The dalek verifying key. Cannot fail: validated when built.
    pub fn verifying_key(&self) -> ed25519_dalek::VerifyingKey {
        ed25519_dalek::VerifyingKey::from_bytes(&self.0)
            .expect("PublicKey is validated as a curve point when built")
    }
}

impl From<&ed25519_dalek::SigningKey> for PublicKey {
    fn from(sk: &ed25519_dalek::SigningKey) -> Self {
        Self(sk.verifying_key().to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_order_point_is_refused_as_a_public_key() {
        // The identity point (0, 1) compressed: a valid encoding of small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(PublicKey::from_bytes(identity), Err(IdError::WeakKey));
    }

    #[test]
    fn ids_parse_from_hex_and_reject_wrong_lengths() {
        let id = RecordId::from_bytes([7; 32]);
        assert_eq!(id.to_hex().parse::<RecordId>().unwrap(), id);
        assert!(matches!("abcd".parse::<RecordId>(), Err(IdError::BadHex { .. })));
        assert_eq!(id.short().len(), 12);
    }
}
