//! `mongate check`: site configurations and the organisation's PFO instance,
//! checked alone and against each other, every problem reported as one line
//! `file:line:column: field: reason` (a [`ConfigError`]).
//!
//! - Each site file: every problem of [`Config::check_toml_str`] (values,
//!   references, overlapping prefixes, a gateway address listed by two
//!   peers or equal to one of our uplinks' addresses, ...).
//! - The instance: every problem of [`Instance::check`], at the line of its
//!   JSON field (found by [`json_paths`]); a file that is not JSON of the
//!   instance's shape at serde's line and column.
//! - Site file vs instance: a class or flow in one and not in the other, a
//!   flow of another class (what `mongate-control run` would refuse at
//!   start, `run::SiteMap`).
//! - Several site files: the same VNI, classes and flows everywhere; each
//!   peer entry agrees with that site's own file (its LAN prefixes, its
//!   gateway addresses among that site's uplink addresses).
//!
//! Nothing here panics on any input (the fuzz-like table of
//! `control/tests/check.rs`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use mongate_dataplane::config::{Config, ConfigError, EntryLines};

use crate::pfo::{Instance, InstanceFile};

/// The result of a check: every problem, and a line per file that passed.
#[derive(Debug, Default)]
pub struct Report {
    /// Every problem, one line each, by file then position.
    pub problems: Vec<ConfigError>,
    /// `file: ok (...)` for each file without a problem of its own.
    pub ok: Vec<String>,
}

/// A configuration read for the cross-file checks.
struct Site {
    file: String,
    config: Config,
    lines: EntryLines,
}

/// Checks the site files `configs` and the instance `instance` (either may
/// be empty), alone and against each other.
pub fn check_files(configs: &[PathBuf], instance: Option<&Path>) -> Report {
    let mut r = Report::default();
    let mut sites = Vec::new();
    for path in configs {
        let file = path.display().to_string();
        match std::fs::read_to_string(path) {
            Err(e) => r.problems.push(whole_file(&file, &e.to_string())),
            Ok(text) => match Config::check_toml_str(&text, &file) {
                Err(v) => r.problems.extend(v),
                Ok(config) => {
                    r.ok.push(format!(
                        "{file}: ok (site {}: {} uplinks, {} peers, {} classes, {} flows)",
                        config.site.name,
                        config.uplinks.len(),
                        config.peers.len(),
                        config.classes.len(),
                        config.flows.len()
                    ));
                    let lines = Config::entry_lines(&text).unwrap_or_default();
                    sites.push(Site {
                        file,
                        config,
                        lines,
                    });
                }
            },
        }
    }
    let inst = instance.and_then(|path| {
        let file = path.display().to_string();
        match std::fs::read_to_string(path) {
            Err(e) => {
                r.problems.push(whole_file(&file, &e.to_string()));
                None
            }
            Ok(text) => match check_instance_str(&text, &file) {
                Err(v) => {
                    r.problems.extend(v);
                    None
                }
                Ok(i) => {
                    r.ok.push(format!(
                        "{file}: ok ({} links, {} classes, {} flows)",
                        i.links.len(),
                        i.classes.len(),
                        i.flows.len()
                    ));
                    Some((file, text, i))
                }
            },
        }
    });
    if let Some((file, text, i)) = &inst {
        let paths = json_paths(text);
        for s in &sites {
            r.problems
                .extend(site_vs_instance(s, file, text, &paths, i));
        }
    }
    r.problems.extend(sites_vs_each_other(&sites));
    r.problems
        .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    r
}

fn whole_file(file: &str, message: &str) -> ConfigError {
    ConfigError {
        file: file.to_owned(),
        line: 0,
        column: 0,
        field: "(file)".to_owned(),
        message: message.to_owned(),
    }
}

/// Parses and validates an instance's text, reporting every problem at the
/// line of its field.
pub fn check_instance_str(text: &str, file: &str) -> Result<Instance, Vec<ConfigError>> {
    let parsed: InstanceFile = match serde_json::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            let offset = offset_of_line_col(text, e.line(), e.column());
            let message = strip_position(&e.to_string());
            let field = json_field_at(text, offset.saturating_sub(1), &message);
            return Err(vec![ConfigError {
                file: file.to_owned(),
                line: e.line(),
                column: e.column(),
                field: if field.is_empty() {
                    "(top level)".to_owned()
                } else {
                    field
                },
                message,
            }]);
        }
    };
    Instance::check(&parsed).map_err(|v| {
        let paths = json_paths(text);
        v.into_iter()
            .map(|p| {
                at_json(
                    file,
                    text,
                    &paths,
                    &p.field,
                    format!("{}: {}", p.entry, p.reason),
                )
            })
            .collect()
    })
}

