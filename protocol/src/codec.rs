//! CBOR encoding helpers: canonical encoding, decoding with typed errors, and serde adapters for
//! fixed-length byte arrays and packed little-endian integer tensors.
//!
//! "Canonical" here means exactly what `serde_cbor` 0.11 writes for a value: definite lengths,
//! shortest-form integer and length heads, structs as maps with text keys in declaration order,
//! floats in the shortest of half/single/double precision that holds the value exactly.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// Encodes `value` as canonical CBOR.
pub(crate) fn to_cbor<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, Error> {
    serde_cbor::to_vec(value).map_err(|e| Error::Encode {
        what,
        reason: e.to_string(),
    })
}

/// Maps a decoder error to [`Error::Truncated`] or [`Error::Malformed`].
pub(crate) fn decode_error(what: &'static str, len: usize, error: &serde_cbor::Error) -> Error {
    if error.is_eof() {
        Error::Truncated { what, len }
    } else {
        Error::Malformed {
            what,
            reason: error.to_string(),
        }
    }
}

/// Decodes one CBOR item that must fill `bytes` exactly.
pub(crate) fn from_cbor<'a, T: serde::Deserialize<'a>>(
    what: &'static str,
    bytes: &'a [u8],
) -> Result<T, Error> {
    serde_cbor::from_slice(bytes).map_err(|e| decode_error(what, bytes.len(), &e))
}

/// Decodes an owned value from `bytes` and checks that re-encoding it gives back `bytes`.
#[allow(dead_code)]
pub(crate) fn from_canonical_cbor<T: Serialize + DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, Error> {
    let value: T = from_cbor(what, bytes)?;
    if to_cbor(what, &value)? != bytes {
        return Err(Error::NonCanonical { what });
    }
    Ok(value)
}

/// Implements `Serialize`/`Deserialize` for a newtype over `[u8; N]` as a CBOR byte string of
/// exactly `N` bytes.
macro_rules! fixed_bytes_serde {
    ($ty:ident, $len:expr, $expecting:literal) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_bytes(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<$ty, E> {
                        let array: [u8; $len] = v
                            .try_into()
                            .map_err(|_| E::invalid_length(v.len(), &self))?;
                        Ok($ty(array))
                    }
                }
                deserializer.deserialize_bytes(Visitor)
            }
        }
    };
}
pub(crate) use fixed_bytes_serde;

/// Serde adapter: `Vec<$int>` as one CBOR byte string of little-endian values.
macro_rules! packed_serde {
    ($module:ident, $int:ty, $expecting:literal) => {
        /// Serde adapter for a packed little-endian integer vector (see the module docs).
        pub(crate) mod $module {
            use serde::{Deserializer, Serializer};

            const WIDTH: usize = std::mem::size_of::<$int>();

            pub(crate) fn serialize<S: Serializer>(
                values: &[$int],
                serializer: S,
            ) -> Result<S::Ok, S::Error> {
                let mut bytes = Vec::with_capacity(values.len() * WIDTH);
                for value in values {
                    bytes.extend_from_slice(&value.to_le_bytes());
                }
                serializer.serialize_bytes(&bytes)
            }

            pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
                deserializer: D,
            ) -> Result<Vec<$int>, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = Vec<$int>;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<$int>, E> {
                        if v.len() % WIDTH != 0 {
                            return Err(E::invalid_length(v.len(), &self));
                        }
                        Ok(v.chunks_exact(WIDTH)
                            .map(|c| {
                                let mut word = [0u8; WIDTH];
                                word.copy_from_slice(c);
                                <$int>::from_le_bytes(word)
                            })
                            .collect())
                    }
                }
                deserializer.deserialize_bytes(Visitor)
            }
        }
    };
}

packed_serde!(
    packed_i32,
    i32,
    "a byte string of little-endian i32 values (length a multiple of 4)"
);
packed_serde!(
    packed_u32,
    u32,
    "a byte string of little-endian u32 values (length a multiple of 4)"
);

/// Checks a count or size against its limit.
pub(crate) fn check_limit(what: &'static str, found: usize, max: u32) -> Result<(), Error> {
    if found as u64 > u64::from(max) {
        return Err(Error::LimitExceeded {
            what,
            found: found as u64,
            max: u64::from(max),
        });
    }
    Ok(())
}

