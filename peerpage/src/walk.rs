//! Which files under the published folder are listed: every regular
//! file (symlinks followed while they stay inside the folder), or those
//! matching `--include`, except the index and its manifests.

use std::collections::HashSet;
use std::fs::Metadata;
use std::path::{Path, PathBuf};

use glob::{MatchOptions, Pattern};
use protocol::site::{INDEX_FILE, MANIFEST_DIR};

/// A file to list.
pub struct Found {
    /// Its name under the folder, `/`-separated.
    pub relative: String,
    /// Where it is read.
    pub path: PathBuf,
    /// Its size and modification time (the symlink's target's).
    pub meta: Metadata,
}

/// What `--include` lets through.
pub struct Filter {
    patterns: Vec<(Pattern, bool)>,
}

impl Filter {
    /// From `--include` patterns; none lets every file through.
    pub fn new(globs: &[String]) -> anyhow::Result<Filter> {
        let patterns = globs
            .iter()
            .map(|g| {
                let p = Pattern::new(g)
                    .map_err(|e| anyhow::anyhow!("--include {g:?} is not a pattern: {e}"))?;
                Ok((p, g.contains('/')))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Filter { patterns })
    }

    fn lets_through(&self, relative: &str) -> bool {
        let options = MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        let name = relative.rsplit('/').next().unwrap_or(relative);
        self.patterns.is_empty()
            || self.patterns.iter().any(|(p, whole_path)| {
                if *whole_path {
                    p.matches_with(relative, options)
                } else {
                    p.matches_with(name, options)
                }
            })
    }
}

/// The files under `root` that `filter` lets through, sorted by name, and
/// a message for each entry that cannot be listed.
pub fn files(root: &Path, filter: &Filter) -> anyhow::Result<(Vec<Found>, Vec<String>)> {
    let canonical = root
        .canonicalize()
        .map_err(|e| anyhow::anyhow!("{}: {e}", root.display()))?;
    if !canonical.is_dir() {
        anyhow::bail!("{} is not a folder", root.display());
    }
    let mut walk = Walk {
        root: canonical.clone(),
        filter,
        found: Vec::new(),
        errors: Vec::new(),
        visited: HashSet::from([canonical.clone()]),
    };
    walk.dir(&canonical, "");
    walk.found.sort_by(|a, b| a.relative.cmp(&b.relative));
    Ok((walk.found, walk.errors))
}

struct Walk<'a> {
    root: PathBuf,
    filter: &'a Filter,
    found: Vec<Found>,
    errors: Vec<String>,
    /// Folders entered (canonical), so that symlink loops end.
    visited: HashSet<PathBuf>,
}

impl Walk<'_> {
    fn dir(&mut self, dir: &Path, prefix: &str) {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                return self
                    .errors
                    .push(format!("{prefix}: cannot read the folder: {e}"))
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    self.errors
                        .push(format!("{prefix}: cannot read the folder: {e}"));
                    continue;
                }
            };
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                self.errors.push(format!(
                    "{}: the name is not UTF-8, so no URL path: rename it",
                    path.display()
                ));
                continue;
            };
            let relative = format!("{prefix}{name}");
            if prefix.is_empty() && (name == INDEX_FILE || name == MANIFEST_DIR) {
                continue;
            }
            self.entry(&path, relative);
        }
    }

    fn entry(&mut self, path: &Path, relative: String) {
        let target = match path.canonicalize() {
            Ok(t) => t,
            Err(e) => {
                return self.errors.push(format!(
                    "{relative}: cannot read it (a broken symlink?): {e}"
                ))
            }
        };
        if !target.starts_with(&self.root) {
            return self.errors.push(format!(
                "{relative}: a symlink out of the folder (to {}): only files inside it are \
                 published; copy the file in or remove the link",
                target.display()
            ));
        }
        let meta = match std::fs::metadata(&target) {
            Ok(m) => m,
            Err(e) => return self.errors.push(format!("{relative}: cannot read it: {e}")),
        };
        if meta.is_dir() {
            if self.visited.insert(target.clone()) {
                self.dir(&target, &format!("{relative}/"));
            }
        } else if meta.is_file() && self.filter.lets_through(&relative) {
            self.found.push(Found {
                relative,
                path: target,
                meta,
            });
        }
    }
}
