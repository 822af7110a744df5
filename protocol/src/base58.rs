//! Base58btc (the Bitcoin alphabet), as used for the text form of libp2p PeerIds.
//!
//! Only short inputs are encoded here (a PeerId is 38 bytes), so the simple quadratic
//! big-number conversion is plenty fast.

const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Longest text accepted by [`decode`]: far more than any PeerId needs, and bounds the work.
pub(crate) const MAX_DECODE_CHARS: usize = 128;

/// Encodes bytes as base58btc text. Each leading zero byte becomes a leading `1`.
pub(crate) fn encode(bytes: &[u8]) -> String {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    // Little-endian base-58 digits of the big number formed by the bytes.
    let mut digits: Vec<u8> = Vec::with_capacity(bytes.len() * 138 / 100 + 1);
    for &byte in &bytes[zeros..] {
        let mut carry = u32::from(byte);
        for digit in digits.iter_mut() {
            carry += u32::from(*digit) << 8;
            *digit = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let mut out = String::with_capacity(zeros + digits.len());
    out.extend(std::iter::repeat_n('1', zeros));
    out.extend(
        digits
            .iter()
            .rev()
            .map(|&d| char::from(ALPHABET[usize::from(d)])),
    );
    out
}

/// Decodes base58btc text, or says which character is not in the alphabet.
pub(crate) fn decode(text: &str) -> Result<Vec<u8>, String> {
    if text.len() > MAX_DECODE_CHARS {
        return Err(format!(
            "{} characters is longer than {MAX_DECODE_CHARS}",
            text.len()
        ));
    }
    let zeros = text.bytes().take_while(|&c| c == b'1').count();
    // Little-endian base-256 bytes of the big number.
    let mut bytes: Vec<u8> = Vec::with_capacity(text.len());
    for (position, c) in text.char_indices().skip(zeros) {
        let value = ALPHABET
            .iter()
            .position(|&a| char::from(a) == c)
            .ok_or_else(|| format!("character {c:?} at {position} is not base58"))?;
        let mut carry = value as u32;
        for byte in bytes.iter_mut() {
            carry += u32::from(*byte) * 58;
            *byte = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.push((carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let mut out = vec![0u8; zeros];
    out.extend(bytes.iter().rev());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // Vectors from the base58 draft (draft-msporny-base58) and Bitcoin's test suite.
        assert_eq!(encode(b"Hello World!"), "2NEpo7TZRRrLZSi2U");
        assert_eq!(
            encode(b"The quick brown fox jumps over the lazy dog."),
            "USm3fpXnKG5EUBx2ndxBDMPVciP5hGey2Jh4NDv6gmeo1LkMeiKrLJUUBk6Z"
        );
        assert_eq!(encode(&[0, 0, 0x28, 0x7f, 0xb4, 0xcd]), "11233QC4");
        assert_eq!(encode(&[]), "");
        assert_eq!(encode(&[0]), "1");
        assert_eq!(decode("2NEpo7TZRRrLZSi2U").unwrap(), b"Hello World!");
        assert_eq!(decode("11233QC4").unwrap(), [0, 0, 0x28, 0x7f, 0xb4, 0xcd]);
    }

    #[test]
    fn round_trips_and_rejects() {
        for len in 0..48usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            assert_eq!(decode(&encode(&bytes)).unwrap(), bytes);
        }
        assert!(decode("0OIl").unwrap_err().contains("not base58"));
        assert!(decode("abcé").unwrap_err().contains("not base58"));
        let long = "2".repeat(MAX_DECODE_CHARS + 1);
        assert!(decode(&long).unwrap_err().contains("longer than"));
        assert!(decode(&"2".repeat(MAX_DECODE_CHARS)).is_ok());
    }
}
