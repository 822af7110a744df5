//! Attaching, merging, training and exchanging the stacked LoRA adapters of a [`Llama`].
//!
//! Adapters are numbered by the slot they were added in (0, 1, ...); a typical node attaches the
//! community adapter first and the personal adapter on top. Every slot is applied in every forward
//! pass unless it is merged into the base weights.

use burn::module::Param;
use burn::tensor::{Tensor, TensorData};

use super::Llama;
use crate::delta::{AdapterWeights, Factor, LoraKey, LoraTensor};
use crate::lora::{LoraConfig, LoraPair};
use crate::{Error, Result};

/// Largest number of stacked adapters on one model.
pub const MAX_ADAPTERS: usize = 8;

impl Llama {
    /// Attaches a new adapter on top of the existing ones and returns its slot. `A` is derived
    /// from `config.seed` (frozen when `config.ffa`), `B` is zero, so the model's output does not
    /// change. The new factors are trainable.
    pub fn add_adapter(&mut self, config: LoraConfig) -> Result<usize> {
        config.validate()?;
        if self.adapters.len() >= MAX_ADAPTERS {
            return Err(Error::Adapter {
                reason: format!("at most {MAX_ADAPTERS} adapters can be stacked"),
            });
        }
        for target in &config.targets {
            let lin = self.layers[0].linear(*target);
            let limit = lin.d_in().min(lin.d_out());
            if config.rank > limit {
                return Err(Error::Config {
                    reason: format!(
                        "lora rank {} exceeds the {} size {limit}",
                        config.rank,
                        target.name()
                    ),
                });
            }
        }
        for (i, layer) in self.layers.iter_mut().enumerate() {
            for target in crate::lora::Target::ALL {
                let lin = layer.linear_mut(target);
                let a = config
                    .targets
                    .contains(&target)
                    .then(|| config.init_a(i, target, lin.d_in()));
                lin.push_adapter(&config, a);
            }
        }
        self.adapters.push(config);
        self.trainable.push(true);
        Ok(self.adapters.len() - 1)
    }

    /// Detaches the topmost adapter (unmerging it first if needed) and returns its config.
    pub fn pop_adapter(&mut self) -> Result<LoraConfig> {
        let slot = self.adapters.len().checked_sub(1).ok_or(Error::Adapter {
            reason: "no adapter attached".into(),
        })?;
        self.unmerge_adapter(slot)?;
        for layer in &mut self.layers {
            for target in crate::lora::Target::ALL {
                layer.linear_mut(target).pop_adapter();
            }
        }
        self.trainable.pop();
        self.adapters.pop().ok_or(Error::Adapter {
            reason: "no adapter attached".into(),
        })
    }

    fn check_slot(&self, slot: usize) -> Result<&LoraConfig> {
        self.adapters.get(slot).ok_or(Error::Adapter {
            reason: format!(
                "no adapter in slot {slot} ({} attached)",
                self.adapters.len()
            ),
        })
    }

    fn pairs_mut(&mut self, slot: usize) -> impl Iterator<Item = &mut LoraPair> {
        self.layers
            .iter_mut()
            .flat_map(move |layer| layer_pairs_mut(layer, slot))
    }

    /// Folds adapter `slot` into the base weights: inference then costs what the bare base costs.
    /// Merged factors receive no gradients; unmerge before training.
    pub fn merge_adapter(&mut self, slot: usize) -> Result<()> {
        self.check_slot(slot)?;
        for layer in &mut self.layers {
            for target in crate::lora::Target::ALL {
                layer.linear_mut(target).merge(slot);
            }
        }
        Ok(())
    }

    /// Takes adapter `slot` back out of the base weights (exact up to `f32` rounding).
    pub fn unmerge_adapter(&mut self, slot: usize) -> Result<()> {
        self.check_slot(slot)?;
        for layer in &mut self.layers {
            for target in crate::lora::Target::ALL {
                layer.linear_mut(target).unmerge(slot);
            }
        }
        Ok(())
    }

    /// Whether adapter `slot` is merged into the base weights.
    pub fn is_merged(&self, slot: usize) -> Result<bool> {
        let config = self.check_slot(slot)?;
        let target = config.targets[0];
        Ok(self.layers[0]
            .linear(target)
            .pair(slot)
            .is_some_and(|p| p.merged))
    }

    /// Makes adapter `slot` trainable or frozen. `A` of an FFA-LoRA adapter stays frozen.
    pub fn set_adapter_trainable(&mut self, slot: usize, trainable: bool) -> Result<()> {
        let ffa = self.check_slot(slot)?.ffa;
        for pair in self.pairs_mut(slot) {
            pair.a = pair.a.clone().set_require_grad(trainable && !ffa);
            pair.b = pair.b.clone().set_require_grad(trainable);
        }
        self.trainable[slot] = trainable;
        Ok(())
    }

