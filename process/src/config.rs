//! Configuration with the precedence every rdd binary documents in `--help`: built-in defaults,
//! then a YAML file (`--config` or `RDD_CONFIG`), then `RDD_*` environment variables; the binary
//! merges its flags on top.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Yaml};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ProcessError;

/// The figment for `defaults` + file + environment, for binaries that add flags on top.
pub fn figment<T: Serialize>(defaults: &T, file: Option<&Path>) -> Result<Figment, ProcessError> {
    let mut f = Figment::from(Serialized::defaults(defaults));
    let file = file
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("RDD_CONFIG").map(PathBuf::from));
    if let Some(path) = file {
        // A named file that is missing is a mistake, not an empty configuration.
        if !path.exists() {
            return Err(ProcessError::Config(format!(
                "config file {} does not exist",
                path.display()
            )));
        }
        f = f.merge(Yaml::file(path));
    }
    Ok(f.merge(Env::prefixed("RDD_").ignore(&["config", "instance"])))
}

/// Load `T` from defaults, file and environment.
pub fn load<T: Serialize + DeserializeOwned + Default>(
    file: Option<&Path>,
) -> Result<T, ProcessError> {
    figment(&T::default(), file)?
        .extract()
        .map_err(|e| ProcessError::Config(e.to_string()))
}

/// Extract from a figment with flags already merged.
pub fn extract<T: DeserializeOwned>(f: Figment) -> Result<T, ProcessError> {
    f.extract().map_err(|e| ProcessError::Config(e.to_string()))
}
