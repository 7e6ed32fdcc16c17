//! Embedded schemas. `sqlx::migrate!` would do the same but needs sqlx's
//! `macros` feature, which this workspace keeps off (it wants a database at
//! build time); this is the non-macro form of what it generates.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};

/// One migration: version, description, SQL.
pub(crate) type Step = (i64, &'static str, &'static str);

/// A migrator for these steps, each applied in its own transaction.
pub(crate) fn migrator(steps: &[Step]) -> Migrator {
    Migrator::with_migrations(
        steps
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(sql),
                    false,
                )
            })
            .collect(),
    )
}
