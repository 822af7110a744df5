//! [`AdapterWeights`]: an adapter's factors as plain `f32` tensors, independent of Burn, and the
//! delta arithmetic that training and federation do on them.
//!
//! Tensors are keyed by [`LoraKey`] (layer, target, factor) and kept sorted by it, so layer index
//! first, then target in [`Target::ALL`] order, then `A` before `B`. Flattening the `B` matrices
//! walks that order, row-major: every node flattens identically. Layouts are the model's own: `A`
//! is `[in, r]`, `B` is `[r, out]`, q/k `B` columns in the interleaved RoPE order of the loaded base
//! (the PEFT layout is only produced at export, by [`crate::peft`]).
//!
//! ```
//! # use burn::tensor::Device;
//! # use hearth_models::{Llama, LlamaConfig, LoraConfig, Target};
//! let device = Device::flex();
//! let mut model = Llama::init_random(&LlamaConfig::tiny(32), 1, &device)?;
//! let id = model.add_adapter(LoraConfig::new(2, 4.0, vec![Target::Q, Target::V]).with_ffa(true))?;
//! let global = model.adapter_weights(id)?;
//! let mut local = global.clone();
//! local.set_flat_b(&vec![0.5; local.b_len()])?;
//! let delta = local.delta_b(&global)?; // B_local − B_global, flat
//! assert!((hearth_models::delta::l2_norm(&delta) - 0.5 * (delta.len() as f64).sqrt()).abs() < 1e-9);
//! # Ok::<(), hearth_models::Error>(())
//! ```

use crate::lora::{LoraConfig, Target};
use crate::{Error, Result};

/// Which factor of a LoRA pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Factor {
    /// The down-projection `A`, `[in, r]`.
    A,
    /// The up-projection `B`, `[r, out]`.
    B,
}

/// Where a factor sits in the model; the derived order is the flattening order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LoraKey {
    /// Block index.
    pub layer: usize,
    /// Linear layer within the block.
    pub target: Target,
    /// `A` or `B`.
    pub factor: Factor,
}

impl LoraKey {
    /// A readable name: `layers.3.self_attn.q_proj.lora_B`.
    pub fn name(&self) -> String {
        let f = match self.factor {
            Factor::A => "A",
            Factor::B => "B",
        };
        format!(
            "layers.{}.{}.lora_{f}",
            self.layer,
            self.target.module_path()
        )
    }
}

/// One factor matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraTensor {
    /// Where it belongs.
    pub key: LoraKey,
    /// `[rows, cols]`: `[in, r]` for `A`, `[r, out]` for `B`.
    pub dims: [usize; 2],
    /// Row-major values.
    pub values: Vec<f32>,
}

/// All factors of one adapter, sorted by [`LoraKey`].
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterWeights {
    /// The adapter's shape.
    pub config: LoraConfig,
    /// The factors, sorted by key, `A` and `B` for every adapted layer.
    pub tensors: Vec<LoraTensor>,
}

impl AdapterWeights {
    /// Builds adapter weights, sorting the tensors and checking that they hold their dims, that
    /// keys do not repeat and that every `A` has its `B` with the config's rank.
    pub fn new(config: LoraConfig, mut tensors: Vec<LoraTensor>) -> Result<Self> {
        config.validate()?;
        tensors.sort_by_key(|t| t.key);
        for pair in tensors.windows(2) {
            if pair[0].key == pair[1].key {
                return Err(Error::Adapter {
                    reason: format!("tensor {} appears twice", pair[0].key.name()),
                });
            }
        }
        for t in &tensors {
            let n = t.dims[0].checked_mul(t.dims[1]);
            if n != Some(t.values.len()) {
                return Err(Error::Shape {
                    name: t.key.name(),
                    expected: t.dims.to_vec(),
                    actual: vec![t.values.len()],
                });
            }
            let rank_dim = match t.key.factor {
                Factor::A => t.dims[1],
                Factor::B => t.dims[0],
            };
            if rank_dim != config.rank {
                return Err(Error::Shape {
                    name: t.key.name(),
                    expected: vec![config.rank],
                    actual: t.dims.to_vec(),
                });
            }
            let partner = LoraKey {
                factor: match t.key.factor {
                    Factor::A => Factor::B,
                    Factor::B => Factor::A,
                },
                ..t.key
            };
            if tensors.binary_search_by_key(&partner, |x| x.key).is_err() {
                return Err(Error::Adapter {
                    reason: format!("{} has no matching {}", t.key.name(), partner.name()),
                });
            }
        }
        Ok(Self { config, tensors })
    }