/// serde_json's message without its " at line L column C" (the line and
/// column are ours).
fn strip_position(m: &str) -> String {
    match m.rfind(" at line ") {
        Some(i) => m[..i].to_owned(),
        None => m.to_owned(),
    }
}

/// A problem at the JSON field `field` of `text`.
fn at_json(
    file: &str,
    text: &str,
    paths: &HashMap<String, usize>,
    field: &str,
    message: String,
) -> ConfigError {
    let (line, column) = paths.get(field).map_or((0, 0), |&o| line_col(text, o));
    ConfigError {
        file: file.to_owned(),
        line,
        column,
        field: field.to_owned(),
        message,
    }
}

/// 1-based (line, column) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = before.len()
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1)
        + 1;
    (line, col)
}

/// Byte offset of a 1-based (line, column) (clamped to the text).
fn offset_of_line_col(text: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return (offset + column.saturating_sub(1)).min(text.len());
        }
        offset += l.len();
    }
    text.len()
}

/// The byte offset of every value of a JSON text by its path (`links`,
/// `links[0]`, `links[0].capacity`, `classes[1].utility.piecewise_linear[2]`).
/// Tolerant: on malformed input it returns what it saw up to there.
pub fn json_paths(text: &str) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    let mut w = Walker {
        b: text.as_bytes(),
        i: 0,
        depth: 0,
    };
    let _ = w.value(String::new(), &mut |p, o, end| {
        if end.is_none() {
            out.entry(p.to_owned()).or_insert(o);
        }
    });
    out
}

/// The field a parse error at `offset` is about: the innermost value that
/// holds the offset (a value still open at a syntax error holds the rest of
/// the text); for serde's "unknown field `k`" and "missing field `k`", that
/// object's `k`. `""` at the top level.
fn json_field_at(text: &str, offset: usize, message: &str) -> String {
    let mut spans: Vec<(String, usize, usize)> = Vec::new();
    let mut w = Walker {
        b: text.as_bytes(),
        i: 0,
        depth: 0,
    };
    let _ = w.value(String::new(), &mut |p, start, end| match end {
        None => spans.push((p.to_owned(), start, usize::MAX)),
        Some(end) => {
            if let Some(s) = spans.iter_mut().rev().find(|s| s.0 == p && s.1 == start) {
                s.2 = end;
            }
        }
    });
    let inner = spans
        .iter()
        .filter(|(_, start, end)| *start <= offset && offset <= *end)
        .max_by_key(|(_, start, _)| *start)
        .map_or((String::new(), 0), |s| (s.0.clone(), s.1));
    // Between the members of an object or array (a syntax error there): the
    // member just before.
    let before = spans
        .iter()
        .filter(|(_, start, end)| *start > inner.1 && *end < offset)
        .max_by_key(|(_, _, end)| *end)
        .map(|s| s.0.clone());
    let inner = inner.0;
    let named = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|pat| {
            let i = message.find(pat)? + pat.len();
            let rest = &message[i..];
            Some(rest[..rest.find('`')?].to_owned())
        });
    match (named, before) {
        (Some(k), _) if inner.is_empty() => k,
        (Some(k), _) => format!("{inner}.{k}"),
        (None, Some(b)) => b,
        (None, None) => inner,
    }
}

/// A minimal JSON scanner (no values built): calls `seen(path, start,
/// None)` as a value starts and `seen(path, start, Some(end))` (the offset
/// of its last byte) once it is read. `None` on malformed input or nesting
/// deeper than 64.
struct Walker<'a> {
    b: &'a [u8],
    i: usize,
    depth: usize,
}

