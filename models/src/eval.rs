//! Held-out evaluation: next-token negative log-likelihood and accuracy over a token stream.

use burn::tensor::{Int, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::llama::Llama;

/// Totals of an evaluation; combine several with [`Eval::add`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Eval {
    /// Sum of the negative log-likelihoods (nats) of the predicted tokens.
    pub nll_sum: f64,
    /// Predicted tokens whose most likely prediction was right.
    pub correct: u64,
    /// Predicted tokens.
    pub tokens: u64,
}

impl Eval {
    /// Mean loss in nats per token (`NaN` when nothing was predicted).
    pub fn mean_nll(&self) -> f64 {
        self.nll_sum / self.tokens as f64
    }

    /// Perplexity, `exp(mean_nll)`.
    pub fn perplexity(&self) -> f64 {
        self.mean_nll().exp()
    }

    /// Next-token accuracy.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.tokens as f64
    }

    /// Adds another evaluation's totals.
    pub fn add(&mut self, other: Eval) {
        self.nll_sum += other.nll_sum;
        self.correct += other.correct;
        self.tokens += other.tokens;
    }
}

/// Evaluates `tokens` in consecutive windows of at most `window` tokens (no overlap): in each
/// window, position `i` predicts token `i + 1`, so a stream of `n` tokens in `w` windows yields
/// `n - w` predictions. `on_window` is called after each window with the totals so far (for
/// progress display).
pub fn evaluate(
    model: &Llama,
    tokens: &[u32],
    window: usize,
    mut on_window: impl FnMut(&Eval),
) -> Result<Eval> {
    if window < 2 {
        return Err(Error::Format {
            what: "evaluation",
            reason: format!("window must be at least 2 tokens, got {window}"),
        });
    }
    let window = window.min(model.config().max_seq_len);
    let device = model.device();
    let mut total = Eval::default();
    for chunk in tokens.chunks(window).filter(|c| c.len() >= 2) {
        model.check_tokens(chunk)?;
        let s = chunk.len();
        let ids: Vec<i64> = chunk.iter().map(|&t| i64::from(t)).collect();
        let input = Tensor::<2, Int>::from_data(
            TensorData::new(ids[..s - 1].to_vec(), [1, s - 1]),
            &device,
        );
        let targets =
            Tensor::<3, Int>::from_data(TensorData::new(ids[1..].to_vec(), [1, s - 1, 1]), &device);
        let log_probs = burn::tensor::activation::log_softmax(model.forward(input), 2);
        let predicted = log_probs.clone().argmax(2);
        let picked = log_probs.gather(2, targets.clone());
        let nll: f64 = -f64::from(picked.sum().into_scalar::<f32>());
        let correct: i64 = predicted.equal(targets).int().sum().into_scalar::<i64>();
        total.add(Eval {
            nll_sum: nll,
            correct: correct as u64,
            tokens: (s - 1) as u64,
        });
        on_window(&total);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;
    use crate::config::LlamaConfig;

    #[test]
    fn windows_count_predictions_and_match_the_training_loss() {
        let device = Device::flex();
        let model = Llama::init_random(&LlamaConfig::tiny(50), 3, &device).unwrap();
        let tokens: Vec<u32> = (0..23).map(|i| (i * 7 % 50) as u32).collect();
        let eval = evaluate(&model, &tokens, 10, |_| {}).unwrap();
        // windows of 10, 10, 3 tokens give 9 + 9 + 2 predictions
        assert_eq!(eval.tokens, 20);
        assert!(eval.accuracy() >= 0.0 && eval.accuracy() <= 1.0);
        // One window equals the model's own mean next-token loss.
        let one = evaluate(&model, &tokens[..10], 10, |_| {}).unwrap();
        let ids: Vec<i64> = tokens[..10].iter().map(|&t| i64::from(t)).collect();
        let loss = model.next_token_loss(Tensor::<2, Int>::from_data(
            TensorData::new(ids, [1, 10]),
            &device,
        ));
        let loss = f64::from(loss.into_scalar::<f32>());
        assert!(
            (one.mean_nll() - loss).abs() < 1e-4,
            "{} vs {loss}",
            one.mean_nll()
        );
        // A random model over 50 tokens is near-uniform: perplexity near 50.
        assert!(
            eval.perplexity() > 10.0 && eval.perplexity() < 200.0,
            "{}",
            eval.perplexity()
        );
    }

    #[test]
    fn bad_windows_and_tokens_are_errors() {
        let model = Llama::init_random(&LlamaConfig::tiny(50), 3, &Device::flex()).unwrap();
        assert!(evaluate(&model, &[1, 2, 3], 1, |_| {}).is_err());
        assert!(
            evaluate(&model, &[1, 2, 99], 8, |_| {}).is_err(),
            "token id past the vocabulary"
        );
        assert_eq!(evaluate(&model, &[1], 8, |_| {}).unwrap().tokens, 0);
    }
}
