//! Test helpers: the location of the real model asset (the GGUF writer lives in
//! [`super::writer`]).

pub(crate) use super::writer::{Writer, str_array};

/// The real SmolLM2 GGUF (`$HEARTH_ASSETS` or `<repo>/assets`), `None` when `HEARTH_SKIP_REAL_MODEL=1`
/// and the file is missing. Panics (failing the test) with instructions when it is missing otherwise.
pub(crate) fn real_model_path() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("HEARTH_ASSETS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets"));
    let path = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("HEARTH_SKIP_REAL_MODEL").as_deref() == Ok("1") {
        eprintln!(
            "skipping: {} is missing and HEARTH_SKIP_REAL_MODEL=1",
            path.display()
        );
        return None;
    }
    panic!(
        "{} is missing: run scripts/fetch-assets.sh (or set HEARTH_SKIP_REAL_MODEL=1 to skip real-model tests)",
        path.display()
    );
}

/// The real model, parsed once per test binary.
pub(crate) fn real_model() -> Option<&'static super::Gguf> {
    static MODEL: std::sync::OnceLock<Option<super::Gguf>> = std::sync::OnceLock::new();
    MODEL
        .get_or_init(|| {
            real_model_path().map(|p| super::Gguf::open(p).expect("parse the real model"))
        })
        .as_ref()
}
