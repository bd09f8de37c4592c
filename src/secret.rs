//! Secrets: read from the environment or a mounted file, never from flags,
//! and never printed.
//!
//! A command line is readable by every user of the machine (`ps`, `/proc`),
//! so secrets come only from `NAME` or `NAME_FILE` (the path of a file holding
//! the secret, as container orchestrators mount them). [`Secret`] keeps the
//! value out of `Debug` and `Display`, so a config struct that holds one can
//! be logged whole.

// Part of the library a login service embeds: every public item says what it is.
#![warn(missing_docs)]

use std::fmt;
use std::path::Path;

use anyhow::Context;

/// A secret value. Formatting it prints `***`; [`Secret::expose`] is the one
/// way to the value, so every use is easy to find.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`; it shows as `***` from now on.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for comparing or sending; never for logging.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("***")
    }
}

/// Reads the secret named `var` from the process environment: `var` itself,
/// or the file named by `var_FILE`. Setting both is an error, since one of
/// them would be silently ignored. Empty values count as unset.
pub fn from_env(var: &str) -> anyhow::Result<Option<Secret>> {
    from_lookup(var, |name| std::env::var(name).ok())
}

/// [`from_env`] over any variable lookup, so tests need not change the
/// process environment.
pub fn from_lookup(
    var: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<Secret>> {
    let file_var = format!("{var}_FILE");
    let direct = lookup(var).filter(|v| !v.is_empty());
    let path = lookup(&file_var).filter(|v| !v.is_empty());
    match (direct, path) {
        (Some(_), Some(_)) => anyhow::bail!("set {var} or {file_var}, not both"),
        (Some(value), None) => Ok(Some(Secret(value))),
        (None, Some(path)) => read_file(&file_var, Path::new(&path)).map(Some),
        (None, None) => Ok(None),
    }
}

/// Reads a secret file. One trailing line break is dropped, since files
/// written by `echo` or editors end with one; the error names the file and
/// the variable, never the content.
fn read_file(file_var: &str, path: &Path) -> anyhow::Result<Secret> {
    let raw = std::fs::read_to_string(path)
        .with_context(|| format!("reading {file_var} ({})", path.display()))?;
    let value = raw
        .strip_suffix("\r\n")
        .or_else(|| raw.strip_suffix('\n'))
        .unwrap_or(&raw);
    anyhow::ensure!(
        !value.is_empty(),
        "{file_var} ({}) is empty",
        path.display()
    );
    Ok(Secret(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn a_secret_comes_from_the_variable_or_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-a-file-0123456789\n").unwrap();
        let path = file.to_str().unwrap();

        let direct = from_lookup("T", lookup(&[("T", "direct")])).unwrap();
        assert_eq!(direct.unwrap().expose(), "direct");
        let filed = from_lookup("T", lookup(&[("T_FILE", path)])).unwrap();
        assert_eq!(filed.unwrap().expose(), "from-a-file-0123456789");
        assert_eq!(from_lookup("T", lookup(&[("T", "")])).unwrap(), None);
    }

    #[test]
    fn both_forms_or_a_missing_file_are_errors_that_never_show_the_secret() {
        let e = from_lookup("T", lookup(&[("T", "s3cret"), ("T_FILE", "/x")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not both") && !e.contains("s3cret"), "{e}");
        let e = from_lookup("T", lookup(&[("T_FILE", "/nonexistent/token")])).unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/token"), "{e:#}");
    }

    #[test]
    fn formatting_a_secret_hides_it() {
        let s = Secret::new("s3cret");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
    }
}
