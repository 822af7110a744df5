//! The tokenizer: byte-level BPE built from a GGUF vocabulary, or loaded from a `tokenizer.json`,
//! plus the ChatML chat template.
//!
//! From GGUF (`tokenizer.ggml.model = "gpt2"`) the tokenizer is a `tokenizers` BPE model over
//! `tokenizer.ggml.tokens` and `.merges`, pre-tokenized by `Sequence[Digits(individual_digits),
//! ByteLevel(add_prefix_space = false, use_regex = true)]` (llama.cpp's `smollm` pre-tokenizer;
//! `gpt-2` leaves out the digit split), decoded by the ByteLevel decoder. Tokens with
//! `tokenizer.ggml.token_type` 3 (control: `<|im_start|>`, `<|im_end|>`, `<|endoftext|>`, ...)
//! are added as special tokens, type 4 (user-defined) as added tokens. Text round-trips exactly:
//! `decode(encode(s)) == s`.
//!
//! Chat prompts use ChatML: `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then
//! `<|im_start|>assistant\n`. [`Tokenizer::encode_chat`] encodes message contents with special
//! tokens disabled, so a user who types `<|im_end|>` cannot forge a turn.

use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper};

use crate::gguf::Gguf;
use crate::{Error, Result};

/// GGUF `token_type` of control tokens (added as special tokens).
const TOKEN_TYPE_CONTROL: i32 = 3;
/// GGUF `token_type` of user-defined tokens (added as plain added tokens).
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Who speaks a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The human.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// The ChatML role name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer {
        reason: e.to_string(),
    }
}

/// A text tokenizer with the model's special tokens and chat template.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    /// Recognizes special-token strings in the input.
    inner: tokenizers::Tokenizer,
    /// Treats special-token strings as ordinary text.
    ordinary: tokenizers::Tokenizer,
    bos: Option<u32>,
    eos: Option<u32>,
    default_system: Option<String>,
}

