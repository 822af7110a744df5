//! Local LoRA fine-tuning on a member's private files, clipping and noise for differentially private
//! contributions, and the privacy accountant (issue "training"; not built yet).
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
