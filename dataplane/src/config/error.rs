//! Configuration errors that name the file, the line and the field.

use core::fmt;
use core::ops::Range;

/// A configuration (or plan) file was rejected. `line` and `column` are
/// 1-based; `line == 0` means the error concerns the whole file (e.g. it could
/// not be read). `field` is the dotted path of the offending field, e.g.
/// `flows[2].route` or `uplinks[0].capacity_mbps`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// File name as given to the loader.
    pub file: String,
    /// 1-based line, or 0 for the whole file.
    pub line: usize,
    /// 1-based column (in bytes), or 0.
    pub column: usize,
    /// Dotted path of the field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}: {}", self.file, self.field, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}: {}",
                self.file, self.line, self.column, self.field, self.message
            )
        }
    }
}

/// Maps byte offsets of a source text to line and column numbers.
pub(crate) struct Source<'a> {
    pub(crate) file: &'a str,
    pub(crate) text: &'a str,
}

impl Source<'_> {
    /// 1-based (line, column) of a byte offset (clamped to the text).
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text.as_bytes()[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let col = offset
            - before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1)
            + 1;
        (line, col)
    }

    /// An error at `span` about `field`.
    pub(crate) fn error(
        &self,
        span: &Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = self.line_col(span.start);
        ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        }
    }

    /// Converts a TOML syntax or type error. Its field is guessed from the
    /// text: the innermost `[table]` header above the error plus the key on
    /// the error's line (or the field named in "missing field `x`").
    pub(crate) fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim().to_owned();
        let field = self.field_at(span.start, &message);
        self.error(&span, field, message)
    }

    fn field_at(&self, offset: usize, message: &str) -> String {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or("");
        let line_start = before.rfind('\n').map_or(0, |p| p + 1);
        let line_end = self.text[line_start..]
            .find('\n')
            .map_or(self.text.len(), |p| line_start + p);
        let line = self.text[line_start..line_end].trim();
        let mut table = String::new();
        // The header of the table the offset is in (or the header on this line).
        for l in self.text[..line_end].lines().rev() {
            let l = l.trim();
            if l.starts_with('[') {
                table = l.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
                break;
            }
        }
        let named = ["missing field `", "unknown field `", "duplicate key `"]
            .iter()
            .find_map(|pat| {
                let i = message.find(pat)? + pat.len();
                let rest = &message[i..];
                Some(rest[..rest.find('`')?].to_owned())
            });
        let key = named
            .or_else(|| {
                (!line.starts_with('['))
                    .then(|| line.split_once('=').map(|(k, _)| k.trim().to_owned()))
                    .flatten()
            })
            .filter(|k| !k.is_empty());
        match (table.is_empty(), key) {
            (true, Some(k)) => k,
            (false, Some(k)) => format!("{table}.{k}"),
            (false, None) => table,
            (true, None) => "(top level)".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        let s = Source {
            file: "f.toml",
            text: "a = 1\nbb = 2\n",
        };
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(6), (2, 1));
        assert_eq!(s.line_col(8), (2, 3));
        assert_eq!(s.line_col(1000), (3, 1));
        let e = s.error(&(6..8), "bb", "too big");
        assert_eq!(e.to_string(), "f.toml:2:1: bb: too big");
    }
}
