//! `--config FILE`: YAML with `allowlist:` and `denylist:` lists of rule
//! strings. Other keys (the reference implementation's `log_level`,
//! `proxy_port` and so on, or a typo) are ignored and reported, so that a
//! reference config file still loads and a typo does not pass unnoticed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why the config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// It cannot be read.
    #[error("reading the config file {path}", path = path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// It is not the expected YAML.
    #[error("the config file {path} is not valid: {reason}", path = path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with the line and column).
        reason: String,
    },
}

/// The parts of a config file `warden boundary` uses.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ConfigFile {
    /// Allow rules, in order.
    pub allowlist: Vec<String>,
    /// Deny rules, in order.
    pub denylist: Vec<String>,
    /// Top-level keys that were ignored, sorted.
    pub ignored_keys: Vec<String>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    allowlist: Option<Vec<String>>,
    #[serde(default)]
    denylist: Option<Vec<String>>,
    #[serde(flatten)]
    other: BTreeMap<String, serde::de::IgnoredAny>,
}

impl ConfigFile {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<ConfigFile, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        ConfigFile::parse(&text).map_err(|reason| ConfigFileError::Parse {
            path: path.to_owned(),
            reason,
        })
    }

    /// Parses the text of a config file.
    pub fn parse(text: &str) -> Result<ConfigFile, String> {
        // An empty file (or one with only comments) is an empty policy.
        if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            return Ok(ConfigFile::default());
        }
        let raw: Raw = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        Ok(ConfigFile {
            allowlist: raw.allowlist.unwrap_or_default(),
            denylist: raw.denylist.unwrap_or_default(),
            ignored_keys: raw.other.into_keys().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_lists_in_order_and_other_keys_reported() {
        let file = ConfigFile::parse(
            "# policy\nallowlist:\n  - domain=github.com\n  - \"domain=*.github.com method=GET,HEAD\"\n\
             denylist:            # extension\n  - domain=gist.github.com\nlog_level: warn\n",
        )
        .unwrap();
        assert_eq!(
            file.allowlist,
            ["domain=github.com", "domain=*.github.com method=GET,HEAD"]
        );
        assert_eq!(file.denylist, ["domain=gist.github.com"]);
        assert_eq!(file.ignored_keys, ["log_level"]);
    }

    #[test]
    fn empty_and_partial_files() {
        assert_eq!(ConfigFile::parse("").unwrap(), ConfigFile::default());
        assert_eq!(
            ConfigFile::parse("# nothing\n\n").unwrap(),
            ConfigFile::default()
        );
        let file = ConfigFile::parse("denylist: [domain=a.io]").unwrap();
        assert_eq!(file.denylist, ["domain=a.io"]);
        assert!(file.allowlist.is_empty());
    }

    #[test]
    fn the_wrong_shapes_are_errors_with_a_position() {
        for bad in [
            "allowlist: domain=github.com",
            "allowlist:\n  - domain: github.com\n",
            "allowlist: [unclosed",
            "- just a list",
        ] {
            let error = ConfigFile::parse(bad).unwrap_err();
            assert!(!error.is_empty(), "{bad:?}");
        }
    }
}
