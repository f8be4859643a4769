//! The kernel's cpu-list format: `0-3,8,10-11` (as in
//! `/sys/devices/system/cpu/online`, `isolated`, `smp_affinity_list`).

use super::ParseError;

/// Largest CPU id accepted (the kernel's `NR_CPUS` ceiling is 8192); bounds
/// the work a hostile `0-4294967295` string can cause.
pub const MAX_CPU: u32 = 8191;

/// Parses a cpu list (`0-3,8,10-11`, also the `0-7:2` stride form) into a
/// sorted, deduplicated list of CPU ids. Empty or whitespace-only text is the
/// empty list (that is what `isolated` holds when nothing is isolated).
pub fn parse_cpulist(text: &str) -> Result<Vec<u32>, ParseError> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        // Optional stride suffix: `a-b:step` (kernel bitmap_parselist syntax;
        // the full form is `a-b:used/group`, we accept only a plain step).
        let (range, step) = match part.split_once(':') {
            Some((r, s)) => {
                let step = parse_cpu_id(s)?;
                if step == 0 {
                    return Err(ParseError::NotANumber(part.to_owned()));
                }
                (r, step)
            }
            None => (part, 1),
        };
        match range.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse_cpu_id(a)?, parse_cpu_id(b)?);
                if a > b {
                    return Err(ParseError::BadRange(part.to_owned()));
                }
                cpus.extend((a..=b).step_by(usize::try_from(step).unwrap_or(usize::MAX)));
            }
            None => cpus.push(parse_cpu_id(range)?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

fn parse_cpu_id(s: &str) -> Result<u32, ParseError> {
    let s = s.trim();
    let v: u64 = s
        .parse()
        .map_err(|_| ParseError::NotANumber(s.to_owned()))?;
    match u32::try_from(v) {
        Ok(v) if v <= MAX_CPU => Ok(v),
        _ => Err(ParseError::CpuTooLarge(v)),
    }
}

/// Formats CPU ids as a compact cpu list (`0-3,8,10-11`); the inverse of
/// [`parse_cpulist`] for sorted, deduplicated input (any input is accepted:
/// it is sorted and deduplicated first).
pub fn format_cpulist(cpus: &[u32]) -> String {
    let mut v = cpus.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end + 1 {
            i += 1;
            end = v[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_ranges_and_singles() {
        assert_eq!(
            parse_cpulist("0-3,8,10-11\n").unwrap(),
            vec![0, 1, 2, 3, 8, 10, 11]
        );
        assert_eq!(parse_cpulist("5").unwrap(), vec![5]);
        assert_eq!(parse_cpulist("\n").unwrap(), Vec::<u32>::new());
        assert_eq!(parse_cpulist("").unwrap(), Vec::<u32>::new());
        assert_eq!(parse_cpulist("3,1,1-2").unwrap(), vec![1, 2, 3]);
        assert_eq!(parse_cpulist("0-8:4").unwrap(), vec![0, 4, 8]);
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(parse_cpulist("a"), Err(ParseError::NotANumber(_))));
        assert!(matches!(parse_cpulist("3-1"), Err(ParseError::BadRange(_))));
        assert!(matches!(
            parse_cpulist("0-4294967295"),
            Err(ParseError::CpuTooLarge(_))
        ));
        assert!(matches!(
            parse_cpulist("0-4:0"),
            Err(ParseError::NotANumber(_))
        ));
        assert!(parse_cpulist("1--2").is_err());
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(format_cpulist(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(format_cpulist(&[]), "");
        assert_eq!(format_cpulist(&[7, 7, 1]), "1,7");
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse_cpulist(&s);
        }

        #[test]
        fn never_panics_on_cpulist_like(s in "[0-9,:\\- ]{0,40}") {
            if let Ok(v) = parse_cpulist(&s) {
                prop_assert!(v.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(v.iter().all(|&c| c <= MAX_CPU));
            }
        }

        #[test]
        fn format_then_parse_roundtrips(mut v in proptest::collection::vec(0u32..=MAX_CPU, 0..64)) {
            v.sort_unstable();
            v.dedup();
            prop_assert_eq!(parse_cpulist(&format_cpulist(&v)).unwrap(), v);
        }
    }
}