impl Tokenizer {
    /// Builds the tokenizer stored in a GGUF file.
    pub fn from_gguf(gguf: &Gguf) -> Result<Self> {
        let model = gguf.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(tok_err(format!(
                "gguf tokenizer model {model} is not supported (only gpt2 byte-level bpe)"
            )));
        }
        let digits = match gguf.metadata("tokenizer.ggml.pre") {
            None => false,
            Some(_) => match gguf.get_str("tokenizer.ggml.pre")? {
                "smollm" => true,
                "gpt-2" | "gpt2" => false,
                other => {
                    return Err(tok_err(format!(
                        "gguf pre-tokenizer {other} is not supported (smollm, gpt-2)"
                    )));
                }
            },
        };
        let tokens = gguf.get_str_array("tokenizer.ggml.tokens")?;
        let types = match gguf.metadata("tokenizer.ggml.token_type") {
            Some(_) => gguf.get_i32_array("tokenizer.ggml.token_type")?,
            None => vec![1; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(tok_err(format!(
                "{} token types for {} tokens",
                types.len(),
                tokens.len()
            )));
        }
        let vocab_len = u32::try_from(tokens.len()).map_err(tok_err)?;
        let vocab: Vocab = tokens
            .iter()
            .zip(0..vocab_len)
            .map(|(t, i)| ((*t).to_owned(), i))
            .collect();
        if vocab.len() != tokens.len() {
            return Err(tok_err("duplicate tokens in the gguf vocabulary"));
        }
        let merges = gguf
            .get_str_array("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| match m.split_once(' ') {
                Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains(' ') => {
                    Ok((a.to_owned(), b.to_owned()))
                }
                _ => Err(tok_err(format!("malformed merge {m:?}"))),
            })
            .collect::<Result<Vec<_>>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(tok_err)?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        let byte_level: PreTokenizerWrapper = ByteLevel::new(false, true, true).into();
        let pre = if digits {
            PreTokenizerWrapper::Sequence(Sequence::new(vec![Digits::new(true).into(), byte_level]))
        } else {
            byte_level
        };
        inner.with_pre_tokenizer(Some(pre));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let added = |wanted: i32, special: bool| -> Vec<AddedToken> {
            tokens
                .iter()
                .zip(&types)
                .filter(|&(_, &ty)| ty == wanted)
                .map(|(t, _)| AddedToken::from(*t, special).normalized(false))
                .collect()
        };
        inner.add_special_tokens(&added(TOKEN_TYPE_CONTROL, true));
        inner.add_tokens(&added(TOKEN_TYPE_USER_DEFINED, false));
        let optional_id = |key: &str| -> Result<Option<u32>> {
            match gguf.metadata(key) {
                None => Ok(None),
                Some(_) => gguf.get_u32(key).map(Some),
            }
        };
        let check = |id: Option<u32>| match id {
            Some(i) if i >= vocab_len => Err(tok_err(format!(
                "special token id {i} is outside the vocabulary of {vocab_len}"
            ))),
            _ => Ok(id),
        };
        let bos = check(optional_id("tokenizer.ggml.bos_token_id")?)?;
        let eos = check(optional_id("tokenizer.ggml.eos_token_id")?)?;
        let default_system = gguf
            .metadata("tokenizer.chat_template")
            .and_then(|v| v.as_str())
            .and_then(default_system_prompt);
        Ok(Self::with_parts(inner, bos, eos, default_system))
    }

    /// Loads a Hugging Face `tokenizer.json`. When a `tokenizer_config.json` sits next to it, its
    /// `bos_token` and `eos_token` name the special ids.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| tok_err(format!("{}: {e}", path.display())))?;
        let (mut bos, mut eos, mut default_system) = (None, None, None);
        let config_path = path.with_file_name("tokenizer_config.json");
        if let Ok(config) = std::fs::read(&config_path) {
            let config: serde_json::Value = serde_json::from_slice(&config)
                .map_err(|e| tok_err(format!("{}: {e}", config_path.display())))?;
            let token_id = |key: &str| {
                let v = config.get(key)?;
                let s = v.as_str().or_else(|| v.get("content")?.as_str())?;
                inner.token_to_id(s)
            };
            bos = token_id("bos_token");
            eos = token_id("eos_token");
            default_system = config
                .get("chat_template")
                .and_then(|t| t.as_str())
                .and_then(default_system_prompt);
        }
        Ok(Self::with_parts(inner, bos, eos, default_system))
    }

    /// Wraps a `tokenizers` tokenizer with explicit special ids.
    pub fn with_parts(
        inner: tokenizers::Tokenizer,
        bos: Option<u32>,
        eos: Option<u32>,
        default_system: Option<String>,
    ) -> Self {
        let mut ordinary = inner.clone();
        ordinary.set_encode_special_tokens(true);
        Self {
            inner,
            ordinary,
            bos,
            eos,
            default_system,
        }
    }

    /// The wrapped `tokenizers` tokenizer (e.g. for `decode_stream`).
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Encodes text; special-token strings such as `<|im_start|>` become their special ids.
    /// No BOS is added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode_fast(text, false).map_err(tok_err)?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encodes text with special-token strings treated as ordinary text.
    pub fn encode_ordinary(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.ordinary.encode_fast(text, false).map_err(tok_err)?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes ids to text, special tokens included (the exact inverse of [`Self::encode`]).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(tok_err)
    }

    /// Decodes ids to text, leaving out special tokens.
    pub fn decode_skip_special(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(tok_err)
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token string.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token string of an id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Beginning-of-sequence id, when known.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// End-of-sequence id, when known.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// Ids that end a generated reply: EOS, `<|im_end|>` and `<|endoftext|>` when present.
    pub fn stop_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.eos.into_iter().collect();
        for t in ["<|im_end|>", "<|endoftext|>"] {
            if let Some(id) = self.token_to_id(t)
                && !ids.contains(&id)
            {
                ids.push(id);
            }
        }
        ids
    }

    /// The system prompt the model's chat template inserts when a chat has none.
    pub fn default_system_prompt(&self) -> Option<&str> {
        self.default_system.as_deref()
    }

    /// The messages, with the default system prompt first when the chat has no system message.
    fn with_system<'a>(&'a self, messages: &'a [(Role, String)]) -> Vec<(Role, &'a str)> {
        let mut out = Vec::with_capacity(messages.len() + 1);
        if let Some(system) = &self.default_system
            && messages.first().map(|(r, _)| *r) != Some(Role::System)
        {
            out.push((Role::System, system.as_str()));
        }
        out.extend(messages.iter().map(|(r, c)| (*r, c.as_str())));
        out
    }

    /// The ChatML prompt for `messages`, ending with `<|im_start|>assistant\n` so the model
    /// writes the reply. The default system prompt (see [`Self::default_system_prompt`]) is
    /// inserted when the first message is not a system message.
    pub fn chat_prompt(&self, messages: &[(Role, String)]) -> String {
        let mut out = String::new();
        for (role, content) in self.with_system(messages) {
            out.push_str("<|im_start|>");
            out.push_str(role.as_str());
            out.push('\n');
            out.push_str(content);
            out.push_str("<|im_end|>\n");
        }
        out.push_str("<|im_start|>assistant\n");
        out
    }

    /// The token ids of [`Self::chat_prompt`], with message contents encoded as ordinary text
    /// (a special-token string typed by a user stays text).
    pub fn encode_chat(&self, messages: &[(Role, String)]) -> Result<Vec<u32>> {
        let special = |t: &str| {
            self.token_to_id(t)
                .ok_or_else(|| tok_err(format!("the vocabulary has no {t} token for chatml")))
        };
        let (start, end) = (special("<|im_start|>")?, special("<|im_end|>")?);
        let mut ids = Vec::new();
        for (role, content) in self.with_system(messages) {
            ids.push(start);
            ids.extend(self.encode_ordinary(&format!("{}\n{content}", role.as_str()))?);
            ids.push(end);
            ids.extend(self.encode_ordinary("\n")?);
        }
        ids.push(start);
        ids.extend(self.encode_ordinary("assistant\n")?);
        Ok(ids)
    }
}

/// The literal default system message of a ChatML Jinja template, as in SmolLM2's
/// `{{ '<|im_start|>system\nYou are a helpful AI assistant ...<|im_end|>\n' }}`.
fn default_system_prompt(template: &str) -> Option<String> {
    const START: &str = "<|im_start|>system\n";
    let from = template.find(START)? + START.len();
    let rest = &template[from..];
    let text = &rest[..rest.find("<|im_end|>")?];
    // Only a literal: a Jinja expression or quote means the content is computed.
    if text.is_empty() || text.contains(['{', '}', '\'', '"']) {
        return None;
    }
    Some(text.to_owned())
}

#[cfg(test)]
mod tests;
