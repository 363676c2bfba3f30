//! "Did you mean": the known names nearest to a misspelt one.
//!
//! Nearest means fewest edits, case ignored (`tcp.Dport` is `tcp.dport`), so the suggestion
//! is never a name that a closer one exists for; names equally near are all offered.

/// Levenshtein distance between `a` and `b`, by characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The candidates nearest to `name` within `max` edits (case ignored), in the order given;
/// empty when none is that near.
pub fn nearest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    max: usize,
) -> Vec<&'a str> {
    let name = name.to_lowercase();
    let mut best = (max + 1, Vec::new());
    for c in candidates {
        // Lengths further apart than `max` cannot be near (and a huge name is not
        // compared at all).
        if name.len().abs_diff(c.len()) > max {
            continue;
        }
        let d = edit_distance(&name, &c.to_lowercase());
        if d < best.0 {
            best = (d, vec![c]);
        } else if d == best.0 && !best.1.contains(&c) {
            best.1.push(c);
        }
    }
    best.1
}

/// `` `a` ``, `` `a` or `b` ``, `` `a`, `b` or `c` ``: names to offer in a help line.
pub fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORTS: [&str; 4] = ["tcp.sport", "tcp.dport", "udp.sport", "udp.dport"];

    #[test]
    fn the_nearest_name_wins() {
        assert_eq!(nearest("tcp.dprt", PORTS, 2), ["tcp.dport"]);
        assert_eq!(nearest("tcp.dpor", PORTS, 2), ["tcp.dport"]);
        assert_eq!(nearest("tcp.Dport", PORTS, 2), ["tcp.dport"]);
        assert_eq!(nearest("udp.dprt", PORTS, 2), ["udp.dport"]);
        // Equally near: both are offered, neither is preferred.
        assert_eq!(nearest("tcp.port", PORTS, 2), ["tcp.sport", "tcp.dport"]);
        assert!(nearest("icmp.type", PORTS, 2).is_empty());
    }

    #[test]
    fn help_lines() {
        assert_eq!(one_of(&["a"]), "`a`");
        assert_eq!(one_of(&["a", "b"]), "`a` or `b`");
        assert_eq!(one_of(&["a", "b", "c"]), "`a`, `b` or `c`");
    }
}