    /// The tensor at `key`.
    pub fn get(&self, key: &LoraKey) -> Option<&LoraTensor> {
        self.tensors
            .binary_search_by_key(key, |t| t.key)
            .ok()
            .map(|i| &self.tensors[i])
    }

    fn b_tensors(&self) -> impl Iterator<Item = &LoraTensor> {
        self.tensors.iter().filter(|t| t.key.factor == Factor::B)
    }

    /// Number of values in all `B` matrices (the size of an FFA-LoRA delta).
    pub fn b_len(&self) -> usize {
        self.b_tensors().map(|t| t.values.len()).sum()
    }

    /// Number of values in all factors.
    pub fn num_params(&self) -> usize {
        self.tensors.iter().map(|t| t.values.len()).sum()
    }

    /// All `B` values, concatenated in key order.
    pub fn flat_b(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.b_len());
        for t in self.b_tensors() {
            out.extend_from_slice(&t.values);
        }
        out
    }

    /// Replaces all `B` values from a flat vector in key order (the inverse of
    /// [`AdapterWeights::flat_b`]).
    pub fn set_flat_b(&mut self, flat: &[f32]) -> Result<()> {
        let expected = self.b_len();
        if flat.len() != expected {
            return Err(Error::Shape {
                name: "flat B".into(),
                expected: vec![expected],
                actual: vec![flat.len()],
            });
        }
        let mut rest = flat;
        for t in self
            .tensors
            .iter_mut()
            .filter(|t| t.key.factor == Factor::B)
        {
            let (head, tail) = rest.split_at(t.values.len());
            t.values.copy_from_slice(head);
            rest = tail;
        }
        Ok(())
    }

    /// Checks that `other` has the same keys and dims.
    pub fn check_same_layout(&self, other: &AdapterWeights) -> Result<()> {
        let same = self.tensors.len() == other.tensors.len()
            && self
                .tensors
                .iter()
                .zip(&other.tensors)
                .all(|(a, b)| a.key == b.key && a.dims == b.dims);
        if same {
            Ok(())
        } else {
            Err(Error::Adapter {
                reason: "adapters have different layouts".into(),
            })
        }
    }

    /// `B(self) − B(base)`, flat in key order.
    pub fn delta_b(&self, base: &AdapterWeights) -> Result<Vec<f32>> {
        self.check_same_layout(base)?;
        let mut out = self.flat_b();
        sub_assign(&mut out, &base.flat_b())?;
        Ok(out)
    }

    /// `B += weight · delta` for a flat delta in key order.
    pub fn apply_delta_b(&mut self, delta: &[f32], weight: f32) -> Result<()> {
        let mut b = self.flat_b();
        if delta.len() != b.len() {
            return Err(Error::Shape {
                name: "delta".into(),
                expected: vec![b.len()],
                actual: vec![delta.len()],
            });
        }
        for (x, d) in b.iter_mut().zip(delta) {
            *x += weight * d;
        }
        self.set_flat_b(&b)
    }

    /// The L2 norm of all `B` values.
    pub fn b_l2_norm(&self) -> f64 {
        l2_norm(&self.flat_b())
    }
}

/// Euclidean norm, accumulated in `f64`.
pub fn l2_norm(x: &[f32]) -> f64 {
    x.iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt()
}

fn check_len(a: usize, b: usize) -> Result<()> {
    if a != b {
        return Err(Error::Shape {
            name: "delta".into(),
            expected: vec![a],
            actual: vec![b],
        });
    }
    Ok(())
}

/// `a += b`.
pub fn add_assign(a: &mut [f32], b: &[f32]) -> Result<()> {
    check_len(a.len(), b.len())?;
    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
    Ok(())
}

