//! Parsing `--database-url`.

use std::path::PathBuf;
use std::str::FromStr;

use crate::StoreError;

/// Which database to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://PATH` (or `sqlite:PATH`): an embedded database file.
    Sqlite(PathBuf),
    /// `postgres://...` or `postgresql://...`, kept whole for the driver.
    Postgres(String),
}

impl FromStr for DatabaseUrl {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(s.to_owned()));
        }
        let path = s
            .strip_prefix("sqlite://")
            .or_else(|| s.strip_prefix("sqlite:"))
            .ok_or_else(|| {
                StoreError::InvalidUrl(format!(
                    "{:?} is neither sqlite://PATH nor postgres://...",
                    redact(s)
                ))
            })?;
        // Query parameters are not supported: the store sets its own pragmas.
        if path.is_empty() || path.contains('?') {
            return Err(StoreError::InvalidUrl(format!(
                "{s:?} needs a file path and no parameters"
            )));
        }
        Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
    }
}

/// The URL without anything that could be a password.
pub(crate) fn redact(s: &str) -> String {
    match s.split_once('@') {
        Some((_, host)) => format!("…@{host}"),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_and_postgres_urls_parse() {
        assert_eq!(
            "sqlite:///var/lib/warden/warden.db"
                .parse::<DatabaseUrl>()
                .unwrap(),
            DatabaseUrl::Sqlite("/var/lib/warden/warden.db".into())
        );
        assert_eq!(
            "sqlite://rel/w.db".parse::<DatabaseUrl>().unwrap(),
            DatabaseUrl::Sqlite("rel/w.db".into())
        );
        assert_eq!(
            "sqlite:w.db".parse::<DatabaseUrl>().unwrap(),
            DatabaseUrl::Sqlite("w.db".into())
        );
        assert!(matches!(
            "postgresql://u:p@h/db".parse::<DatabaseUrl>().unwrap(),
            DatabaseUrl::Postgres(_)
        ));
    }

    #[test]
    fn bad_urls_are_refused_without_leaking_passwords() {
        let err = "mysql://root:hunter2@db/x"
            .parse::<DatabaseUrl>()
            .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!("sqlite://".parse::<DatabaseUrl>().is_err());
        assert!("sqlite://a.db?mode=ro".parse::<DatabaseUrl>().is_err());
    }
}
