//! Server-side optimizers, applied by every node identically to the round's aggregate.
//!
//! The aggregate `u` is the (robust) mean of the members' deltas `B_local − B_global`, i.e. the
//! negative pseudo-gradient. Following Reddi et al. 2021 ("Adaptive Federated Optimization",
//! Algorithm 2) and Hsu et al. 2019 (FedAvgM):
//!
//! * none (FedAvg): `x ← x + u`;
//! * FedAvgM `{lr η, momentum μ}`: `m ← μ·m + u`, `x ← x + η·m`;
//! * FedAdam `{lr η, β₁, β₂, ε τ}`: `m ← β₁·m + (1−β₁)·u`, `v ← β₂·v + (1−β₂)·u²`,
//!   `x ← x + η·m/(√v + τ)` (no bias correction, as in the paper).
//!
//! Moments start at zero and are stored as `f32`; each step computes in `f64` from the stored
//! values with `+ − × ÷ √` only, then rounds to `f32` — so the state after a round is a function
//! of the state before and `u` alone, bit for bit, and part of the chain (its hash is recorded
//! with every version).

use hearth_protocol::ServerOptimizer;

use crate::adapter::{OptimizerState, State};
use crate::error::{Error, Result};

/// Applies the aggregate `update` (one value per adapter value, wire order) to `state`.
///
/// Errors if `update` has the wrong length or a result is not finite (the state is then
/// unchanged).
pub fn step(state: &State, update: &[f64], optimizer: ServerOptimizer) -> Result<State> {
    let n = state.adapter.len();
    if update.len() != n {
        return Err(Error::Shape {
            reason: format!("update of {} values for an adapter of {n}", update.len()),
        });
    }
    let x = state.adapter.to_flat();
    let zeros = || vec![0.0f32; n];
    let (new_x, opt): (Vec<f32>, OptimizerState) = match optimizer {
        ServerOptimizer::None => (
            x.iter()
                .zip(update)
                .map(|(&x, &u)| (f64::from(x) + u) as f32)
                .collect(),
            OptimizerState::None,
        ),
        ServerOptimizer::FedAvgM { lr, momentum } => {
            let mut m = match &state.optimizer {
                OptimizerState::Momentum { m } if m.len() == n => m.clone(),
                _ => zeros(),
            };
            let mut out = Vec::with_capacity(n);
            for ((mj, &xj), &u) in m.iter_mut().zip(&x).zip(update) {
                *mj = (momentum * f64::from(*mj) + u) as f32;
                out.push((f64::from(xj) + lr * f64::from(*mj)) as f32);
            }
            (out, OptimizerState::Momentum { m })
        }
        ServerOptimizer::FedAdam {
            lr,
            beta1,
            beta2,
            epsilon,
        } => {
            let (mut m, mut v) = match &state.optimizer {
                OptimizerState::Adam { m, v } if m.len() == n && v.len() == n => {
                    (m.clone(), v.clone())
                }
                _ => (zeros(), zeros()),
            };
            let mut out = Vec::with_capacity(n);
            for (((mj, vj), &xj), &u) in m.iter_mut().zip(v.iter_mut()).zip(&x).zip(update) {
                *mj = (beta1 * f64::from(*mj) + (1.0 - beta1) * u) as f32;
                *vj = (beta2 * f64::from(*vj) + (1.0 - beta2) * (u * u)) as f32;
                let denom = f64::from(*vj).sqrt() + epsilon;
                out.push((f64::from(xj) + lr * f64::from(*mj) / denom) as f32);
            }
            (out, OptimizerState::Adam { m, v })
        }
    };
    if let Some(index) = new_x.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite {
            what: "updated adapter",
            index,
        });
    }
    let mut adapter = state.adapter.clone();
    adapter.set_flat(&new_x)?;
    let next = State {
        adapter,
        optimizer: opt,
    };
    next.check_moments()?;
    Ok(next)
}