/// `a -= b`.
pub fn sub_assign(a: &mut [f32], b: &[f32]) -> Result<()> {
    check_len(a.len(), b.len())?;
    a.iter_mut().zip(b).for_each(|(x, y)| *x -= y);
    Ok(())
}

/// `a *= s`.
pub fn scale(a: &mut [f32], s: f32) {
    a.iter_mut().for_each(|x| *x *= s);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(b_value: f32) -> AdapterWeights {
        let config = LoraConfig::new(2, 4.0, vec![Target::Q, Target::V]);
        let mut tensors = Vec::new();
        // Deliberately unsorted input.
        for layer in [1, 0] {
            for target in [Target::V, Target::Q] {
                tensors.push(LoraTensor {
                    key: LoraKey {
                        layer,
                        target,
                        factor: Factor::B,
                    },
                    dims: [2, 3],
                    values: vec![b_value + layer as f32; 6],
                });
                tensors.push(LoraTensor {
                    key: LoraKey {
                        layer,
                        target,
                        factor: Factor::A,
                    },
                    dims: [4, 2],
                    values: vec![0.25; 8],
                });
            }
        }
        AdapterWeights::new(config, tensors).unwrap()
    }

    #[test]
    fn order_is_layer_then_target_then_factor() {
        let w = weights(1.0);
        let keys: Vec<String> = w.tensors.iter().map(|t| t.key.name()).collect();
        assert_eq!(keys[0], "layers.0.self_attn.q_proj.lora_A");
        assert_eq!(keys[1], "layers.0.self_attn.q_proj.lora_B");
        assert_eq!(keys[2], "layers.0.self_attn.v_proj.lora_A");
        assert_eq!(keys[4], "layers.1.self_attn.q_proj.lora_A");
        assert_eq!(w.flat_b()[..12], [1.0; 12]);
        assert_eq!(w.flat_b()[12..], [2.0; 12]);
    }

    #[test]
    fn flatten_round_trip_and_length_limits() {
        let mut w = weights(0.0);
        let flat: Vec<f32> = (0..w.b_len()).map(|i| i as f32).collect();
        w.set_flat_b(&flat).unwrap();
        assert_eq!(w.flat_b(), flat);
        assert!(w.set_flat_b(&flat[1..]).is_err());
        let mut long = flat.clone();
        long.push(0.0);
        assert!(w.set_flat_b(&long).is_err());
        // A is untouched.
        assert!(
            w.tensors
                .iter()
                .filter(|t| t.key.factor == Factor::A)
                .all(|t| t.values == [0.25; 8])
        );
    }

    #[test]
    fn delta_arithmetic() {
        let base = weights(1.0);
        let mut local = weights(3.0);
        let delta = local.delta_b(&base).unwrap();
        assert!(delta.iter().all(|&d| d == 2.0));
        assert!((l2_norm(&delta) - 2.0 * (24f64).sqrt()).abs() < 1e-12);
        local.apply_delta_b(&delta, -1.0).unwrap();
        assert_eq!(local.flat_b(), base.flat_b());
        let mut a = vec![1.0, 2.0];
        add_assign(&mut a, &[1.0, 1.0]).unwrap();
        sub_assign(&mut a, &[0.5, 0.5]).unwrap();
        scale(&mut a, 2.0);
        assert_eq!(a, vec![3.0, 5.0]);
        assert!(add_assign(&mut a, &[1.0]).is_err());
    }

    #[test]
    fn rejects_malformed_tensors() {
        let good = weights(0.0);
        let mut dup = good.tensors.clone();
        dup.push(dup[0].clone());
        assert!(AdapterWeights::new(good.config.clone(), dup).is_err());
        let mut short = good.tensors.clone();
        short[0].values.pop();
        assert!(AdapterWeights::new(good.config.clone(), short).is_err());
        let mut orphan = good.tensors.clone();
        orphan.remove(0);
        assert!(AdapterWeights::new(good.config.clone(), orphan).is_err());
        let mut wrong_rank = good.tensors;
        wrong_rank[1].dims = [3, 2];
        assert!(AdapterWeights::new(good.config, wrong_rank).is_err());
    }
}