    /// A copy of adapter `slot`'s factors as plain tensors.
    pub fn adapter_weights(&self, slot: usize) -> Result<AdapterWeights> {
        let config = self.check_slot(slot)?.clone();
        let mut tensors = Vec::new();
        for (layer, block) in self.layers.iter().enumerate() {
            for &target in &config.targets {
                let Some(pair) = block.linear(target).pair(slot) else {
                    continue;
                };
                for (factor, param) in [(Factor::A, &pair.a), (Factor::B, &pair.b)] {
                    let t = param.val();
                    let dims = t.dims();
                    let values = super::to_host(t)?;
                    tensors.push(LoraTensor {
                        key: LoraKey {
                            layer,
                            target,
                            factor,
                        },
                        dims,
                        values,
                    });
                }
            }
        }
        AdapterWeights::new(config, tensors)
    }

    /// Replaces adapter `slot`'s factors with `weights`, whose config (rank, alpha, targets, ffa)
    /// and shapes must match. A merged adapter is unmerged, updated and merged again. Parameter
    /// ids are kept, so optimizer state stays attached.
    pub fn set_adapter_weights(&mut self, slot: usize, weights: &AdapterWeights) -> Result<()> {
        let config = self.check_slot(slot)?.clone();
        let w = &weights.config;
        if (w.rank, &w.targets, w.ffa) != (config.rank, &config.targets, config.ffa)
            || w.alpha != config.alpha
        {
            return Err(Error::Adapter {
                reason: format!(
                    "weights are for rank {} alpha {} targets {:?}, slot {slot} holds rank {} alpha {} targets {:?}",
                    w.rank, w.alpha, w.targets, config.rank, config.alpha, config.targets
                ),
            });
        }
        let expected = self.layers.len() * config.targets.len() * 2;
        if weights.tensors.len() != expected {
            return Err(Error::Adapter {
                reason: format!(
                    "weights hold {} tensors, the adapter has {expected}",
                    weights.tensors.len()
                ),
            });
        }
        // Check every shape before changing anything.
        for t in &weights.tensors {
            let key = t.key;
            let pair = self
                .layers
                .get(key.layer)
                .and_then(|b| b.linear(key.target).pair(slot))
                .ok_or_else(|| Error::Adapter {
                    reason: format!("the model has no {}", key.name()),
                })?;
            let dims = match key.factor {
                Factor::A => pair.a.shape().dims::<2>(),
                Factor::B => pair.b.shape().dims::<2>(),
            };
            if dims != t.dims {
                return Err(Error::Shape {
                    name: key.name(),
                    expected: dims.to_vec(),
                    actual: t.dims.to_vec(),
                });
            }
        }
        let merged = self.is_merged(slot)?;
        self.unmerge_adapter(slot)?;
        let trainable = self.trainable[slot];
        let device = self.device();
        for t in &weights.tensors {
            let key = t.key;
            let lin = self.layers[key.layer].linear_mut(key.target);
            let Some(pair) = lin.pair_mut(slot) else {
                continue;
            };
            let value = Tensor::<2>::from_data(TensorData::new(t.values.clone(), t.dims), &device);
            let (param, grad) = match key.factor {
                Factor::A => (&mut pair.a, trainable && !config.ffa),
                Factor::B => (&mut pair.b, trainable),
            };
            *param = replace_value(param, value, grad);
        }
        // The factors now come from `weights`; record where their A came from.
        self.adapters[slot].seed = weights.config.seed;
        if merged {
            self.merge_adapter(slot)?;
        }
        Ok(())
    }
}

fn replace_value(
    param: &Param<Tensor<2>>,
    value: Tensor<2>,
    require_grad: bool,
) -> Param<Tensor<2>> {
    param.clone().map(|_| value).set_require_grad(require_grad)
}

fn layer_pairs_mut(layer: &mut super::Block, slot: usize) -> impl Iterator<Item = &mut LoraPair> {
    let attn = &mut layer.self_attn;
    let mlp = &mut layer.mlp;
    [
        &mut attn.q_proj,
        &mut attn.k_proj,
        &mut attn.v_proj,
        &mut attn.o_proj,
        &mut mlp.gate_proj,
        &mut mlp.up_proj,
        &mut mlp.down_proj,
    ]
    .into_iter()
    .filter_map(move |lin| lin.pair_mut(slot))
}
