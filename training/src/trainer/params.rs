//! Which parameters train, and stable ids for them.
//!
//! Burn keys optimizer state by [`ParamId`], which is random for every new parameter. A resumed
//! run builds its model afresh, so the adapter's parameters get ids derived from their place
//! (slot, layer, target, factor) instead: the optimizer state saved by one process then attaches
//! to the same parameters in the next.

use burn::module::ParamId;
use hearth_models::{Llama, LoraLinear, Target};

use crate::error::{Error, Result};

/// The fixed id of a factor: a tag in the top bits, then slot, layer, target and factor.
fn stable_id(slot: usize, layer: usize, target: Target, b: bool) -> ParamId {
    const TAG: u64 = 0x4854_u64 << 48; // "HT"
    let id = TAG
        | ((slot as u64 & 0xff) << 40)
        | ((layer as u64 & 0xff_ffff) << 16)
        | ((target.index() as u64) << 1)
        | u64::from(b);
    ParamId::from(id)
}

fn linears(block: &mut hearth_models::Block) -> [(Target, &mut LoraLinear); 7] {
    let attn = &mut block.self_attn;
    let mlp = &mut block.mlp;
    [
        (Target::Q, &mut attn.q_proj),
        (Target::K, &mut attn.k_proj),
        (Target::V, &mut attn.v_proj),
        (Target::O, &mut attn.o_proj),
        (Target::Gate, &mut mlp.gate_proj),
        (Target::Up, &mut mlp.up_proj),
        (Target::Down, &mut mlp.down_proj),
    ]
}

/// Makes adapter `slot` the only trainable one (an FFA adapter's `A` stays frozen), unmerges it,
/// and gives its factors stable ids.
pub(crate) fn prepare(model: &mut Llama, slot: usize) -> Result<()> {
    let count = model.adapters().len();
    if slot >= count {
        return Err(Error::Config {
            reason: format!("no adapter in slot {slot} ({count} attached)"),
        });
    }
    for s in 0..count {
        model.set_adapter_trainable(s, s == slot)?;
    }
    model.unmerge_adapter(slot)?;
    for (layer, block) in model.layers.iter_mut().enumerate() {
        for (target, lin) in linears(block) {
            if let Some(Some(pair)) = lin.adapters.get_mut(slot) {
                pair.a.id = stable_id(slot, layer, target, false);
                pair.b.id = stable_id(slot, layer, target, true);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_per_place() {
        let mut seen = std::collections::BTreeSet::new();
        for slot in 0..3 {
            for layer in [0, 1, 29, 1000] {
                for target in Target::ALL {
                    for b in [false, true] {
                        assert!(seen.insert(stable_id(slot, layer, target, b).val()));
                    }
                }
            }
        }
    }
}
