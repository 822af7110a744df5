//! Bounds-checked little-endian reading of GGUF headers.
//!
//! Every read checks the remaining length first; every count read from the file is capped by a
//! limit from [`super::limits`] *and* by what the remaining bytes could possibly hold, before
//! anything is allocated.

use super::Value;
use super::limits::{MAX_ARRAY_DEPTH, MAX_ARRAY_LEN, MAX_STRING_LEN, MAX_TOTAL_ARRAY_ELEMENTS};
use crate::{Error, Result};

/// Builds the crate's "malformed gguf" error.
pub(crate) fn malformed(reason: impl Into<String>) -> Error {
    Error::Format {
        what: "gguf",
        reason: reason.into(),
    }
}

/// A read position in the file's bytes.
#[derive(Debug)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Array elements still allowed in this file (all arrays together).
    element_budget: u64,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            element_budget: MAX_TOTAL_ARRAY_ELEMENTS,
        }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| {
                malformed(format!(
                    "truncated: {what} needs {n} bytes at offset {}, file has {}",
                    self.pos,
                    self.buf.len()
                ))
            })?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let bytes = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count from the file, checked against `max` and against `min_item_bytes` per item.
    pub(crate) fn count(&mut self, what: &str, max: u64, min_item_bytes: u64) -> Result<usize> {
        let n = self.u64(what)?;
        if n > max {
            return Err(malformed(format!("{what} {n} exceeds the limit {max}")));
        }
        let need = n.saturating_mul(min_item_bytes);
        if need > self.remaining() as u64 {
            return Err(malformed(format!(
                "truncated: {what} {n} needs at least {need} bytes, {} remain",
                self.remaining()
            )));
        }
        usize::try_from(n).map_err(|_| malformed(format!("{what} {n} does not fit in memory")))
    }

    /// A GGUF string: u64 length + UTF-8 bytes, at most `max` bytes.
    pub(crate) fn string(&mut self, what: &str, max: u64) -> Result<String> {
        let len = self.count(what, max.min(MAX_STRING_LEN), 1)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| malformed(format!("{what} at offset {} is not utf-8", self.pos - len)))
    }

    /// A metadata value of GGUF value type `ty`.
    pub(crate) fn value(&mut self, ty: u32, depth: usize, what: &str) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(self.u8(what)?),
            1 => Value::I8(self.u8(what)? as i8),
            2 => Value::U16(self.u16(what)?),
            3 => Value::I16(self.u16(what)? as i16),
            4 => Value::U32(self.u32(what)?),
            5 => Value::I32(self.u32(what)? as i32),
            6 => Value::F32(f32::from_bits(self.u32(what)?)),
            7 => match self.u8(what)? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(malformed(format!("{what}: bool byte {b} is not 0 or 1"))),
            },
            8 => Value::String(self.string(what, MAX_STRING_LEN)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(malformed(format!(
                        "{what}: arrays nested deeper than {MAX_ARRAY_DEPTH}"
                    )));
                }
                let elem_ty = self.u32(what)?;
                let min = min_value_bytes(elem_ty)
                    .ok_or_else(|| malformed(format!("{what}: unknown value type {elem_ty}")))?;
                let n = self.count(what, MAX_ARRAY_LEN, min)?;
                if n as u64 > self.element_budget {
                    return Err(malformed(format!(
                        "{what}: more than {MAX_TOTAL_ARRAY_ELEMENTS} array elements in the file"
                    )));
                }
                self.element_budget -= n as u64;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem_ty, depth + 1, what)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(self.u64(what)? as i64),
            12 => Value::F64(f64::from_bits(self.u64(what)?)),
            other => return Err(malformed(format!("{what}: unknown value type {other}"))),
        })
    }
}

/// The fewest bytes a value of type `ty` occupies, `None` for an unknown type.
fn min_value_bytes(ty: u32) -> Option<u64> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 => 8,
        9 => 12,
        10..=12 => 8,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_checked_against_limit_and_remaining_bytes() {
        let mut bytes = 3u64.to_le_bytes().to_vec();
        bytes.extend([0u8; 12]);
        assert_eq!(Cursor::new(&bytes).count("n", 3, 4).unwrap(), 3);
        // Past the limit.
        assert!(Cursor::new(&bytes).count("n", 2, 4).is_err());
        // More items than the remaining 12 bytes can hold.
        assert!(Cursor::new(&bytes).count("n", 3, 5).is_err());
        // A lying count near u64::MAX does not overflow.
        let huge = u64::MAX.to_le_bytes();
        assert!(Cursor::new(&huge).count("n", u64::MAX, 8).is_err());
    }

    #[test]
    fn strings_at_and_past_the_limit() {
        let mut bytes = 4u64.to_le_bytes().to_vec();
        bytes.extend(b"abcd");
        assert_eq!(Cursor::new(&bytes).string("s", 4).unwrap(), "abcd");
        assert!(Cursor::new(&bytes).string("s", 3).is_err());
        let mut bad = 2u64.to_le_bytes().to_vec();
        bad.extend([0xff, 0xfe]);
        assert!(Cursor::new(&bad).string("s", 8).is_err());
    }

    /// The bytes of an array value nested `levels` deep, innermost holding one u8 7.
    fn nested(levels: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        for i in 0..levels {
            let elem_ty: u32 = if i + 1 == levels { 0 } else { 9 };
            bytes.extend(elem_ty.to_le_bytes());
            bytes.extend(1u64.to_le_bytes());
        }
        bytes.push(7);
        bytes
    }

    #[test]
    fn nesting_depth_is_limited() {
        let v = Cursor::new(&nested(MAX_ARRAY_DEPTH))
            .value(9, 0, "v")
            .unwrap();
        let mut depth = 0;
        let mut cur = &v;
        while let Value::Array(items) = cur {
            depth += 1;
            cur = &items[0];
        }
        assert_eq!(depth, MAX_ARRAY_DEPTH);
        assert_eq!(*cur, Value::U8(7));
        let deeper = nested(MAX_ARRAY_DEPTH + 1);
        assert!(Cursor::new(&deeper).value(9, 0, "v").is_err());
    }

    #[test]
    fn bool_must_be_zero_or_one() {
        assert_eq!(
            Cursor::new(&[1]).value(7, 0, "b").unwrap(),
            Value::Bool(true)
        );
        assert!(Cursor::new(&[2]).value(7, 0, "b").is_err());
        assert!(Cursor::new(&[0]).value(13, 0, "b").is_err());
    }
}
