//! GGML tensor encodings: their block sizes, and dequantization of the ones this crate reads.
//!
//! Supported: `F32`, `F16`, `BF16`, `Q8_0`, `Q4_0`, `Q4_1`. Blocks (llama.cpp `ggml-common.h`):
//!
//! - `Q8_0`, 34 bytes per 32 values: `f16 d, i8 qs[32]`; `x[j] = d·qs[j]`.
//! - `Q4_0`, 18 bytes per 32 values: `f16 d, u8 qs[16]`; `x[j] = d·((qs[j] & 0xF) − 8)`,
//!   `x[j+16] = d·((qs[j] >> 4) − 8)`.
//! - `Q4_1`, 20 bytes per 32 values: `f16 d, f16 m, u8 qs[16]`; `x[j] = d·(qs[j] & 0xF) + m`,
//!   `x[j+16] = d·(qs[j] >> 4) + m` for `j` in `0..16` (low nibbles first, then high nibbles).

use half::{bf16, f16};

/// A GGML tensor encoding (the `ggml_type` number in a GGUF tensor info).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GgmlType(pub u32);

/// Name, values per block, bytes per block, by type number (`None`: removed/unknown numbers).
const TYPES: [Option<(&str, u64, u64)>; 40] = [
    Some(("F32", 1, 4)),
    Some(("F16", 1, 2)),
    Some(("Q4_0", 32, 18)),
    Some(("Q4_1", 32, 20)),
    None,
    None,
    Some(("Q5_0", 32, 22)),
    Some(("Q5_1", 32, 24)),
    Some(("Q8_0", 32, 34)),
    Some(("Q8_1", 32, 36)),
    Some(("Q2_K", 256, 84)),
    Some(("Q3_K", 256, 110)),
    Some(("Q4_K", 256, 144)),
    Some(("Q5_K", 256, 176)),
    Some(("Q6_K", 256, 210)),
    Some(("Q8_K", 256, 292)),
    Some(("IQ2_XXS", 256, 66)),
    Some(("IQ2_XS", 256, 74)),
    Some(("IQ3_XXS", 256, 98)),
    Some(("IQ1_S", 256, 50)),
    Some(("IQ4_NL", 32, 18)),
    Some(("IQ3_S", 256, 110)),
    Some(("IQ2_S", 256, 82)),
    Some(("IQ4_XS", 256, 136)),
    Some(("I8", 1, 1)),
    Some(("I16", 1, 2)),
    Some(("I32", 1, 4)),
    Some(("I64", 1, 8)),
    Some(("F64", 1, 8)),
    Some(("IQ1_M", 256, 56)),
    Some(("BF16", 1, 2)),
    None,
    None,
    None,
    Some(("TQ1_0", 256, 54)),
    Some(("TQ2_0", 256, 66)),
    None,
    None,
    None,
    Some(("MXFP4", 32, 17)),
];

impl GgmlType {
    /// 32-bit floats.
    pub const F32: Self = Self(0);
    /// IEEE half floats.
    pub const F16: Self = Self(1);
    /// 4-bit symmetric blocks of 32.
    pub const Q4_0: Self = Self(2);
    /// 4-bit blocks of 32 with scale and minimum.
    pub const Q4_1: Self = Self(3);
    /// 8-bit blocks of 32.
    pub const Q8_0: Self = Self(8);
    /// bfloat16.
    pub const BF16: Self = Self(30);

    fn entry(self) -> Option<(&'static str, u64, u64)> {
        TYPES.get(self.0 as usize).copied().flatten()
    }

    /// Whether GGML defines this type number.
    pub fn is_known(self) -> bool {
        self.entry().is_some()
    }

    /// The type's name (`Q4_1`), or `type N` for an unknown number.
    pub fn name(self) -> String {
        match self.entry() {
            Some((name, _, _)) => name.to_owned(),
            None => format!("type {}", self.0),
        }
    }

    /// Values per block and bytes per block, `None` for an unknown type.
    pub fn block(self) -> Option<(u64, u64)> {
        self.entry().map(|(_, values, bytes)| (values, bytes))
    }

