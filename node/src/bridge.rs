//! Between the wire and the model: the community adapter as the `federation` crate holds it (the
//! `B` matrices in wire order, docs/PROTOCOL.md) and as the `models` crate runs it
//! ([`AdapterWeights`]), and a released delta as a [`DeltaSubmission`].
//!
//! Wire order is the manifest's: layer by layer, targets in manifest order, each `B` as
//! `[out, rank]` row-major. The model keeps `B` as `[rank, out]` and targets in [`Target::ALL`]
//! order, so a manifest must list its targets in that order (`hearth community create` does)
//! and every tensor is transposed on the way.

use anyhow::{Context as _, bail, ensure};
use hearth_federation::{Adapter, State};
use hearth_models::{AdapterWeights, Factor, LlamaConfig, LoraConfig, Target};
use hearth_protocol::{DeltaSubmission, DpParams, Hash32, LayerDelta, LoraShape, Manifest};
use hearth_training::{Quantized, fit_scale, quantize_exact};

/// The model-side configuration of the community adapter: FFA-LoRA with the manifest's rank,
/// alpha, targets and `A` seed. Errors when the targets are unknown or not in canonical order.
pub fn lora_config(shape: &LoraShape) -> anyhow::Result<LoraConfig> {
    let mut targets = Vec::with_capacity(shape.targets.len());
    for t in &shape.targets {
        let target = Target::from_name(&t.module)
            .with_context(|| format!("the manifest's LoRA target {:?} is unknown", t.module))?;
        targets.push(target);
    }
    ensure!(
        targets.windows(2).all(|w| w[0] < w[1]),
        "the manifest's LoRA targets are not in canonical order (q,k,v,o,gate,up,down)"
    );
    Ok(
        LoraConfig::new(shape.rank as usize, f64::from(shape.alpha), targets)
            .with_seed(shape.ffa_seed)
            .with_ffa(true),
    )
}

/// Checks that the base model has the layers and dimensions the manifest's adapter expects.
pub fn check_model(shape: &LoraShape, config: &LlamaConfig) -> anyhow::Result<()> {
    ensure!(
        shape.layers as usize == config.layers,
        "the community adapter has {} layers, the base model {}",
        shape.layers,
        config.layers
    );
    for t in &shape.targets {
        let target = Target::from_name(&t.module)
            .with_context(|| format!("unknown LoRA target {:?}", t.module))?;
        let expected = crate::cli::membership::target_shape(target, config);
        ensure!(
            expected.in_dim == t.in_dim && expected.out_dim == t.out_dim,
            "LoRA target {} is {}x{} in the manifest, {}x{} in the base model",
            t.module,
            t.in_dim,
            t.out_dim,
            expected.in_dim,
            expected.out_dim
        );
    }
    Ok(())
}

/// Model-order flat `B` values (as [`AdapterWeights::flat_b`]) to wire order.
pub fn wire_from_model(model: &[f32], shape: &LoraShape) -> anyhow::Result<Vec<f32>> {
    transpose_all(model, shape, true)
}

/// Wire-order values to model-order flat `B` values.
pub fn model_from_wire(wire: &[f32], shape: &LoraShape) -> anyhow::Result<Vec<f32>> {
    transpose_all(wire, shape, false)
}

fn transpose_all(values: &[f32], shape: &LoraShape, to_wire: bool) -> anyhow::Result<Vec<f32>> {
    let expected = shape.elements() as usize;
    ensure!(
        values.len() == expected,
        "{} adapter values, the manifest's shape has {expected}",
        values.len()
    );
    let mut out = Vec::with_capacity(values.len());
    let mut rest = values;
    for t in shape.tensors() {
        let (rows, cols) = (t.rows as usize, t.cols as usize); // wire: [out, rank]
        let (head, tail) = rest.split_at(rows * cols);
        rest = tail;
        if to_wire {
            // model [rank, out] → wire [out, rank]
            for o in 0..rows {
                out.extend((0..cols).map(|r| head[r * rows + o]));
            }
        } else {
            for r in 0..cols {
                out.extend((0..rows).map(|o| head[o * cols + r]));
            }
        }
    }
    Ok(out)
}

/// The community adapter of `state` as model weights: `A` from the manifest's seed (taken from
/// `seeded`, a freshly attached adapter of [`lora_config`]), `B` from the state.
pub fn weights_from_state(
    seeded: &AdapterWeights,
    state: &State,
    shape: &LoraShape,
) -> anyhow::Result<AdapterWeights> {
    let mut weights = seeded.clone();
    let flat = model_from_wire(&state.adapter.to_flat(), shape)?;
    weights.set_flat_b(&flat)?;
    Ok(weights)
}

/// The genesis community adapter: every `B` zero.
pub fn genesis(shape: &LoraShape) -> State {
    State::genesis(Adapter::zeros(shape))
}

/// A delta's values (wire order) as quantized integers at the finest scale that fits.
pub fn quantize_wire(values: &[f32]) -> anyhow::Result<Quantized> {
    let scale = fit_scale(values)?;
    Ok(quantize_exact(values, scale)?)
}

