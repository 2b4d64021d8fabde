//! The variables as the process sees them: an env file in docker's `--env-file` format,
//! with the process environment on top.

use super::settings;
use super::{Problem, Problems};
use std::collections::BTreeMap;
use std::path::Path;

/// An error in an env file, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct EnvFileError {
    pub line: usize,
    pub message: String,
}

/// Parses an env file in docker's `--env-file` format.
///
/// `KEY=value` per line; the value is everything after the first `=`, verbatim (quotes are
/// kept, as docker keeps them). Blank lines and lines starting with `#` are skipped. A line
/// with a name and no `=` takes the value from `lookup` (docker takes it from the calling
/// environment) and is skipped when that has none. A trailing `\r` (a file saved on
/// Windows) is removed.
pub fn parse_env_file(
    bytes: &[u8],
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, EnvFileError> {
    let mut out = Vec::new();
    for (idx, raw_line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = idx + 1;
        let line = std::str::from_utf8(raw_line).map_err(|_| EnvFileError {
            line: line_no,
            message: "not valid UTF-8".into(),
        })?;
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (line.trim_end(), None),
        };
        if key.is_empty() {
            return Err(EnvFileError {
                line: line_no,
                message: "no variable name before `=`".into(),
            });
        }
        if key.chars().any(char::is_whitespace) {
            return Err(EnvFileError {
                line: line_no,
                message: format!("variable name {key:?} contains whitespace"),
            });
        }
        match value {
            Some(v) => out.push((key.to_string(), v.to_string())),
            None => {
                if let Some(v) = lookup(key) {
                    out.push((key.to_string(), v));
                }
            }
        }
    }
    Ok(out)
}

/// The merged variables: the env file first, the process environment on top.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// Reads the env file (if any) and the process environment.
    pub fn load(env_file: Option<&Path>) -> Result<Env, Problems> {
        let process: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let mut env = Env::default();
        if let Some(path) = env_file {
            let bytes = std::fs::read(path).map_err(|e| {
                Problems(vec![Problem {
                    var: "--env-file".into(),
                    message: format!("cannot read {}: {e}", path.display()),
                }])
            })?;
            let pairs = parse_env_file(&bytes, |k| std::env::var(k).ok()).map_err(|e| {
                Problems(vec![Problem {
                    var: "--env-file".into(),
                    message: format!("{}: {e}", path.display()),
                }])
            })?;
            env.vars.extend(pairs);
        }
        env.vars.extend(process);
        Ok(env)
    }

    /// Builds an environment from pairs (tests, the demo).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Env {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.vars.insert(key.into(), value.into());
    }

    /// The value of `key`; an empty value counts as unset (as the old script treated it).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Every variable, name and value, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Relay variables that no setting knows: most likely typos.
    pub fn unknown_relay_vars(&self) -> Vec<String> {
        self.vars
            .keys()
            .filter(|k| k.starts_with("RELAY_") && settings::find(k).is_none())
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn env_file_follows_docker_rules() {
        let text = b"# comment\n\nLOGSCALE_HOST=cloud.example.com\r\n  ZOOM_CLIENT_SECRET=a=b#c \nQUOTED=\"x\"\nFROM_ENV\n";
        let pairs = parse_env_file(text, |k| (k == "FROM_ENV").then(|| "v".to_string())).unwrap();
        assert_eq!(
            pairs,
            vec![
                ("LOGSCALE_HOST".into(), "cloud.example.com".into()),
                ("ZOOM_CLIENT_SECRET".into(), "a=b#c ".into()),
                ("QUOTED".into(), "\"x\"".into()),
                ("FROM_ENV".into(), "v".into()),
            ]
        );
    }

    #[test]
    fn env_file_errors_name_the_line() {
        let err = parse_env_file(b"A=1\nBAD KEY=2\n", no_env).unwrap_err();
        assert_eq!(err.line, 2);
        let err = parse_env_file(b"=x\n", no_env).unwrap_err();
        assert_eq!(err.line, 1);
        let err = parse_env_file(b"A=\xff\n", no_env).unwrap_err();
        assert!(err.message.contains("UTF-8"));
    }

    #[test]
    fn process_environment_wins_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env.vars");
        std::fs::write(
            &path,
            "QSS_RELAY_TEST_PRECEDENCE=file\nQSS_RELAY_TEST_ONLY_FILE=file\n",
        )
        .unwrap();
        // SAFETY: this test is the only user of these variable names.
        unsafe { std::env::set_var("QSS_RELAY_TEST_PRECEDENCE", "process") };
        let env = Env::load(Some(&path)).unwrap();
        assert_eq!(env.get("QSS_RELAY_TEST_PRECEDENCE"), Some("process"));
        assert_eq!(env.get("QSS_RELAY_TEST_ONLY_FILE"), Some("file"));
    }

    #[test]
    fn unknown_relay_variables_are_reported() {
        let env = Env::from_pairs([("RELAY_SPOOL_MAXBYTES", "1"), ("RELAY_SPOOL_DIR", "/x")]);
        assert_eq!(
            env.unknown_relay_vars(),
            vec!["RELAY_SPOOL_MAXBYTES".to_string()]
        );
    }
}
