//! The position-wise parts of a block: [`RmsNorm`] and the SwiGLU feed-forward [`Mlp`].

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::activation::silu;

use crate::lora::LoraLinear;

/// Root-mean-square layer norm: `x / sqrt(mean(x²) + ε) · w`.
#[derive(Module, Debug)]
pub struct RmsNorm {
    /// Per-feature gain `[hidden]` (frozen).
    pub weight: Param<Tensor<1>>,
    /// ε.
    pub eps: f64,
}

impl RmsNorm {
    /// A norm with gain `weight` (frozen).
    pub fn new(weight: Tensor<1>, eps: f64) -> Self {
        Self {
            weight: Param::from_tensor(weight).set_require_grad(false),
            eps,
        }
    }

    /// Normalises the last dimension of `x: [batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let rms = x.clone().square().mean_dim(2).add_scalar(self.eps).sqrt();
        (x / rms) * self.weight.val().unsqueeze::<3>()
    }
}

/// SwiGLU feed-forward: `down(silu(gate(x)) · up(x))`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// `mlp.gate_proj`, `[hidden, intermediate]`.
    pub gate_proj: LoraLinear,
    /// `mlp.up_proj`, `[hidden, intermediate]`.
    pub up_proj: LoraLinear,
    /// `mlp.down_proj`, `[intermediate, hidden]`.
    pub down_proj: LoraLinear,
}

impl Mlp {
    /// Applies the feed-forward layer to `[batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let gate = silu(self.gate_proj.forward(x.clone()));
        let up = self.up_proj.forward(x);
        self.down_proj.forward(gate * up)
    }
}