/// A released delta (quantized, wire order) as this round's submission.
pub fn submission(
    manifest: &Manifest,
    round: u64,
    base_version: Hash32,
    quantized: &Quantized,
    sample_count: u32,
    noise_std: f64,
) -> anyhow::Result<DeltaSubmission> {
    let shape = &manifest.lora;
    if quantized.values.len() != shape.elements() as usize {
        bail!(
            "the delta has {} values, the manifest's shape {}",
            quantized.values.len(),
            shape.elements()
        );
    }
    let mut rest = quantized.values.as_slice();
    let layers = shape
        .tensors()
        .into_iter()
        .map(|t| {
            let (head, tail) = rest.split_at((t.rows * t.cols) as usize);
            rest = tail;
            LayerDelta {
                name: t.name,
                rows: t.rows,
                cols: t.cols,
                values: head.to_vec(),
            }
        })
        .collect();
    let p = &manifest.privacy;
    Ok(DeltaSubmission::new(
        round,
        base_version,
        layers,
        quantized.scale,
        sample_count,
        DpParams {
            mode: p.mode,
            clip_norm: p.clip_norm,
            noise_multiplier: p.noise_multiplier,
            noise_std,
        },
    ))
}

/// Number of `B` values of `weights` (a sanity check against the manifest).
pub fn b_len(weights: &AdapterWeights) -> usize {
    weights
        .tensors
        .iter()
        .filter(|t| t.key.factor == Factor::B)
        .map(|t| t.values.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;
    use hearth_models::{Llama, LlamaConfig};
    use hearth_protocol::Target as WireTarget;

    use super::*;

    fn shape(config: &LlamaConfig) -> LoraShape {
        LoraShape {
            rank: 2,
            alpha: 4.0,
            layers: config.layers as u32,
            targets: [Target::Q, Target::V]
                .iter()
                .map(|t| crate::cli::membership::target_shape(*t, config))
                .collect(),
            ffa_seed: 5,
        }
    }

    #[test]
    fn wire_and_model_orders_round_trip_and_transpose() {
        let config = LlamaConfig::tiny(32);
        let shape = shape(&config);
        let mut model = Llama::init_random(&config, 1, &Device::flex()).unwrap();
        check_model(&shape, &config).unwrap();
        let slot = model.add_adapter(lora_config(&shape).unwrap()).unwrap();
        let mut weights = model.adapter_weights(slot).unwrap();
        assert_eq!(b_len(&weights), shape.elements() as usize);
        let flat: Vec<f32> = (0..weights.b_len()).map(|i| i as f32).collect();
        weights.set_flat_b(&flat).unwrap();
        let wire = wire_from_model(&flat, &shape).unwrap();
        assert_ne!(wire, flat);
        assert_eq!(model_from_wire(&wire, &shape).unwrap(), flat);
        // The first wire tensor is layer 0's q B as [out, rank]: element (o, r) = model (r, o).
        let first = &weights
            .tensors
            .iter()
            .find(|t| t.key.factor == Factor::B)
            .unwrap();
        let [rank, out] = first.dims;
        assert_eq!((rank, out), (2, config.q_dim()));
        assert_eq!(wire[1], first.values[out]); // (o=0, r=1)
        assert_eq!(wire[2], first.values[1]); // (o=1, r=0)
        let state = State::genesis(Adapter::from_flat(&shape, &wire).unwrap());
        let back = weights_from_state(&weights, &state, &shape).unwrap();
        assert_eq!(back.flat_b(), flat);
    }

    #[test]
    fn misordered_or_unknown_targets_and_wrong_models_are_errors() {
        let config = LlamaConfig::tiny(32);
        let mut s = shape(&config);
        s.targets.reverse();
        assert!(lora_config(&s).unwrap_err().to_string().contains("order"));
        s.targets[0] = WireTarget {
            module: "x_proj".into(),
            in_dim: 1,
            out_dim: 1,
        };
        assert!(lora_config(&s).unwrap_err().to_string().contains("unknown"));
        let mut s = shape(&config);
        s.layers += 1;
        assert!(check_model(&s, &config).is_err());
        let mut s = shape(&config);
        s.targets[1].out_dim += 1;
        assert!(check_model(&s, &config).is_err());
        assert!(wire_from_model(&[0.0; 3], &shape(&config)).is_err());
    }

    #[test]
    fn a_submission_checks_its_length_and_carries_the_dp_parameters() {
        let config = LlamaConfig::tiny(32);
        let manifest = hearth_protocol::Manifest {
            name: "t".into(),
            admin: hearth_protocol::Keypair::from_seed([1; 32]).member_id(),
            created: 0,
            base_model: hearth_protocol::BaseModel {
                name: "tiny".into(),
                sha256: Hash32::ZERO,
            },
            lora: shape(&config),
            privacy: Default::default(),
            aggregation: Default::default(),
            schedule: Default::default(),
            limits: Default::default(),
        };
        let n = manifest.lora.elements() as usize;
        let values: Vec<f32> = (0..n).map(|i| (i as f32 - 50.0) * 1e-3).collect();
        let q = quantize_wire(&values).unwrap();
        let d = submission(&manifest, 3, Hash32::ZERO, &q, 10, 0.5).unwrap();
        assert_eq!(d.layers.len(), manifest.lora.tensors().len());
        assert_eq!(d.dp.noise_std, 0.5);
        assert_eq!(d.hash, d.compute_hash());
        let short = Quantized {
            values: vec![1; n - 1],
            scale: q.scale,
        };
        assert!(submission(&manifest, 3, Hash32::ZERO, &short, 10, 0.5).is_err());
    }
}