/// Checks that a name is non-empty, within `max` bytes and free of control characters.
pub(crate) fn check_name(field: &'static str, name: &str, max: u32) -> Result<(), Error> {
    check_limit(field, name.len(), max)?;
    if name.is_empty() {
        return Err(Error::InvalidValue {
            field,
            reason: "empty".into(),
        });
    }
    if name.chars().any(char::is_control) {
        return Err(Error::InvalidValue {
            field,
            reason: format!("{name:?} contains control characters"),
        });
    }
    Ok(())
}

/// Checks that a float is finite and within `[min, max]` (`min_open`: excludes `min`).
pub(crate) fn check_range(
    field: &'static str,
    value: f64,
    min: f64,
    min_open: bool,
    max: f64,
) -> Result<(), Error> {
    let above_min = if min_open { value > min } else { value >= min };
    if !value.is_finite() || !above_min || value > max {
        let open = if min_open { "(" } else { "[" };
        return Err(Error::InvalidValue {
            field,
            reason: format!("{value} is outside {open}{min}, {max}]"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Packed {
        #[serde(with = "packed_i32")]
        values: Vec<i32>,
        #[serde(with = "packed_u32")]
        words: Vec<u32>,
    }

    #[test]
    fn packed_round_trip_and_layout() {
        let value = Packed {
            values: vec![-1, 0, 7, i32::MIN],
            words: vec![u32::MAX, 1],
        };
        let bytes = to_cbor("packed", &value).unwrap();
        assert_eq!(
            from_canonical_cbor::<Packed>("packed", &bytes).unwrap(),
            value
        );
        // map(2), "values", bytes(16) ff ff ff ff 00 00 00 00 07 00 00 00 00 00 00 80, ...
        assert_eq!(bytes[0], 0xa2);
        assert_eq!(&bytes[8..10], &[0x50, 0xff]);
        assert_eq!(&bytes[21..25], &[0x00, 0x00, 0x00, 0x80]);
    }

    #[test]
    fn decode_errors_are_typed() {
        let bytes = to_cbor(
            "packed",
            &Packed {
                values: vec![1, 2],
                words: vec![],
            },
        )
        .unwrap();
        assert_eq!(
            from_cbor::<Packed>("packed", &bytes[..bytes.len() - 1]),
            Err(Error::Truncated {
                what: "packed",
                len: bytes.len() - 1
            })
        );
        let mut odd = bytes.clone();
        // "values" byte string of 8 -> 7 bytes, dropping one value byte: not a multiple of 4.
        let at = odd.iter().position(|&b| b == 0x48).unwrap();
        odd[at] = 0x47;
        odd.remove(at + 1);
        assert!(matches!(
            from_cbor::<Packed>("packed", &odd),
            Err(Error::Malformed { .. })
        ));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            from_cbor::<Packed>("packed", &trailing),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn non_canonical_is_rejected() {
        // {"values": h'', "words": h''} with the first length written in two bytes (0x58 0x00).
        let canonical = to_cbor(
            "packed",
            &Packed {
                values: vec![],
                words: vec![],
            },
        )
        .unwrap();
        let at = canonical.iter().position(|&b| b == 0x40).unwrap();
        let mut long = canonical.clone();
        long[at] = 0x58;
        long.insert(at + 1, 0x00);
        assert!(from_cbor::<Packed>("packed", &long).is_ok());
        assert_eq!(
            from_canonical_cbor::<Packed>("packed", &long),
            Err(Error::NonCanonical { what: "packed" })
        );
    }

    #[test]
    fn checks() {
        assert!(check_limit("x", 3, 3).is_ok());
        assert_eq!(
            check_limit("x", 4, 3),
            Err(Error::LimitExceeded {
                what: "x",
                found: 4,
                max: 3
            })
        );
        assert!(check_name("name", "abc", 3).is_ok());
        assert!(matches!(
            check_name("name", "abcd", 3),
            Err(Error::LimitExceeded { .. })
        ));
        assert!(matches!(
            check_name("name", "", 3),
            Err(Error::InvalidValue { .. })
        ));
        assert!(matches!(
            check_name("name", "a\nb", 3),
            Err(Error::InvalidValue { .. })
        ));
        assert!(check_range("f", 0.0, 0.0, false, 1.0).is_ok());
        assert!(check_range("f", 0.0, 0.0, true, 1.0).is_err());
        assert!(check_range("f", f64::NAN, 0.0, false, 1.0).is_err());
        assert!(check_range("f", 1.5, 0.0, false, 1.0).is_err());
    }
}