impl Walker<'_> {
    fn ws(&mut self) {
        while self.b.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn string(&mut self) -> Option<String> {
        if self.b.get(self.i) != Some(&b'"') {
            return None;
        }
        self.i += 1;
        let start = self.i;
        loop {
            match self.b.get(self.i)? {
                b'\\' => self.i += 2,
                b'"' => break,
                _ => self.i += 1,
            }
        }
        let s = String::from_utf8_lossy(self.b.get(start..self.i)?).into_owned();
        self.i += 1;
        Some(s)
    }

    fn value(
        &mut self,
        path: String,
        seen: &mut dyn FnMut(&str, usize, Option<usize>),
    ) -> Option<()> {
        self.ws();
        if self.depth > 64 {
            return None;
        }
        let start = self.i;
        seen(&path, start, None);
        match *self.b.get(self.i)? {
            b'{' => {
                self.i += 1;
                self.depth += 1;
                loop {
                    self.ws();
                    if self.b.get(self.i) == Some(&b'}') {
                        self.i += 1;
                        break;
                    }
                    let key = self.string()?;
                    self.ws();
                    if self.b.get(self.i) != Some(&b':') {
                        return None;
                    }
                    self.i += 1;
                    let p = if path.is_empty() {
                        key
                    } else {
                        format!("{path}.{key}")
                    };
                    self.value(p, seen)?;
                    self.ws();
                    match self.b.get(self.i)? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            break;
                        }
                        _ => return None,
                    }
                }
                self.depth -= 1;
            }
            b'[' => {
                self.i += 1;
                self.depth += 1;
                let mut n = 0usize;
                loop {
                    self.ws();
                    if self.b.get(self.i) == Some(&b']') {
                        self.i += 1;
                        break;
                    }
                    self.value(format!("{path}[{n}]"), seen)?;
                    n += 1;
                    self.ws();
                    match self.b.get(self.i)? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            break;
                        }
                        _ => return None,
                    }
                }
                self.depth -= 1;
            }
            b'"' => {
                self.string()?;
            }
            _ => {
                while self
                    .b
                    .get(self.i)
                    .is_some_and(|c| !matches!(c, b',' | b'}' | b']') && !c.is_ascii_whitespace())
                {
                    self.i += 1;
                }
                if self.i == start {
                    return None;
                }
            }
        }
        seen(&path, start, Some(self.i.saturating_sub(1)));
        Some(())
    }
}

/// A site file against the instance: the same class and flow ids, each
/// flow of the same class.
fn site_vs_instance(
    s: &Site,
    ifile: &str,
    itext: &str,
    paths: &HashMap<String, usize>,
    inst: &Instance,
) -> Vec<ConfigError> {
    let itext_at = |field: String, message: String| at_json(ifile, itext, paths, &field, message);
    let mut out = Vec::new();
    let cfg = &s.config;
    let inst_class: HashMap<&str, usize> = inst
        .classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), i))
        .collect();
    let inst_flow: HashMap<&str, usize> = inst
        .flows
        .iter()
        .enumerate()
        .map(|(i, f)| (f.id.as_str(), i))
        .collect();
    for (i, c) in cfg.classes.iter().enumerate() {
        if !inst_class.contains_key(c.id.as_str()) {
            out.push(s.lines.error(
                &s.file,
                &format!("classes[{i}].id"),
                format!("class {:?} is not in the instance {ifile}", c.id),
            ));
        }
    }
    for (j, c) in inst.classes.iter().enumerate() {
        if cfg.class_index(&c.id).is_none() {
            out.push(itext_at(
                format!("classes[{j}].id"),
                format!("class {:?} is not in the site file {}", c.id, s.file),
            ));
        }
    }
    for (i, f) in cfg.flows.iter().enumerate() {
        match inst_flow.get(f.id.as_str()) {
            None => out.push(s.lines.error(
                &s.file,
                &format!("flows[{i}].id"),
                format!("flow {:?} is not in the instance {ifile}", f.id),
            )),
            Some(&k) => {
                let ic = &inst.classes[inst.flows[k].class].id;
                if *ic != f.class {
                    out.push(s.lines.error(
                        &s.file,
                        &format!("flows[{i}].class"),
                        format!(
                            "flow {:?} is of class {:?} here but of {ic:?} in the instance {ifile}",
                            f.id, f.class
                        ),
                    ));
                }
            }
        }
    }
    for (j, f) in inst.flows.iter().enumerate() {
        if cfg.flow_index(&f.id).is_none() {
            out.push(itext_at(
                format!("flows[{j}].id"),
                format!("flow {:?} is not in the site file {}", f.id, s.file),
            ));
        }
    }
    out
}

