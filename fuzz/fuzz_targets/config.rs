//! Feeds arbitrary bytes to the node's configuration file reader (written to a scratch file, as
//! `hearth node --config FILE` reads it): size, UTF-8, TOML, unknown keys, types, every key's
//! range, the API section. A file that loads must print (`hearth config`) to a file that loads
//! back to the same configuration.
#![no_main]

use hearth_fuzz::{scratch_dir, write};
use hearth_node::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = scratch_dir("config").join("config.toml");
    write(&path, data);
    let Ok(config) = Config::load(&path) else {
        return;
    };
    let text = match config.to_toml() {
        Ok(t) => t,
        Err(e) => panic!("a loaded configuration does not print: {e:#}"),
    };
    match Config::parse(&text) {
        Ok(again) => assert_eq!(again, config, "printed as {text:?}"),
        Err(e) => panic!("a printed configuration does not load: {e:#}\n{text}"),
    }
    if let Err(e) = config.api_config(None) {
        panic!("a loaded configuration has an invalid api section: {e:#}");
    }
});
