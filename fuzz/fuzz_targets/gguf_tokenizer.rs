//! Feeds arbitrary bytes to the GGUF reader and builds the tokenizer stored in the file (vocab,
//! token types, merges, special ids), then encodes, decodes and formats a chat with it.
#![no_main]

use hearth_models::{Gguf, Role, Tokenizer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(gguf) = Gguf::from_bytes(data.to_vec()) else {
        return;
    };
    let Ok(tokenizer) = Tokenizer::from_gguf(&gguf) else {
        return;
    };
    let text = "The 12 lords <|im_start|>said\u{e9} \u{1f600}\n";
    if let Ok(ids) = tokenizer.encode(text) {
        let _ = tokenizer.decode(&ids);
        let _ = tokenizer.decode_skip_special(&ids);
    }
    let _ = tokenizer.encode_ordinary(text);
    let vocab = tokenizer.vocab_size() as u32;
    let _ = tokenizer.decode(&[0, vocab.saturating_sub(1), vocab, u32::MAX]);
    let _ = tokenizer.encode_chat(&[(Role::User, text.to_owned())]);
    let _ = tokenizer.stop_ids();
});
