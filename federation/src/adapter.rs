//! The community adapter and the chain state that goes with it.
//!
//! [`Adapter`] holds the FFA-LoRA `B` matrices in the wire layout of the protocol
//! ([`LoraShape::tensors`] order; each tensor `rows = out_dim`, `cols = rank`, row-major), which
//! is also the order of a delta's values. Its version name is [`Adapter::version`]:
//! [`adapter_hash`] over the tensors sorted by name.
//!
//! [`State`] is what a round starts from and produces: the adapter plus the server optimizer's
//! state, which every node updates identically and which is named by its own hash.

use hearth_protocol::{Hash32, Hasher, LoraShape, TensorRef, adapter_hash};

use crate::error::{Error, Result};

/// Domain of [`State::optimizer_hash`].
pub const OPTIMIZER_DOMAIN: &[u8] = b"hearth/optimizer-state/v1\0";

/// One `B` matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// `blk.<layer>.<module>`.
    pub name: String,
    /// Rows (the target's output dimension).
    pub rows: u32,
    /// Columns (the LoRA rank).
    pub cols: u32,
    /// Row-major values.
    pub values: Vec<f32>,
}

/// The community adapter's `B` matrices, in [`LoraShape::tensors`] order.
#[derive(Debug, Clone, PartialEq)]
pub struct Adapter {
    tensors: Vec<Tensor>,
}

impl Adapter {
    /// The all-zero adapter of `shape` (LoRA's usual initialisation of `B`).
    pub fn zeros(shape: &LoraShape) -> Self {
        Adapter {
            tensors: shape
                .tensors()
                .into_iter()
                .map(|t| Tensor {
                    values: vec![0.0; t.rows as usize * t.cols as usize],
                    name: t.name,
                    rows: t.rows,
                    cols: t.cols,
                })
                .collect(),
        }
    }

    /// Builds an adapter of `shape` from its values flattened in wire order.
    pub fn from_flat(shape: &LoraShape, values: &[f32]) -> Result<Self> {
        let mut adapter = Adapter::zeros(shape);
        if values.len() != adapter.len() {
            return Err(Error::Shape {
                reason: format!(
                    "{} values, the community adapter has {}",
                    values.len(),
                    adapter.len()
                ),
            });
        }
        adapter.set_flat(values)?;
        Ok(adapter)
    }

    /// Checks the tensors against `shape` (names, dims, lengths) and that every value is finite.
    pub fn check(&self, shape: &LoraShape) -> Result<()> {
        let want = shape.tensors();
        if want.len() != self.tensors.len() {
            return Err(Error::Shape {
                reason: format!(
                    "{} tensors, the community adapter has {}",
                    self.tensors.len(),
                    want.len()
                ),
            });
        }
        for (t, w) in self.tensors.iter().zip(&want) {
            let len = u64::from(t.rows) * u64::from(t.cols);
            if t.name != w.name || t.rows != w.rows || t.cols != w.cols {
                return Err(Error::Shape {
                    reason: format!(
                        "found {} {}x{}, expected {} {}x{}",
                        t.name, t.rows, t.cols, w.name, w.rows, w.cols
                    ),
                });
            }
            if len != t.values.len() as u64 {
                return Err(Error::Shape {
                    reason: format!("{} holds {} values, not {len}", t.name, t.values.len()),
                });
            }
        }
        check_finite("adapter", self.values())
    }

    /// The tensors, in wire order.
    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }

    /// Total number of values.
    pub fn len(&self) -> usize {
        self.tensors.iter().map(|t| t.values.len()).sum()
    }

    /// Whether the adapter has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All values in wire order.
    pub fn values(&self) -> impl Iterator<Item = &f32> {
        self.tensors.iter().flat_map(|t| t.values.iter())
    }

    /// All values, flattened in wire order.
    pub fn to_flat(&self) -> Vec<f32> {
        self.values().copied().collect()
    }

    /// Overwrites the values from a flat wire-order slice of the same length.
    pub fn set_flat(&mut self, values: &[f32]) -> Result<()> {
        if values.len() != self.len() {
            return Err(Error::Shape {
                reason: format!("{} values for an adapter of {}", values.len(), self.len()),
            });
        }
        let mut rest = values;
        for t in &mut self.tensors {
            let (head, tail) = rest.split_at(t.values.len());
            t.values.copy_from_slice(head);
            rest = tail;
        }
        Ok(())
    }

    /// The version name: [`adapter_hash`] over the tensors sorted by name.
    pub fn version(&self) -> Hash32 {
        let mut refs: Vec<TensorRef<'_>> = self
            .tensors
            .iter()
            .map(|t| TensorRef {
                name: &t.name,
                rows: t.rows,
                cols: t.cols,
                values: &t.values,
            })
            .collect();
        refs.sort_by(|a, b| a.name.cmp(b.name));
        adapter_hash(&refs)
    }
}

/// Server optimizer state: moment estimates, one value per adapter value, in wire order.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum OptimizerState {
    /// No state (plain FedAvg).
    #[default]
    None,
    /// FedAvgM: the momentum buffer.
    Momentum {
        /// `m`.
        m: Vec<f32>,
    },
    /// FedAdam: first and second moments.
    Adam {
        /// `m`.
        m: Vec<f32>,
        /// `v`.
        v: Vec<f32>,
    },
}

