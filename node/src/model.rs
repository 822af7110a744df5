//! Finding and loading the base model, its tokenizer and adapters for the CLI and the daemon.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use hearth_models::{GgufWeights, HfCheckpoint, Llama, LlamaConfig, Tokenizer, WeightSource, peft};
use hearth_protocol::Hash32;

/// The default base model's file name, as `scripts/fetch-assets.sh` writes it.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Context length used unless asked otherwise: enough for chat and training windows, and far less
/// memory for RoPE tables and caches than the model's 8192.
pub const DEFAULT_CONTEXT: usize = 2048;

/// A loaded base model with its tokenizer and any adapters attached.
#[derive(Debug)]
pub struct LoadedModel {
    /// The model, adapters attached and merged for fast inference.
    pub model: Llama,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Where it was loaded from.
    pub path: PathBuf,
}

/// Where to look for the default model: `$HEARTH_MODEL`, then `$HEARTH_ASSETS/<file>`, then
/// `assets/<file>` under the current directory and next to the executable's source tree.
pub fn default_model_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HEARTH_MODEL") {
        return Some(PathBuf::from(p));
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("HEARTH_ASSETS") {
        candidates.push(PathBuf::from(dir).join(DEFAULT_MODEL_FILE));
    }
    candidates.push(PathBuf::from("assets").join(DEFAULT_MODEL_FILE));
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../assets")
            .join(DEFAULT_MODEL_FILE),
    );
    candidates.into_iter().find(|p| p.is_file())
}

/// Resolves `--model` or the default, with an error that says what to do.
pub fn resolve_model_path(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    match explicit {
        Some(p) if p.exists() => Ok(p.to_path_buf()),
        Some(p) => anyhow::bail!("model {} does not exist", p.display()),
        None => default_model_path().ok_or_else(|| {
            anyhow::anyhow!(
                "no model found: pass --model PATH (a .gguf file or a Hugging Face checkpoint folder), \
                 set HEARTH_MODEL, or run scripts/fetch-assets.sh to fetch the default SmolLM2-135M"
            )
        }),
    }
}

/// Opens a `.gguf` file or a Hugging Face folder (`config.json`, `*.safetensors`,
/// `tokenizer.json`): its weights and tokenizer.
pub fn open_source(path: &Path) -> anyhow::Result<(Box<dyn WeightSource>, Tokenizer)> {
    use anyhow::Context as _;
    Ok(if path.is_dir() {
        let checkpoint =
            HfCheckpoint::open(path).with_context(|| format!("loading {}", path.display()))?;
        let tokenizer = Tokenizer::from_file(path.join("tokenizer.json"))
            .with_context(|| format!("loading {}/tokenizer.json", path.display()))?;
        (Box::new(checkpoint), tokenizer)
    } else {
        let weights =
            GgufWeights::open(path).with_context(|| format!("loading {}", path.display()))?;
        let tokenizer =
            Tokenizer::from_gguf(weights.gguf()).context("building the tokenizer from the gguf")?;
        (Box::new(weights), tokenizer)
    })
}

/// Loads the base model at `path` on `device` with a context of at most `context` tokens, and
/// returns it with its tokenizer and its id (the SHA-256 of the weights, as manifests pin it).
pub fn load_base(
    path: &Path,
    context: usize,
    device: &Device,
) -> anyhow::Result<(Llama, Tokenizer, Hash32)> {
    use anyhow::Context as _;
    let (source, tokenizer) = open_source(path)?;
    let file_config = LlamaConfig::from_hparams(source.hparams())?;
    let config = file_config
        .clone()
        .with_max_seq_len(context.min(file_config.max_seq_len));
    let model = Llama::load_with(source.as_ref(), &config, device)?;
    let id: Hash32 = source
        .model_id()?
        .parse()
        .context("the model id is not a sha256")?;
    Ok((model, tokenizer, id))
}

/// Loads a model from a `.gguf` file or a Hugging Face folder, attaches the PEFT adapters in
/// `adapters` in order, and merges them.
pub fn load(path: &Path, adapters: &[PathBuf], context: usize) -> anyhow::Result<LoadedModel> {
    use anyhow::Context as _;
    let (mut model, tokenizer, _) = load_base(path, context, &Device::flex())?;
    let config = model.config().clone();
    for dir in adapters {
        let weights = peft::load(dir, &config)
            .with_context(|| format!("loading adapter {}", dir.display()))?;
        let slot = model.add_adapter(weights.config.clone())?;
        model.set_adapter_weights(slot, &weights)?;
        model.merge_adapter(slot)?;
    }
    Ok(LoadedModel {
        model,
        tokenizer,
        path: path.to_path_buf(),
    })
}
