//! Who may do what: bearer tokens with a name and a role, from `--token` /
//! `--producer-token` and an optional tokens file (TOML) reloaded on SIGHUP, so every wall
//! and producer has its own revocable token and the log names who connected.
//!
//! ```toml
//! [[token]]
//! name = "wall-hall-1"
//! role = "viewer"        # viewer | operator | producer
//! token = "6f1c…"
//! ```

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::Deserialize;

use super::http::constant_time_eq;

/// What a token lets its holder do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read the feed.
    Viewer,
    /// Read the feed and act (commands).
    Operator,
    /// Publish events (`POST /v1/events`).
    Producer,
}

impl Role {
    pub fn may_read_feed(self) -> bool {
        matches!(self, Role::Viewer | Role::Operator)
    }
}

/// A token's holder, as the log names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub name: String,
    pub role: Role,
}

#[derive(Clone, Debug, Deserialize)]
struct Entry {
    name: String,
    role: Role,
    token: String,
}

#[derive(Debug, Deserialize)]
struct File {
    #[serde(default)]
    token: Vec<Entry>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("cannot read tokens file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("tokens file {path}: {what}")]
    Bad { path: String, what: String },
}

/// Every token the gateway knows.
#[derive(Debug, Default)]
pub struct Tokens {
    fixed: Vec<Entry>,
    file: Option<PathBuf>,
    from_file: RwLock<Vec<Entry>>,
}

impl Tokens {
    /// The tokens of the flags: `viewer` (may be empty: none) and `producers`.
    pub fn new(viewer: &str, producers: &[String]) -> Self {
        let mut fixed = Vec::new();
        if !viewer.trim().is_empty() {
            fixed.push(Entry {
                name: "--token".into(),
                role: Role::Viewer,
                token: viewer.to_owned(),
            });
        }
        for (i, p) in producers
            .iter()
            .filter(|p| !p.trim().is_empty())
            .enumerate()
        {
            fixed.push(Entry {
                name: format!("--producer-token #{}", i + 1),
                role: Role::Producer,
                token: p.clone(),
            });
        }
        Self {
            fixed,
            file: None,
            from_file: RwLock::new(Vec::new()),
        }
    }

    /// One token, named `name`, with `role` (the embedded gateway's own wall).
    pub fn single(name: &str, role: Role, token: &str) -> Self {
        Self {
            fixed: vec![Entry {
                name: name.to_owned(),
                role,
                token: token.to_owned(),
            }],
            file: None,
            from_file: RwLock::new(Vec::new()),
        }
    }

    /// Also the tokens in `path` (read now; [`Tokens::reload`] reads it again).
    pub fn with_file(mut self, path: &Path) -> Result<Self, TokensError> {
        self.file = Some(path.to_owned());
        self.reload()?;
        Ok(self)
    }

    /// Read the tokens file again. On error the tokens in force stay as they were.
    pub fn reload(&self) -> Result<usize, TokensError> {
        let Some(path) = &self.file else {
            return Ok(0);
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: shown.clone(),
            source,
        })?;
        let file: File = toml::from_str(&text).map_err(|e| TokensError::Bad {
            path: shown.clone(),
            what: e.to_string(),
        })?;
        for e in &file.token {
            if e.token.len() < 16 {
                return Err(TokensError::Bad {
                    path: shown,
                    what: format!(
                        "token of {:?} is shorter than 16 characters; use e.g. `openssl rand -hex 16`",
                        e.name
                    ),
                });
            }
        }
        let n = file.token.len();
        *self.from_file.write().unwrap_or_else(|p| p.into_inner()) = file.token;
        Ok(n)
    }

    /// Who presents `token`, compared in constant time against every known token.
    pub fn lookup(&self, token: &str) -> Option<Access> {
        let from_file = self.from_file.read().unwrap_or_else(|p| p.into_inner());
        let mut found = None;
        for e in self.fixed.iter().chain(from_file.iter()) {
            if constant_time_eq(e.token.as_bytes(), token.as_bytes()) && found.is_none() {
                found = Some(Access {
                    name: e.name.clone(),
                    role: e.role,
                });
            }
        }
        found
    }

    /// Whether any token may read the feed (a gateway without one serves nobody).
    pub fn any_reader(&self) -> bool {
        let from_file = self.from_file.read().unwrap_or_else(|p| p.into_inner());
        self.fixed
            .iter()
            .chain(from_file.iter())
            .any(|e| e.role.may_read_feed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_file_tokens_name_their_holder_and_reload() {
        let dir = std::env::temp_dir().join(format!("datawall-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens.toml");
        std::fs::write(
            &path,
            "[[token]]\nname = \"wall-1\"\nrole = \"viewer\"\ntoken = \"aaaaaaaaaaaaaaaa1\"\n\
             [[token]]\nname = \"duty-desk\"\nrole = \"operator\"\ntoken = \"bbbbbbbbbbbbbbbb2\"\n",
        )
        .unwrap();
        let t = Tokens::new("flag-viewer", &["flag-producer".into()])
            .with_file(&path)
            .unwrap();
        assert_eq!(t.lookup("flag-viewer").unwrap().role, Role::Viewer);
        assert_eq!(t.lookup("flag-producer").unwrap().role, Role::Producer);
        let desk = t.lookup("bbbbbbbbbbbbbbbb2").unwrap();
        assert_eq!(
            (desk.name.as_str(), desk.role),
            ("duty-desk", Role::Operator)
        );
        assert!(
            t.lookup("aaaaaaaaaaaaaaaa").is_none(),
            "a prefix is not a token"
        );
        // Revoke wall-1; a bad file keeps what was in force.
        std::fs::write(
            &path,
            "[[token]]\nname = \"duty-desk\"\nrole = \"operator\"\ntoken = \"bbbbbbbbbbbbbbbb2\"\n",
        )
        .unwrap();
        assert_eq!(t.reload().unwrap(), 1);
        assert!(t.lookup("aaaaaaaaaaaaaaaa1").is_none(), "revoked");
        std::fs::write(&path, "[[token]]\nname = 3\n").unwrap();
        assert!(t.reload().is_err());
        assert!(
            t.lookup("bbbbbbbbbbbbbbbb2").is_some(),
            "kept after a bad reload"
        );
        std::fs::write(
            &path,
            "[[token]]\nname = \"x\"\nrole = \"viewer\"\ntoken = \"short\"\n",
        )
        .unwrap();
        assert!(
            t.reload()
                .unwrap_err()
                .to_string()
                .contains("shorter than 16")
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