/// What a round starts from: the community adapter and the server optimizer's state.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// The adapter.
    pub adapter: Adapter,
    /// The optimizer's state (created lazily on the first round that needs it).
    pub optimizer: OptimizerState,
}

impl State {
    /// A genesis state: `adapter` with no optimizer state.
    pub fn genesis(adapter: Adapter) -> Self {
        State {
            adapter,
            optimizer: OptimizerState::None,
        }
    }

    /// The adapter's version name.
    pub fn version(&self) -> Hash32 {
        self.adapter.version()
    }

    /// Hash of the optimizer state: [`OPTIMIZER_DOMAIN`], a tag (`none`, `momentum`, `adam`),
    /// then the moment vectors as in [`Hasher::f32s`].
    pub fn optimizer_hash(&self) -> Hash32 {
        let mut h = Hasher::new(OPTIMIZER_DOMAIN);
        match &self.optimizer {
            OptimizerState::None => {
                h.str("none");
            }
            OptimizerState::Momentum { m } => {
                h.str("momentum").f32s(m);
            }
            OptimizerState::Adam { m, v } => {
                h.str("adam").f32s(m).f32s(v);
            }
        }
        h.finish()
    }

    /// Checks the adapter against `shape` and the optimizer vectors' lengths and values.
    pub fn check(&self, shape: &LoraShape) -> Result<()> {
        self.adapter.check(shape)?;
        let n = self.adapter.len();
        let vectors: Vec<&Vec<f32>> = match &self.optimizer {
            OptimizerState::None => vec![],
            OptimizerState::Momentum { m } => vec![m],
            OptimizerState::Adam { m, v } => vec![m, v],
        };
        for v in vectors {
            if v.len() != n {
                return Err(Error::Shape {
                    reason: format!("optimizer state of {} values, adapter of {n}", v.len()),
                });
            }
            check_finite("optimizer state", v)?;
        }
        Ok(())
    }
}

fn check_finite<'a>(what: &'static str, values: impl IntoIterator<Item = &'a f32>) -> Result<()> {
    match values.into_iter().position(|v| !v.is_finite()) {
        Some(index) => Err(Error::NonFinite { what, index }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::shape;

    #[test]
    fn flat_round_trip_and_shape_checks() {
        let s = shape();
        let n = s.elements() as usize;
        let values: Vec<f32> = (0..n).map(|i| i as f32 * 0.25).collect();
        let a = Adapter::from_flat(&s, &values).unwrap();
        assert_eq!(a.len(), n);
        assert_eq!(a.to_flat(), values);
        a.check(&s).unwrap();
        assert!(matches!(
            Adapter::from_flat(&s, &values[1..]),
            Err(Error::Shape { .. })
        ));
        let mut bad = a.clone();
        bad.tensors[1].values[0] = f32::NAN;
        let first = a.tensors[0].values.len();
        assert_eq!(
            bad.check(&s),
            Err(Error::NonFinite {
                what: "adapter",
                index: first
            })
        );
        let mut renamed = a.clone();
        renamed.tensors[0].name = "blk.9.attn_q".into();
        assert!(matches!(renamed.check(&s), Err(Error::Shape { .. })));
    }

    #[test]
    fn version_is_the_protocol_adapter_hash_sorted_by_name() {
        let mut s = shape();
        s.layers = 11; // "blk.10" sorts before "blk.2"
        let n = s.elements() as usize;
        let values: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
        let a = Adapter::from_flat(&s, &values).unwrap();
        let mut refs: Vec<TensorRef<'_>> = a
            .tensors()
            .iter()
            .map(|t| TensorRef {
                name: &t.name,
                rows: t.rows,
                cols: t.cols,
                values: &t.values,
            })
            .collect();
        let in_wire_order = adapter_hash(&refs);
        refs.sort_by(|x, y| x.name.cmp(y.name));
        assert_eq!(a.version(), adapter_hash(&refs));
        assert_ne!(a.version(), in_wire_order);
        let mut changed = a.clone();
        changed.tensors[3].values[0] = 0.5;
        assert_ne!(changed.version(), a.version());
    }

    #[test]
    fn optimizer_state_is_hashed_and_checked() {
        let s = shape();
        let n = s.elements() as usize;
        let mut state = State::genesis(Adapter::zeros(&s));
        let none = state.optimizer_hash();
        state.optimizer = OptimizerState::Momentum { m: vec![0.0; n] };
        let momentum = state.optimizer_hash();
        state.check(&s).unwrap();
        state.optimizer = OptimizerState::Adam {
            m: vec![0.0; n],
            v: vec![0.0; n],
        };
        assert!(
            none != momentum
                && momentum != state.optimizer_hash()
                && none != state.optimizer_hash()
        );
        state.optimizer = OptimizerState::Adam {
            m: vec![0.0; n],
            v: vec![0.0; n - 1],
        };
        assert!(matches!(state.check(&s), Err(Error::Shape { .. })));
    }
}
