//! From documents to token streams: [`Encode`] (the model's [`Tokenizer`] or the tiny
//! [`ByteEncoder`]), and the [`Dataset`] of training windows plus a held-out stream.
//!
//! # Split and windows
//!
//! Each document is encoded on its own; its last `held_out_fraction` of tokens (rounded down, 20 %
//! by default, as LEAF splits each client's samples 80/20 in order) goes to the held-out stream,
//! the rest to the training stream, each followed by the encoder's separator (end of text). The
//! training stream is cut into windows of `seq_len + 1` tokens with a stride of `seq_len`, so
//! every training token after the first is a prediction target exactly once; a remainder shorter
//! than a window is left out. Short documents are packed together rather than padded.

use hearth_models::{Role, Tokenizer};

use super::ingest::{Content, Document};
use crate::error::{Error, Result};

/// Turns text and chats into token ids.
pub trait Encode {
    /// Encodes plain text (special-token strings stay text).
    fn encode_text(&self, text: &str) -> Result<Vec<u32>>;
    /// Encodes one chat with the model's chat template.
    fn encode_chat(&self, chat: &[(Role, String)]) -> Result<Vec<u32>>;
    /// The token put after each document, if any.
    fn separator(&self) -> Option<u32>;
}

impl Encode for Tokenizer {
    fn encode_text(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.encode_ordinary(text)?)
    }

    /// ChatML via [`Tokenizer::encode_chat`], without the trailing `<|im_start|>assistant\n`
    /// generation prompt (training data is a finished chat).
    fn encode_chat(&self, chat: &[(Role, String)]) -> Result<Vec<u32>> {
        let mut ids = Tokenizer::encode_chat(self, chat)?;
        if let Some(start) = self.token_to_id("<|im_start|>") {
            let mut prompt = vec![start];
            prompt.extend(self.encode_ordinary("assistant\n")?);
            if ids.ends_with(&prompt) {
                ids.truncate(ids.len() - prompt.len());
            }
        }
        Ok(ids)
    }

    fn separator(&self) -> Option<u32> {
        self.eos_id()
    }
}

/// A byte-level encoder for tiny models: byte `b` is token `b`, then three special tokens.
/// Chats use ChatML with [`ByteEncoder::IM_START`] and [`ByteEncoder::IM_END`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByteEncoder;

impl ByteEncoder {
    /// `<|im_start|>`.
    pub const IM_START: u32 = 256;
    /// `<|im_end|>`.
    pub const IM_END: u32 = 257;
    /// End of text, the separator between documents.
    pub const EOS: u32 = 258;
    /// Vocabulary size.
    pub const VOCAB: usize = 259;
}

impl Encode for ByteEncoder {
    fn encode_text(&self, text: &str) -> Result<Vec<u32>> {
        Ok(text.bytes().map(u32::from).collect())
    }

    fn encode_chat(&self, chat: &[(Role, String)]) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        for (role, content) in chat {
            ids.push(Self::IM_START);
            ids.extend(
                format!("{}\n{content}", role.as_str())
                    .bytes()
                    .map(u32::from),
            );
            ids.push(Self::IM_END);
            ids.push(u32::from(b'\n'));
        }
        Ok(ids)
    }

    fn separator(&self) -> Option<u32> {
        Some(Self::EOS)
    }
}

/// Default share of each document's tokens held out for evaluation.
pub const HELD_OUT_FRACTION: f64 = 0.2;

/// Training and held-out token streams.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dataset {
    train: Vec<u32>,
    held_out: Vec<u32>,
}

impl Dataset {
    /// A dataset from ready token streams.
    pub fn new(train: Vec<u32>, held_out: Vec<u32>) -> Self {
        Self { train, held_out }
    }

    /// Encodes `documents` and splits each one (see the module docs).
    pub fn from_documents(
        documents: &[Document],
        encoder: &impl Encode,
        held_out_fraction: f64,
    ) -> Result<Self> {
        if !(0.0..1.0).contains(&held_out_fraction) {
            return Err(Error::Config {
                reason: format!("held-out fraction {held_out_fraction} is not in [0, 1)"),
            });
        }
        let mut out = Self::default();
        for doc in documents {
            let ids = match &doc.content {
                Content::Text(text) => encoder.encode_text(text)?,
                Content::Chats(chats) => {
                    let mut ids = Vec::new();
                    for chat in chats {
                        ids.extend(encoder.encode_chat(chat)?);
                    }
                    ids
                }
            };
            let held = (ids.len() as f64 * held_out_fraction).floor() as usize;
            let cut = ids.len() - held;
            out.push(&ids[..cut], &ids[cut..], encoder.separator());
        }
        Ok(out)
    }

    /// Encodes a text already split in two (such as [`super::shakespeare::speaker_text`]).
    pub fn from_split_text(
        train: &str,
        held_out: &str,
        encoder: &(impl Encode + ?Sized),
    ) -> Result<Self> {
        let mut out = Self::default();
        let (t, h) = (encoder.encode_text(train)?, encoder.encode_text(held_out)?);
        out.push(&t, &h, encoder.separator());
        Ok(out)
    }

    fn push(&mut self, train: &[u32], held_out: &[u32], separator: Option<u32>) {
        for (stream, part) in [(&mut self.train, train), (&mut self.held_out, held_out)] {
            if !part.is_empty() {
                stream.extend_from_slice(part);
                stream.extend(separator);
            }
        }
    }

    /// The training stream.
    pub fn train(&self) -> &[u32] {
        &self.train
    }

    /// The held-out stream.
    pub fn held_out(&self) -> &[u32] {
        &self.held_out
    }

    /// Number of training windows of `seq_len + 1` tokens.
    pub fn num_windows(&self, seq_len: usize) -> usize {
        if seq_len == 0 {
            return 0;
        }
        self.train.len().saturating_sub(1) / seq_len
    }

    /// Training window `i`: tokens `i·seq_len ..= (i+1)·seq_len`.
    pub fn window(&self, seq_len: usize, i: usize) -> Option<&[u32]> {
        let start = i.checked_mul(seq_len)?;
        self.train.get(start..start.checked_add(seq_len + 1)?)
    }

    /// The largest token id in either stream.
    pub fn max_token(&self) -> Option<u32> {
        self.train.iter().chain(&self.held_out).copied().max()
    }

    /// Checks that every token fits a vocabulary of `vocab` ids.
    pub fn check_vocab(&self, vocab: usize) -> Result<()> {
        match self.max_token() {
            Some(t) if t as usize >= vocab => Err(Error::Data {
                reason: format!("token id {t} is outside the model's vocabulary of {vocab}"),
            }),
            _ => Ok(()),
        }
    }
}