impl State {
    fn check_moments(&self) -> Result<()> {
        let vectors: Vec<&Vec<f32>> = match &self.optimizer {
            OptimizerState::None => vec![],
            OptimizerState::Momentum { m } => vec![m],
            OptimizerState::Adam { m, v } => vec![m, v],
        };
        for v in vectors {
            if let Some(index) = v.iter().position(|x| !x.is_finite()) {
                return Err(Error::NonFinite {
                    what: "optimizer state",
                    index,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::Adapter;
    use crate::testutil::shape;

    fn start() -> State {
        let s = shape();
        let n = s.elements() as usize;
        let values: Vec<f32> = (0..n).map(|i| i as f32 * 0.01 - 0.1).collect();
        State::genesis(Adapter::from_flat(&s, &values).unwrap())
    }

    fn updates(n: usize, round: usize) -> Vec<f64> {
        (0..n)
            .map(|j| ((j * 7 + round * 3) % 11) as f64 * 1e-3 - 5e-3)
            .collect()
    }

    #[test]
    fn fedavg_adds_the_update() {
        let s = start();
        let u = updates(s.adapter.len(), 0);
        let next = step(&s, &u, ServerOptimizer::None).unwrap();
        for ((a, b), du) in next.adapter.values().zip(s.adapter.values()).zip(&u) {
            assert_eq!(*a, (f64::from(*b) + du) as f32);
        }
        assert_eq!(next.optimizer, OptimizerState::None);
    }

    /// FedAvgM and FedAdam over three rounds against a direct f64 transcription of the papers'
    /// update rules (moments kept in f64 there, so compare with a tolerance).
    #[test]
    fn momentum_and_adam_match_the_reference() {
        let s0 = start();
        let n = s0.adapter.len();
        let (lr, mu) = (0.5, 0.9);
        let mut s = s0.clone();
        let mut x: Vec<f64> = s0.adapter.values().map(|&v| f64::from(v)).collect();
        let mut m = vec![0.0f64; n];
        for r in 0..3 {
            let u = updates(n, r);
            s = step(&s, &u, ServerOptimizer::FedAvgM { lr, momentum: mu }).unwrap();
            for j in 0..n {
                m[j] = mu * m[j] + u[j];
                x[j] += lr * m[j];
            }
        }
        for (a, b) in s.adapter.values().zip(&x) {
            assert!((f64::from(*a) - b).abs() < 1e-6, "{a} vs {b}");
        }

        let (lr, b1, b2, eps) = (0.01, 0.9, 0.99, 1e-3);
        let opt = ServerOptimizer::FedAdam {
            lr,
            beta1: b1,
            beta2: b2,
            epsilon: eps,
        };
        let mut s = s0.clone();
        let mut x: Vec<f64> = s0.adapter.values().map(|&v| f64::from(v)).collect();
        let (mut m, mut v) = (vec![0.0f64; n], vec![0.0f64; n]);
        for r in 0..3 {
            let u = updates(n, r);
            s = step(&s, &u, opt).unwrap();
            for j in 0..n {
                m[j] = b1 * m[j] + (1.0 - b1) * u[j];
                v[j] = b2 * v[j] + (1.0 - b2) * u[j] * u[j];
                x[j] += lr * m[j] / (v[j].sqrt() + eps);
            }
        }
        for (a, b) in s.adapter.values().zip(&x) {
            assert!((f64::from(*a) - b).abs() < 1e-5, "{a} vs {b}");
        }
        let OptimizerState::Adam { m: sm, v: sv } = &s.optimizer else {
            panic!("adam state expected, got {:?}", s.optimizer);
        };
        for j in 0..n {
            assert!((f64::from(sm[j]) - m[j]).abs() < 1e-7);
            assert!((f64::from(sv[j]) - v[j]).abs() < 1e-9);
        }
    }

    #[test]
    fn steps_are_deterministic_and_errors_leave_no_state() {
        let s = start();
        let u = updates(s.adapter.len(), 1);
        let opt = ServerOptimizer::FedAdam {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-6,
        };
        let a = step(&s, &u, opt).unwrap();
        let b = step(&s, &u, opt).unwrap();
        assert_eq!(a.version(), b.version());
        assert_eq!(a.optimizer_hash(), b.optimizer_hash());
        assert!(matches!(step(&s, &u[1..], opt), Err(Error::Shape { .. })));
        let mut huge = u.clone();
        huge[3] = 1e300;
        assert_eq!(
            step(&s, &huge, ServerOptimizer::None),
            Err(Error::NonFinite {
                what: "updated adapter",
                index: 3
            })
        );
    }
}
