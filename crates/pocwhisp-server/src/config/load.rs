//! Loading: defaults for the environment, then the YAML file, then its `environments:`
//! section for the environment, then `POCWHISP_*` variables, then flags; layered by figment,
//! so an error names the key, what was expected and where the value came from.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Yaml};
use figment::value::{Dict, Value};
use serde::Serialize;

use super::redact::{redact_urls, redacted_url};
use super::{Config, Environment};

/// Settings given on the command line, which win over everything else.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    /// `--env`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    /// `--listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--log-format`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<super::LogFormat>,
}

impl Overrides {
    /// The flags as the nested keys they set.
    fn as_dict(&self) -> Dict {
        let mut root = Dict::new();
        let mut put = |section: Option<&str>, key: &str, value: Value| match section {
            None => {
                root.insert(key.to_owned(), value);
            }
            Some(section) => {
                let entry = root
                    .entry(section.to_owned())
                    .or_insert_with(|| Value::from(Dict::new()));
                if let Value::Dict(_, dict) = entry {
                    dict.insert(key.to_owned(), value);
                }
            }
        };
        if let Some(environment) = self.environment {
            put(None, "environment", Value::from(environment.to_string()));
        }
        if let Some(listen) = self.listen {
            put(Some("server"), "listen", Value::from(listen.to_string()));
        }
        if let Some(dir) = &self.data_dir {
            put(
                Some("server"),
                "data_dir",
                Value::from(dir.display().to_string()),
            );
        }
        if let Some(format) = self.log_format {
            let format = match format {
                super::LogFormat::Human => "human",
                super::LogFormat::Json => "json",
            };
            put(Some("log"), "format", Value::from(format));
        }
        root
    }
}