/// Several site files: the same VNI, classes and flows; each peer entry as
/// that site describes itself.
fn sites_vs_each_other(sites: &[Site]) -> Vec<ConfigError> {
    let mut out = Vec::new();
    let Some(first) = sites.first() else {
        return out;
    };
    let mut by_name: HashMap<&str, &Site> = HashMap::new();
    for s in sites {
        let c = &s.config;
        if let Some(other) = by_name.insert(c.site.name.as_str(), s) {
            out.push(s.lines.error(
                &s.file,
                "site.name",
                format!("site {:?} is also the site of {}", c.site.name, other.file),
            ));
        }
        if c.site.vni != first.config.site.vni {
            out.push(s.lines.error(
                &s.file,
                "site.vni",
                format!(
                    "VNI {} here but {} in {} (one overlay, one VNI)",
                    c.site.vni, first.config.site.vni, first.file
                ),
            ));
        }
        if !std::ptr::eq(s, first) {
            same_classes_and_flows(first, s, &mut out);
        }
    }
    for s in sites {
        for (i, p) in s.config.peers.iter().enumerate() {
            let Some(o) = by_name.get(p.name.as_str()) else {
                continue;
            };
            let theirs: HashSet<_> = o.config.site.lan_prefixes.iter().collect();
            let ours: HashSet<_> = p.prefixes.iter().collect();
            if theirs != ours {
                out.push(s.lines.error(
                    &s.file,
                    &format!("peers[{i}].prefixes[0]"),
                    format!(
                        "peer {:?}'s prefixes differ from its lan_prefixes in {}",
                        p.name, o.file
                    ),
                ));
            }
            let addrs: HashSet<_> = o.config.uplinks.iter().map(|u| u.local_address).collect();
            for (j, g) in p.gateways.iter().enumerate() {
                if !addrs.contains(g) {
                    out.push(s.lines.error(
                        &s.file,
                        &format!("peers[{i}].gateways[{j}]"),
                        format!(
                            "{g} is not a local_address of {:?}'s uplinks in {}",
                            p.name, o.file
                        ),
                    ));
                }
            }
        }
    }
    out
}

/// `b`'s classes and flows are `a`'s (ids, ends, routes).
fn same_classes_and_flows(a: &Site, b: &Site, out: &mut Vec<ConfigError>) {
    let (ca, cb) = (&a.config, &b.config);
    for (i, c) in cb.classes.iter().enumerate() {
        match ca.classes.iter().find(|x| x.id == c.id) {
            None => out.push(b.lines.error(
                &b.file,
                &format!("classes[{i}].id"),
                format!("class {:?} is not in {}", c.id, a.file),
            )),
            Some(x)
                if (x.source.as_str(), x.destination.as_str())
                    != (c.source.as_str(), c.destination.as_str()) =>
            {
                out.push(b.lines.error(
                    &b.file,
                    &format!("classes[{i}].source"),
                    format!(
                        "class {:?} goes {} -> {} here but {} -> {} in {}",
                        c.id, c.source, c.destination, x.source, x.destination, a.file
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    for c in &ca.classes {
        if cb.class_index(&c.id).is_none() {
            out.push(b.lines.error(
                &b.file,
                "site",
                format!("class {:?} of {} is missing here", c.id, a.file),
            ));
        }
    }
    for (i, f) in cb.flows.iter().enumerate() {
        match ca.flows.iter().find(|x| x.id == f.id) {
            None => out.push(b.lines.error(
                &b.file,
                &format!("flows[{i}].id"),
                format!("flow {:?} is not in {}", f.id, a.file),
            )),
            Some(x) if x.route != f.route || x.class != f.class => {
                out.push(b.lines.error(
                    &b.file,
                    &format!("flows[{i}].route"),
                    format!(
                        "flow {:?} is class {:?} route {:?} here but {:?} {:?} in {}",
                        f.id, f.class, f.route, x.class, x.route, a.file
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    for f in &ca.flows {
        if cb.flow_index(&f.id).is_none() {
            out.push(b.lines.error(
                &b.file,
                "site",
                format!("flow {:?} of {} is missing here", f.id, a.file),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths_find_nested_fields() {
        let t = "{\n \"a\": [1, {\"b\": \"x\\\"y\"}],\n \"c\": {\"d\": [[0.0, 1]]}\n}";
        let p = json_paths(t);
        assert_eq!(line_col(t, p["a[1].b"]), (2, 17));
        assert_eq!(line_col(t, p["c.d[0][1]"]).0, 3);
        assert_eq!(json_field_at(t, p["a[1].b"] + 1, ""), "a[1].b");
        assert_eq!(
            json_field_at(t, p["a[1].b"] - 2, "unknown field `z`"),
            "a[1].z"
        );
        // Malformed input: what was seen, no panic.
        for bad in ["", "{", "{\"a\": [1, ", "[[[[", "\"", "{\"a\" 1}", "}"] {
            let _ = json_paths(bad);
            let _ = json_field_at(bad, 3, "missing field `x`");
        }
        let deep = "[".repeat(10_000);
        let _ = json_paths(&deep);
    }
}
