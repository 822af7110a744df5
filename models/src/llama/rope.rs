//! Rotary position embeddings, interleaved pairing (features `2i`, `2i+1` rotate together), with
//! the cosine/sine tables computed once for the model's whole context.
//!
//! Burn's `RotaryEncoding` pairs features the same way but rotates through a matmul with a sign
//! matrix over `[.., d/2, 2] × [2, 4]` on every call; rotating the pairs directly with
//! `x₀·cos − x₁·sin`, `x₀·sin + x₁·cos` is cheaper and keeps the tables in `f64`-rounded form.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

/// Precomputed RoPE tables: `cos`/`sin` of `position · θ^(-2i/head_dim)`, `[max_seq_len, head_dim/2]`.
#[derive(Module, Debug)]
pub struct Rope {
    cos: Tensor<2>,
    sin: Tensor<2>,
}

impl Rope {
    /// Tables for positions `0..max_seq_len`, computed in `f64` and rounded to `f32`.
    pub fn new(head_dim: usize, max_seq_len: usize, theta: f64, device: &Device) -> Self {
        let half = head_dim / 2;
        let inv_freq: Vec<f64> = (0..half)
            .map(|i| theta.powf(-(2.0 * i as f64) / head_dim as f64))
            .collect();
        let mut cos = Vec::with_capacity(max_seq_len * half);
        let mut sin = Vec::with_capacity(max_seq_len * half);
        for pos in 0..max_seq_len {
            for f in &inv_freq {
                let angle = pos as f64 * f;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Self {
            cos: Tensor::from_data(TensorData::new(cos, [max_seq_len, half]), device),
            sin: Tensor::from_data(TensorData::new(sin, [max_seq_len, half]), device),
        }
    }

    /// Rotates `x: [batch, seq, heads, head_dim]` whose first position is `start`.
    ///
    /// The caller guarantees `start + seq <= max_seq_len`.
    pub fn apply(&self, x: Tensor<4>, start: usize) -> Tensor<4> {
        let [b, s, h, d] = x.dims();
        let half = d / 2;
        let cos = self
            .cos
            .clone()
            .narrow(0, start, s)
            .reshape([1, s, 1, half, 1]);
        let sin = self
            .sin
            .clone()
            .narrow(0, start, s)
            .reshape([1, s, 1, half, 1]);
        let pairs = x.reshape([b, s, h, half, 2]);
        let x0 = pairs.clone().narrow(4, 0, 1);
        let x1 = pairs.narrow(4, 1, 1);
        let r0 = x0.clone() * cos.clone() - x1.clone() * sin.clone();
        let r1 = x0 * sin + x1 * cos;
        Tensor::cat(vec![r0, r1], 4).reshape([b, s, h, d])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_pairs_by_position_angle() {
        let device = Device::flex();
        let rope = Rope::new(4, 8, 10_000.0, &device);
        // One head, features (1, 0, 1, 0): each pair is the unit vector (1, 0).
        let x = Tensor::<4>::from_data(
            TensorData::new(vec![1.0f32, 0.0, 1.0, 0.0], [1, 1, 1, 4]),
            &device,
        );
        let out: Vec<f32> = rope.apply(x, 3).into_data().try_into_vec().unwrap();
        // Pair 0 rotates by 3 rad, pair 1 by 3·10000^(-1/2) rad.
        let a0 = 3.0f64;
        let a1 = 3.0 * 10_000f64.powf(-0.5);
        let expected = [a0.cos(), a0.sin(), a1.cos(), a1.sin()];
        for (o, e) in out.iter().zip(expected) {
            assert!((f64::from(*o) - e).abs() < 1e-6, "{out:?}");
        }
    }
}
