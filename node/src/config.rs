//! The configuration file: one TOML file with a documented default for every key, checked at
//! start with errors that name the key. Every key has a command-line flag that overrides it.
//!
//! Where it is read from: `--config FILE` (or `$HEARTH_CONFIG`), which must exist; else
//! `config.toml` in the data directory when there is one; else every key has its default.
//! `hearth config` prints the effective configuration; docs/OPERATIONS.md shows the whole file.
//!
//! ```toml
//! [model]
//! # path = "/models/SmolLM2-135M-Instruct.Q4_1.gguf"   # default: the fetched SmolLM2
//! context = 2048
//!
//! [node]
//! listen = ["/ip4/0.0.0.0/tcp/4011", "/ip4/0.0.0.0/udp/4011/quic-v1"]
//! bootstrap = []
//! mdns = true
//! contribute = true
//! # threads = 2           # default: all cores
//! # max_memory_mb = 4096  # default: no limit
//! train_secs = 600.0
//! seq_len = 128
//! lr = 0.002
//! log_format = "human"
//!
//! [api]
//! enabled = true
//! addr = "127.0.0.1:11435"
//! # token = "..."         # required for a non-loopback addr; also $HEARTH_API_TOKEN
//! max_concurrent = 2
//! max_tokens = 1024
//! max_body_bytes = 1048576
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};

use crate::api;

/// The file's name in the data directory.
pub const FILE_NAME: &str = "config.toml";
/// Largest configuration file read.
pub const MAX_FILE_BYTES: u64 = 256 * 1024;
/// Environment variable naming the configuration file.
pub const ENV: &str = "HEARTH_CONFIG";

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[model]`: the base model.
    pub model: ModelSection,
    /// `[node]`: the daemon.
    pub node: NodeSection,
    /// `[api]`: the local API of `hearth node` and `hearth serve`.
    pub api: ApiSection,
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// Base model file or folder (default: the fetched SmolLM2-135M-Instruct).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Context length served, in tokens (16 to 131,072).
    pub context: u32,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            path: None,
            context: crate::model::DEFAULT_CONTEXT as u32,
        }
    }
}

/// `[node]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// Addresses to listen on (multiaddrs).
    pub listen: Vec<String>,
    /// Peers to dial at start besides the invite's (multiaddrs with `/p2p/<peer id>`).
    pub bootstrap: Vec<String>,
    /// Look for peers on the local network with mDNS.
    pub mdns: bool,
    /// Train and contribute (false: follow the community only).
    pub contribute: bool,
    /// CPU threads for training and generation (default: all cores).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<u16>,
    /// No training while the node uses more memory than this, in MiB (at least 64).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_memory_mb: Option<u64>,
    /// Most seconds of training per contribution (at least 1).
    pub train_secs: f64,
    /// Tokens per training window (8 to 4,096).
    pub seq_len: u32,
    /// Learning rate of local training (positive).
    pub lr: f64,
    /// `human` or `json`.
    pub log_format: String,
}

impl Default for NodeSection {
    fn default() -> Self {
        Self {
            listen: vec![
                "/ip4/0.0.0.0/tcp/4011".into(),
                "/ip4/0.0.0.0/udp/4011/quic-v1".into(),
            ],
            bootstrap: Vec::new(),
            mdns: true,
            contribute: true,
            threads: None,
            max_memory_mb: None,
            train_secs: 600.0,
            seq_len: 128,
            lr: 2e-3,
            log_format: "human".into(),
        }
    }
}

/// `[api]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Serve the local API from `hearth node`.
    pub enabled: bool,
    /// Address (`HOST:PORT`); anything but loopback needs a token.
    pub addr: String,
    /// Bearer token every request must carry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Generations running at once (1 to 64).
    pub max_concurrent: u16,
    /// Largest `max_tokens` a request may ask for (1 to 1,000,000).
    pub max_tokens: u32,
    /// Largest request body in bytes (1 KiB to 64 MiB).
    pub max_body_bytes: u32,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            enabled: true,
            addr: api::DEFAULT_ADDR.into(),
            token: None,
            max_concurrent: 2,
            max_tokens: 1024,
            max_body_bytes: 1 << 20,
        }
    }
}

/// A key whose value is out of range or malformed.
fn bad(key: &str, why: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{key}: {why}")
}

fn in_range<T: PartialOrd + std::fmt::Display>(
    key: &str,
    value: T,
    low: T,
    high: T,
) -> anyhow::Result<()> {
    if value < low || value > high {
        return Err(bad(key, format!("must be {low} to {high}, got {value}")));
    }
    Ok(())
}

