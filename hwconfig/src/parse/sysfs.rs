//! Single-value sysfs files: numbers, NUMA nodes, hugepage directory names.

use super::ParseError;

/// Parses a trimmed unsigned decimal (`"1500\n"`).
pub fn parse_u64(text: &str) -> Result<u64, ParseError> {
    let t = text.trim();
    t.parse().map_err(|_| ParseError::NotANumber(t.to_owned()))
}

/// Parses a trimmed signed decimal (`"-1\n"`).
pub fn parse_int(text: &str) -> Result<i64, ParseError> {
    let t = text.trim();
    t.parse().map_err(|_| ParseError::NotANumber(t.to_owned()))
}

/// Parses a device's `numa_node` file: `-1` (no affinity) is `None`.
pub fn parse_numa_node(text: &str) -> Result<Option<u32>, ParseError> {
    let v = parse_int(text)?;
    Ok(u32::try_from(v).ok())
}

/// Parses a hugepage size directory name: `hugepages-2048kB` -> `2048` (KiB).
pub fn parse_hugepage_dir_name(name: &str) -> Option<u64> {
    name.strip_prefix("hugepages-")?
        .strip_suffix("kB")?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u64("1500\n"), Ok(1500));
        assert!(parse_u64("-1").is_err());
        assert_eq!(parse_int(" -1\n"), Ok(-1));
        assert_eq!(parse_numa_node("-1\n"), Ok(None));
        assert_eq!(parse_numa_node("1\n"), Ok(Some(1)));
        assert!(parse_numa_node("x").is_err());
    }

    #[test]
    fn hugepage_names() {
        assert_eq!(parse_hugepage_dir_name("hugepages-2048kB"), Some(2048));
        assert_eq!(
            parse_hugepage_dir_name("hugepages-1048576kB"),
            Some(1_048_576)
        );
        assert_eq!(parse_hugepage_dir_name("hugepages-kB"), None);
        assert_eq!(parse_hugepage_dir_name("pages-2048kB"), None);
    }

    proptest! {
        #[test]
        fn never_panic(s in "\\PC*") {
            let _ = parse_u64(&s);
            let _ = parse_int(&s);
            let _ = parse_numa_node(&s);
            let _ = parse_hugepage_dir_name(&s);
        }
    }
}