/// Why the configuration cannot be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read or a value could not be parsed; figment's message names
    /// the key, what was expected and the source.
    Load(Box<figment::Error>),
    /// A value of the right type that does not make sense.
    Invalid {
        /// The key, dotted (`server.max_connections`).
        key: String,
        /// What it must be.
        expected: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Load(error) => {
                let mut first = true;
                for error in error.as_ref().clone() {
                    if !first {
                        f.write_str("\n")?;
                    }
                    first = false;
                    write!(f, "{error}")?;
                }
                Ok(())
            }
            ConfigError::Invalid { key, expected } => {
                write!(f, "invalid value for `{key}`: expected {expected}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<figment::Error> for ConfigError {
    fn from(error: figment::Error) -> Self {
        ConfigError::Load(Box::new(error))
    }
}

/// The variables' prefix.
const PREFIX: &str = "POCWHISP_";

/// The `POCWHISP_*` variables other than secrets ([`secret_variables`]): the operator names
/// (`POCWHISP_LISTEN`, `POCWHISP_DATA_DIR`, `POCWHISP_ENGINE`, `POCWHISP_MODELS_DIR`,
/// `POCWHISP_ENV`, `POCWHISP_LOG_FORMAT`), and any key written with `__` between its parts
/// (`POCWHISP_CACHE__TTL=10m`). Any other `POCWHISP_` name is an unknown key, refused like
/// one in the file. figment reads their values as YAML scalars would be (`8` a number,
/// `true` a boolean).
fn environment_variables() -> Env {
    Env::prefixed(PREFIX).filter_map(|key| {
        let key = key_of(key.as_str());
        (!is_secret(&key)).then(|| key.into())
    })
}

/// The secret `POCWHISP_*` variables (`POCWHISP_ADMIN_TOKEN`, `POCWHISP_API_TOKEN`,
/// `POCWHISP_DATABASE_URL`, `POCWHISP_REDIS_URL`, and any other key that names a token, URL,
/// password or key), each taken as the text it is: parsed like the others, the token
/// `0123` would become the number 123, and `true` a boolean.
fn secret_variables() -> Vec<Serialized<String>> {
    std::env::vars_os()
        .filter_map(|(name, value)| {
            // Matched without regard to case, as figment matches the prefix.
            let name = name.to_str()?;
            let prefix = name.get(..PREFIX.len())?;
            let key = key_of(&name[prefix.len()..]);
            if !prefix.eq_ignore_ascii_case(PREFIX) || !is_secret(&key) {
                return None;
            }
            Some(Serialized::default(&key, value.into_string().ok()?))
        })
        .collect()
}

/// The configuration key a variable's name (without the prefix) sets.
fn key_of(name: &str) -> String {
    let name = name.to_ascii_lowercase();
    match name.as_str() {
        "env" => "environment".to_owned(),
        "listen" => "server.listen".to_owned(),
        "data_dir" => "server.data_dir".to_owned(),
        "database_url" => "database.url".to_owned(),
        "redis_url" => "redis.url".to_owned(),
        "admin_token" => "auth.admin_tokens".to_owned(),
        "api_token" => "auth.api_tokens".to_owned(),
        "engine" => "engine.kind".to_owned(),
        "models_dir" => "models.dir".to_owned(),
        "log_format" => "log.format".to_owned(),
        other => other.replace("__", "."),
    }
}

/// Whether `key` holds a secret, whose text must be kept as it is (a list of tokens too,
/// written as one comma-separated text).
fn is_secret(key: &str) -> bool {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    let names = |word: &str| {
        leaf.strip_suffix(word)
            .is_some_and(|rest| rest.is_empty() || rest.ends_with('_'))
    };
    leaf.ends_with("_tokens")
        || ["token", "url", "password", "secret", "api_key"]
            .into_iter()
            .any(names)
}

/// Loads the configuration: `file` (if given), its environment overrides, the `POCWHISP_*`
/// variables and `flags`, over the defaults of the environment chosen (by `--env`,
/// `POCWHISP_ENV`, or `environment:` in the file).
///
/// # Errors
///
/// A [`ConfigError`] naming the first bad key: unknown, of the wrong type, or invalid.
pub fn load(file: Option<&Path>, flags: &Overrides) -> Result<Config, ConfigError> {
    let file_layer = || match file {
        Some(path) => Figment::from(Yaml::file_exact(path)),
        None => Figment::new(),
    };
    // The environment decides the defaults and the overrides, so it is read first.
    let environment: Environment = Figment::from(Serialized::defaults(Config::default()))
        .merge(file_layer())
        .merge(
            Env::prefixed(PREFIX)
                .only(&["env"])
                .map(|_| "environment".into()),
        )
        .merge(Serialized::defaults(flags.as_dict()))
        .extract_inner("environment")?;
    let overrides = file_layer().focus(&format!("environments.{environment}"));
    let config = Figment::from(Serialized::defaults(Config::for_environment(environment)))
        .merge(file_layer())
        .merge(overrides)
        .merge(environment_variables());
    let config: Config = secret_variables()
        .into_iter()
        .fold(config, Figment::merge)
        .merge(Serialized::defaults(flags.as_dict()))
        .extract()?;
    config.validate()?;
    Ok(config)
}

/// The configuration as YAML with every secret masked (the database password too), for
/// `check-config`.
///
/// # Panics
///
/// Never: the configuration is plain data that YAML can represent.
pub fn masked_yaml(config: &Config) -> String {
    // Through JSON's data model, so enums print as the maps the file takes
    // (`key: {identity: ...}`), not as YAML tags.
    let mut value = serde_json::to_value(config).expect("the configuration serializes");
    // Every URL without its password or secret parameters (webhooks, engines); the database
    // and Redis URLs, secrets as a whole, shown so too rather than as `****`.
    redact_urls(&mut value);
    if let Some(url) = config.database.url.as_ref() {
        value["database"]["url"] = serde_json::Value::from(redacted_url(url.expose()));
    }
    if let Some(url) = config.redis.url.as_ref() {
        value["redis"]["url"] = serde_json::Value::from(redacted_url(url.expose()));
    }
    serde_yaml::to_string(&value).expect("the configuration serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogFormat;

    #[test]
    fn secrets_are_told_from_settings_by_their_keys() {
        for name in [
            "API_TOKEN",
            "ADMIN_TOKEN",
            "DATABASE_URL",
            "REDIS_URL",
            "AUTH__API_TOKENS",
        ] {
            assert!(is_secret(&key_of(name)), "{name}");
        }
        for key in [
            "engine.openai.endpoints.api_key",
            "jobs.webhook_secret",
            "a.password",
        ] {
            assert!(is_secret(key), "{key}");
        }
        for name in [
            "CACHE__TTL",
            "REQUEST_POOL__WORKERS",
            "LISTEN",
            "AUTH__TOKENS",
            "ENV",
        ] {
            assert!(!is_secret(&key_of(name)), "{name}");
        }
    }

    fn shipped() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/pocwhisp.yaml")
    }

    #[test]
    fn the_shipped_file_states_the_defaults_of_every_environment() {
        for environment in [
            Environment::Development,
            Environment::Staging,
            Environment::Production,
        ] {
            let flags = Overrides {
                environment: Some(environment),
                ..Overrides::default()
            };
            let mut loaded = load(Some(&shipped()), &flags).unwrap();
            let mut defaults = Config::for_environment(environment);
            // The file turns JSON logs on outside development; that is its one choice.
            if environment != Environment::Development {
                assert_eq!(loaded.log.format, LogFormat::Json);
                defaults.log.format = LogFormat::Json;
            }
            loaded.environments.clear();
            assert_eq!(loaded, defaults, "{environment}");
        }
    }

    #[test]
    fn the_shipped_file_documents_every_key() {
        let text = std::fs::read_to_string(shipped()).unwrap();
        fn keys(value: &serde_json::Value, out: &mut Vec<String>) {
            if let serde_json::Value::Object(map) = value {
                for (key, value) in map {
                    out.push(key.clone());
                    keys(value, out);
                }
            }
        }
        let mut all = Vec::new();
        keys(&serde_json::to_value(Config::default()).unwrap(), &mut all);
        for key in all {
            assert!(
                text.contains(&format!("{key}:")),
                "`{key}` is not in the shipped file"
            );
        }
    }

    #[test]
    fn check_config_prints_no_secret_of_any_url() {
        let mut config = Config::default();
        config.redis.url = Some(crate::config::Secret::new("redis://:hunter2@cache:6379/0"));
        config.redis.key_secret = Some(crate::config::Secret::new("keys-secret"));
        config.database.url = Some(crate::config::Secret::new(
            "postgres://app@db/pocwhisp?sslmode=require&password=pg-secret",
        ));
        config.alerts.webhook_url = Some("https://ops:hook-secret@hooks.example/alert".into());
        let printed = masked_yaml(&config);
        for shown in [
            "redis://:****@cache:6379/0",
            "postgres://app@db/pocwhisp?sslmode=require&password=****",
            "https://ops:****@hooks.example/alert",
        ] {
            assert!(printed.contains(shown), "{shown} in {printed}");
        }
        for secret in ["hunter2", "keys-secret", "pg-secret", "hook-secret"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
    }
}