impl Config {
    /// Parses and checks a file's text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let config: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        anyhow::ensure!(
            meta.len() <= MAX_FILE_BYTES,
            "the config file {} is {} bytes; the most accepted is {MAX_FILE_BYTES}",
            path.display(),
            meta.len()
        );
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in the config file {}", path.display()))
    }

    /// The configuration in force: `explicit` (`--config`, else `$HEARTH_CONFIG`) must exist;
    /// else `config.toml` in `home` when present; else the defaults. Also returns the file read.
    pub fn find(explicit: Option<&Path>, home: &Path) -> anyhow::Result<(Self, Option<PathBuf>)> {
        let env = std::env::var_os(ENV).map(PathBuf::from);
        if let Some(path) = explicit.map(Path::to_path_buf).or(env) {
            return Ok((Self::load(&path)?, Some(path)));
        }
        let path = home.join(FILE_NAME);
        if path.is_file() {
            return Ok((Self::load(&path)?, Some(path)));
        }
        Ok((Self::default(), None))
    }

    /// Checks every key; the error names the first bad one (`section.key`).
    pub fn validate(&self) -> anyhow::Result<()> {
        in_range("model.context", self.model.context, 16, 131_072)?;
        let n = &self.node;
        for (key, list) in [("node.listen", &n.listen), ("node.bootstrap", &n.bootstrap)] {
            for a in list.iter() {
                a.parse::<Multiaddr>()
                    .map_err(|e| bad(key, format!("{a:?} is not a multiaddr: {e}")))?;
            }
        }
        if let Some(t) = n.threads {
            in_range("node.threads", t, 1, 1024)?;
        }
        if let Some(m) = n.max_memory_mb {
            in_range("node.max_memory_mb", m, 64, u64::MAX >> 20)?;
        }
        if !(n.train_secs.is_finite() && n.train_secs >= 1.0) {
            return Err(bad(
                "node.train_secs",
                format!("must be at least 1, got {}", n.train_secs),
            ));
        }
        in_range("node.seq_len", n.seq_len, 8, 4096)?;
        if !(n.lr.is_finite() && n.lr > 0.0) {
            return Err(bad(
                "node.lr",
                format!("must be a positive number, got {}", n.lr),
            ));
        }
        if !matches!(n.log_format.as_str(), "human" | "json") {
            return Err(bad(
                "node.log_format",
                format!("must be \"human\" or \"json\", got {:?}", n.log_format),
            ));
        }
        self.api_config(None).map(|_| ())
    }

    /// The API configuration of `[api]`, `token` (a flag or `$HEARTH_API_TOKEN`) taking the
    /// place of the file's.
    pub fn api_config(&self, token: Option<&str>) -> anyhow::Result<api::Config> {
        let a = &self.api;
        let addr: SocketAddr = a.addr.parse().map_err(|e| {
            bad(
                "api.addr",
                format!("{:?} is not HOST:PORT (e.g. 127.0.0.1:11435): {e}", a.addr),
            )
        })?;
        in_range(
            "api.max_concurrent",
            usize::from(a.max_concurrent),
            1,
            api::MAX_CONCURRENT_LIMIT,
        )?;
        in_range("api.max_tokens", a.max_tokens, 1, 1_000_000)?;
        in_range("api.max_body_bytes", a.max_body_bytes, 1024, 64 << 20)?;
        let config = api::Config {
            addr,
            token: token
                .map(str::to_string)
                .or_else(|| a.token.clone())
                .filter(|t| !t.is_empty()),
            max_concurrent: usize::from(a.max_concurrent),
            max_body_bytes: a.max_body_bytes as usize,
            max_tokens: a.max_tokens as usize,
        };
        config.validate().map_err(|e| bad("api", e))?;
        Ok(config)
    }

    /// The file's text for this configuration (every key, defaults included).
    pub fn to_toml(&self) -> anyhow::Result<String> {
        Ok(toml::to_string(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        format!("{:#}", Config::parse(text).unwrap_err())
    }

    #[test]
    fn an_empty_file_is_the_defaults_and_the_documented_example_parses_to_them() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        let doc: String = include_str!("config.rs")
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| format!("{}\n", l.trim_start_matches("//!").trim_start()))
            .collect();
        assert!(doc.contains("[api]"), "{doc}");
        assert_eq!(Config::parse(&doc).unwrap(), Config::default());
        let printed = Config::default().to_toml().unwrap();
        assert_eq!(Config::parse(&printed).unwrap(), Config::default());
    }

    #[test]
    fn unknown_keys_and_sections_are_named() {
        let e = err("[node]\nthread = 2\n");
        assert!(e.contains("thread") && e.contains("threads"), "{e}");
        let e = err("[nodes]\n");
        assert!(e.contains("nodes"), "{e}");
        let e = err("colour = \"red\"\n");
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn wrong_types_and_syntax_are_named() {
        let e = err("[node]\nthreads = \"two\"\n");
        assert!(e.contains("threads"), "{e}");
        let e = err("[api\n");
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn each_limit_is_checked_at_and_past_it() {
        let ok = |t: &str| Config::parse(t).unwrap();
        ok("[model]\ncontext = 16");
        ok("[model]\ncontext = 131072");
        assert!(err("[model]\ncontext = 15").contains("model.context"));
        assert!(err("[model]\ncontext = 131073").contains("model.context"));
        ok("[node]\nthreads = 1");
        ok("[node]\nthreads = 1024");
        assert!(err("[node]\nthreads = 0").contains("node.threads"));
        assert!(err("[node]\nthreads = 1025").contains("node.threads"));
        ok("[node]\nmax_memory_mb = 64");
        assert!(err("[node]\nmax_memory_mb = 63").contains("node.max_memory_mb"));
        ok("[node]\ntrain_secs = 1.0");
        assert!(err("[node]\ntrain_secs = 0.5").contains("node.train_secs"));
        assert!(err("[node]\ntrain_secs = nan").contains("node.train_secs"));
        ok("[node]\nseq_len = 8");
        ok("[node]\nseq_len = 4096");
        assert!(err("[node]\nseq_len = 7").contains("node.seq_len"));
        assert!(err("[node]\nseq_len = 4097").contains("node.seq_len"));
        assert!(err("[node]\nlr = 0.0").contains("node.lr"));
        assert!(err("[node]\nlr = inf").contains("node.lr"));
        assert!(err("[node]\nlog_format = \"xml\"").contains("node.log_format"));
        assert!(err("[node]\nlisten = [\"tcp 4011\"]").contains("node.listen"));
        assert!(err("[node]\nbootstrap = [\"x\"]").contains("node.bootstrap"));
        ok("[api]\nmax_concurrent = 1");
        ok("[api]\nmax_concurrent = 64");
        assert!(err("[api]\nmax_concurrent = 0").contains("api.max_concurrent"));
        assert!(err("[api]\nmax_concurrent = 65").contains("api.max_concurrent"));
        ok("[api]\nmax_tokens = 1");
        ok("[api]\nmax_tokens = 1000000");
        assert!(err("[api]\nmax_tokens = 0").contains("api.max_tokens"));
        assert!(err("[api]\nmax_tokens = 1000001").contains("api.max_tokens"));
        ok("[api]\nmax_body_bytes = 1024");
        ok("[api]\nmax_body_bytes = 67108864");
        assert!(err("[api]\nmax_body_bytes = 1023").contains("api.max_body_bytes"));
        assert!(err("[api]\nmax_body_bytes = 67108865").contains("api.max_body_bytes"));
        assert!(err("[api]\naddr = \"localhost\"").contains("api.addr"));
    }

    #[test]
    fn a_public_address_needs_a_token() {
        let e = err("[api]\naddr = \"0.0.0.0:11435\"");
        assert!(e.contains("api") && e.contains("token"), "{e}");
        Config::parse("[api]\naddr = \"0.0.0.0:11435\"\ntoken = \"s3cret\"").unwrap();
        // A token from the command line counts too.
        let c: Config = toml::from_str("[api]\naddr = \"0.0.0.0:11435\"").unwrap();
        assert!(c.api_config(Some("s3cret")).is_ok());
    }

    #[test]
    fn files_are_found_in_order_and_size_is_limited() {
        let dir = tempfile::tempdir().unwrap();
        let (c, from) = Config::find(None, dir.path()).unwrap();
        assert_eq!((c, from), (Config::default(), None));
        let in_home = dir.path().join(FILE_NAME);
        std::fs::write(&in_home, "[node]\nthreads = 3\n").unwrap();
        let (c, from) = Config::find(None, dir.path()).unwrap();
        assert_eq!((c.node.threads, from), (Some(3), Some(in_home.clone())));
        let other = dir.path().join("other.toml");
        std::fs::write(&other, "[node]\nthreads = 4\n").unwrap();
        let (c, _) = Config::find(Some(&other), dir.path()).unwrap();
        assert_eq!(c.node.threads, Some(4));
        let missing = dir.path().join("missing.toml");
        let e = format!(
            "{:#}",
            Config::find(Some(&missing), dir.path()).unwrap_err()
        );
        assert!(e.contains("missing.toml"), "{e}");

        // At the size limit (padded with a comment) and one byte past it.
        let body = "[node]\nthreads = 2\n#";
        let pad = MAX_FILE_BYTES as usize - body.len();
        std::fs::write(&other, format!("{body}{}", "x".repeat(pad))).unwrap();
        assert_eq!(Config::load(&other).unwrap().node.threads, Some(2));
        std::fs::write(&other, format!("{body}{}", "x".repeat(pad + 1))).unwrap();
        let e = format!("{:#}", Config::load(&other).unwrap_err());
        assert!(e.contains("most accepted"), "{e}");
    }
}
