use std::path::{Path, PathBuf};

use super::Config;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the config file: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    parse_str(&text, &path.display().to_string())
}

pub fn parse_str(text: &str, _origin: &str) -> Result<Config, ConfigError> {
    serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))
}