    /// Whether [`Gguf::tensor_f32`](super::Gguf::tensor_f32) decodes this type.
    pub fn is_supported(self) -> bool {
        matches!(
            self,
            Self::F32 | Self::F16 | Self::BF16 | Self::Q8_0 | Self::Q4_0 | Self::Q4_1
        )
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// Decodes `bytes` of type `ty` into `f32`s; `None` when the type is not supported.
///
/// The caller has checked that `bytes` holds exactly whole blocks for the tensor (so every
/// `chunks_exact` below consumes it entirely).
pub(crate) fn dequantize(ty: GgmlType, bytes: &[u8]) -> Option<Vec<f32>> {
    let (per_block, block_bytes) = ty.block()?;
    let n_blocks = bytes.len() / block_bytes as usize;
    let mut out = Vec::with_capacity(n_blocks * per_block as usize);
    match ty {
        GgmlType::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        GgmlType::F16 => out.extend(bytes.chunks_exact(2).map(|c| f16_at(c, 0))),
        GgmlType::BF16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()),
        ),
        GgmlType::Q8_0 => {
            for block in bytes.chunks_exact(34) {
                let d = f16_at(block, 0);
                out.extend(block[2..].iter().map(|&q| d * f32::from(q as i8)));
            }
        }
        GgmlType::Q4_0 => {
            for block in bytes.chunks_exact(18) {
                let d = f16_at(block, 0);
                let qs = &block[2..];
                out.extend(qs.iter().map(|&q| d * (f32::from(q & 0x0f) - 8.0)));
                out.extend(qs.iter().map(|&q| d * (f32::from(q >> 4) - 8.0)));
            }
        }
        GgmlType::Q4_1 => {
            for block in bytes.chunks_exact(20) {
                let d = f16_at(block, 0);
                let m = f16_at(block, 2);
                let qs = &block[4..];
                out.extend(qs.iter().map(|&q| d * f32::from(q & 0x0f) + m));
                out.extend(qs.iter().map(|&q| d * f32::from(q >> 4) + m));
            }
        }
        _ => return None,
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: f32) -> [u8; 2] {
        f16::from_f32(v).to_bits().to_le_bytes()
    }

    #[test]
    fn type_table() {
        assert_eq!(GgmlType::Q4_1.block(), Some((32, 20)));
        assert_eq!(GgmlType::Q8_0.block(), Some((32, 34)));
        assert_eq!(GgmlType(14).name(), "Q6_K");
        assert_eq!(GgmlType(4).name(), "type 4");
        assert!(!GgmlType(4).is_known());
        assert!(!GgmlType(40).is_known());
        assert!(!GgmlType(u32::MAX).is_known());
        assert!(GgmlType(14).is_known() && !GgmlType(14).is_supported());
        assert_eq!(dequantize(GgmlType(14), &[0; 210]), None);
    }

    #[test]
    fn floats() {
        let mut b = 1.5f32.to_le_bytes().to_vec();
        b.extend((-2.25f32).to_le_bytes());
        assert_eq!(dequantize(GgmlType::F32, &b).unwrap(), vec![1.5, -2.25]);
        let b = [h(0.5), h(-3.0)].concat();
        assert_eq!(dequantize(GgmlType::F16, &b).unwrap(), vec![0.5, -3.0]);
        // bf16 is the top half of an f32.
        let b = [
            ((1.75f32.to_bits() >> 16) as u16).to_le_bytes(),
            (((-6.0f32).to_bits() >> 16) as u16).to_le_bytes(),
        ]
        .concat();
        assert_eq!(dequantize(GgmlType::BF16, &b).unwrap(), vec![1.75, -6.0]);
    }

    #[test]
    fn q8_0_scales_signed_bytes() {
        let mut block = h(0.5).to_vec();
        block.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let v = dequantize(GgmlType::Q8_0, &block).unwrap();
        let expected: Vec<f32> = (0..32).map(|i| 0.5 * (i as f32 - 16.0)).collect();
        assert_eq!(v, expected);
    }

    #[test]
    fn q4_1_low_nibbles_first_then_high() {
        // d = 0.25, m = -1.0; byte j holds low nibble j % 16 and high nibble 15 - j % 16.
        let mut block = [h(0.25), h(-1.0)].concat();
        block.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let v = dequantize(GgmlType::Q4_1, &block).unwrap();
        assert_eq!(v.len(), 32);
        for j in 0..16 {
            assert_eq!(v[j], 0.25 * j as f32 - 1.0, "low nibble {j}");
            assert_eq!(v[j + 16], 0.25 * (15 - j) as f32 - 1.0, "high nibble {j}");
        }
        // Hand-computed: byte 0x3A -> x[0] = 0.25·10 − 1 = 1.5, x[16] = 0.25·3 − 1 = −0.25.
        let mut one = [h(0.25), h(-1.0)].concat();
        one.extend([0x3a; 16]);
        let v = dequantize(GgmlType::Q4_1, &one).unwrap();
        assert_eq!((v[0], v[16]), (1.5, -0.25));
    }

    #[test]
    fn q4_1_uses_f16_rounding_of_scale() {
        // 0.1 is not exact in f16: the decoded scale is the f16 value, not 0.1f32.
        let mut block = [h(0.1), h(0.0)].concat();
        block.extend([0x01; 16]);
        let v = dequantize(GgmlType::Q4_1, &block).unwrap();
        assert_eq!(v[0], f16::from_f32(0.1).to_f32());
        assert_ne!(v[0], 0.1);
        assert_eq!(v[16], 0.0);
    }

    #[test]
    fn q4_0_is_offset_by_eight() {
        let mut block = h(2.0).to_vec();
        block.extend([0xf0; 16]);
        let v = dequantize(GgmlType::Q4_0, &block).unwrap();
        assert!(v[..16].iter().all(|&x| x == -16.0));
        assert!(v[16..].iter().all(|&x| x == 14.0));
    }
}
