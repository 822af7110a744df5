//! A member's home in a temporary folder: the tiny model, an identity unlocked by a key file, a
//! one-member community on that model (this member is its admin), and optionally a personal
//! adapter; plus helpers to run `hearth` and talk HTTP to it.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use burn::tensor::Device;
use hearth_models::{AdapterWeights, LlamaConfig, LoraConfig, Target as LoraTarget};
use hearth_node::home::{Home, unix_now};
use hearth_node::secrets::Unlock;
use hearth_protocol::{BaseModel, Certificate, Hash32, LoraShape, Manifest, Role, Signed, Target};
use tempfile::TempDir;

/// A member's folder.
pub struct Member {
    pub dir: TempDir,
    pub model: PathBuf,
}

impl Member {
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("key")
    }

    pub fn open(&self) -> Home {
        Home::open(&self.home(), &Unlock::KeyFile(self.key_file())).unwrap()
    }

    /// `hearth <args>` with this member's home, key file and model.
    pub fn hearth(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth"));
        cmd.args(args)
            .arg("--home")
            .arg(self.home())
            .arg("--key-file")
            .arg(self.key_file())
            .arg("--model")
            .arg(&self.model)
            .env_remove("HEARTH_API_TOKEN")
            .env_remove("HEARTH_PASSPHRASE")
            .env("RAYON_NUM_THREADS", "1");
        cmd
    }

    /// Runs `hearth <args>` to the end; (success, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.hearth(args).stdin(Stdio::null()).output().unwrap();
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }
}

/// The tiny model's configuration.
pub fn tiny() -> LlamaConfig {
    LlamaConfig::tiny(320)
}

/// A member of a one-member community on the tiny model, with a personal adapter if `personal`.
pub fn member(personal: bool) -> Member {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    hearth_models::tiny::write_gguf(&model, &tiny(), 7).unwrap();
    let sha = Hash32::digest(&std::fs::read(&model).unwrap());
    std::fs::write(dir.path().join("key"), [9u8; 32]).unwrap();
    let home = Home::init(
        &dir.path().join("home"),
        &Unlock::KeyFile(dir.path().join("key")),
    )
    .unwrap();
    let config = tiny();
    let targets = [LoraTarget::Q, LoraTarget::V]
        .iter()
        .map(|t| hearth_node::cli::membership::target_shape(*t, &config))
        .collect::<Vec<Target>>();
    let manifest = Manifest {
        name: "kitchen".into(),
        admin: home.member_id(),
        created: unix_now(),
        base_model: BaseModel {
            name: "tiny.gguf".into(),
            sha256: sha,
        },
        lora: LoraShape {
            rank: 2,
            alpha: 4.0,
            layers: config.layers as u32,
            targets,
            ffa_seed: 11,
        },
        privacy: Default::default(),
        aggregation: Default::default(),
        schedule: Default::default(),
        limits: Default::default(),
    };
    let manifest = Signed::sign(manifest, &home.key).unwrap();
    let community = manifest.verify().unwrap();
    let now = unix_now();
    let certificate = Signed::sign(
        Certificate {
            member: home.member_id(),
            community,
            issued: now - 60,
            expires: now + 86_400,
            roles: vec![Role::Contributor],
        },
        &home.key,
    )
    .unwrap();
    home.set_membership(&manifest, &certificate, &[]).unwrap();
    if personal {
        hearth_node::local::save_personal(&home, &personal_weights(&model, 0.02)).unwrap();
    }
    Member { dir, model }
}

/// A personal adapter for the tiny model: rank 4 on q, k and v, `B` filled from `scale`.
pub fn personal_weights(model: &Path, scale: f32) -> AdapterWeights {
    let (mut m, _, _) = hearth_node::model::load_base(model, 16, &Device::flex()).unwrap();
    let config =
        LoraConfig::new(4, 8.0, vec![LoraTarget::Q, LoraTarget::K, LoraTarget::V]).with_seed(21);
    let slot = m.add_adapter(config).unwrap();
    let mut w = m.adapter_weights(slot).unwrap();
    let b: Vec<f32> = (0..w.b_len())
        .map(|i| scale * ((i % 7) as f32 - 3.0))
        .collect();
    w.set_flat_b(&b).unwrap();
    w
}

/// A running `hearth serve`; killed when dropped.
pub struct Served {
    pub child: Child,
    pub base: String,
    pub token: Option<String>,
}

impl Served {
    /// Starts `hearth serve` on a free loopback port with `extra` flags; waits until it listens.
    pub fn start(member: &Member, token: Option<&str>, extra: &[&str]) -> Self {
        let mut cmd = member.hearth(&["serve", "--api-addr", "127.0.0.1:0", "--context", "128"]);
        cmd.args(extra);
        if let Some(t) = token {
            cmd.args(["--api-token", t]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("hearth serve printed nothing").unwrap();
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        let base = url.trim_end_matches("/v1").to_string();
        // Keep reading stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            base,
            token: token.map(str::to_string),
        }
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(60)))
            .build()
            .into()
    }

    /// GET `path` with the token; (status, content type, body).
    pub fn get(&self, path: &str) -> (u16, String, String) {
        self.get_with(path, self.token.as_deref())
    }

    /// GET `path` with `token`.
    pub fn get_with(&self, path: &str, token: Option<&str>) -> (u16, String, String) {
        let mut req = Self::agent().get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let mut r = req.call().unwrap();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (
            r.status().as_u16(),
            ct,
            r.body_mut().read_to_string().unwrap(),
        )
    }

    /// POST `body` to `path` with the token; (status, content type, body).
    pub fn post(&self, path: &str, body: &str) -> (u16, String, String) {
        self.post_with(path, body, self.token.as_deref())
    }

    /// POST with `token`.
    pub fn post_with(&self, path: &str, body: &str, token: Option<&str>) -> (u16, String, String) {
        let mut req = Self::agent()
            .post(format!("{}{path}", self.base))
            .content_type("application/json");
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let mut r = req.send(body).unwrap();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let text = r
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap();
        (r.status().as_u16(), ct, text)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `data:` payloads of a server-sent event stream, checking its framing: every event is
/// `data: ...` lines followed by a blank line; comments (keep-alives) are allowed.
pub fn sse_data(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for event in text.split("\n\n").filter(|e| !e.is_empty()) {
        let mut data = Vec::new();
        for line in event.lines() {
            if line.starts_with(':') {
                continue;
            }
            let payload = line
                .strip_prefix("data: ")
                .or_else(|| line.strip_prefix("data:"))
                .unwrap_or_else(|| panic!("not an SSE data line: {line:?}"));
            data.push(payload.to_string());
        }
        if !data.is_empty() {
            out.push(data.join("\n"));
        }
    }
    assert!(
        text.ends_with("\n\n"),
        "the stream ends with a complete event"
    );
    out
}
