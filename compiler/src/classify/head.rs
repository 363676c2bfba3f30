//! The classifier's *head*: its first rules tested as straight code before the table walk,
//! when the rules themselves say that headers often match there.
//!
//! A firewall puts its wide rules first (a quarter of fw sources are /0, ports are
//! wildcards or 1024..65535), so most headers match within its first 30-100 rules; a
//! chain of branch-free tests stops there after 1-2 ns a rule, while the walk visits
//! every table whose best rule comes before the match (all of them: each table's best rule
//! is near the top). The head takes the first `K` rules out of the tables and tests them
//! in order ahead of the walk; a match there becomes the best found, and the walk's early
//! stop then ends it at the first table (every table's best rule comes after the head). A
//! miss costs `K` rule tests more.
//!
//! `K` is chosen per rule set from the rules alone: sample headers are drawn inside the
//! rules (as ClassBench's trace generator draws them, [`super::gen::trace`]), each one's
//! first match among the first [`HEAD_MAX`] rules is found, and the `K` (0 or a power of
//! two from 16 to [`HEAD_MAX`]) with the least expected cost under [`RULE_NS`] and
//! [`WALK_NS`] wins. An ACL (exact destinations and ports: headers match deep in the list)
//! gets no head; a firewall gets one.

use super::{gen, Rule};

/// Rules a head holds at most (each is about 10 instructions of code).
pub const HEAD_MAX: usize = 256;
/// What one head rule costs a header that does not match it, ns (bench/polbench classify,
/// session 8: a chain of these tests).
pub const RULE_NS: f64 = 1.5;
/// What the table walk costs a header, ns, on the low side of what the benchmark measured
/// (session 8: 200-280 ns with the harness's 45): a head is chosen only when it clearly pays.
pub const WALK_NS: f64 = 150.0;
/// Sample headers the choice is made on.
pub const SAMPLE: usize = 2000;

/// The head sizes tried.
const SIZES: [usize; 6] = [0, 16, 32, 64, 128, 256];

/// How many of `rules`' first rules to test as code ahead of the tables (0: none), and the
/// expected ns per header of each size tried.
pub fn choose(rules: &[Rule]) -> (usize, Vec<(usize, f64)>) {
    if rules.len() < 2 * SIZES[1] {
        return (0, vec![(0, WALK_NS)]);
    }
    let sample = gen::trace(rules, SAMPLE, 0x4845_4144);
    let window = &rules[..rules.len().min(HEAD_MAX)];
    let firsts: Vec<Option<usize>> = sample
        .iter()
        .map(|h| window.iter().position(|r| r.matches(h)))
        .collect();
    let cost = |k: usize| {
        let total: f64 = firsts
            .iter()
            .map(|m| match m {
                Some(m) if *m < k => RULE_NS * (*m + 1) as f64,
                _ => RULE_NS * k as f64 + WALK_NS,
            })
            .sum();
        total / firsts.len().max(1) as f64
    };
    let costs: Vec<(usize, f64)> = SIZES
        .iter()
        .filter(|&&k| k <= rules.len() / 2)
        .map(|&k| (k, cost(k)))
        .collect();
    let best = costs
        .iter()
        .copied()
        .fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
    (best.0, costs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::gen::Shape;

    /// A firewall's wide rules first pay for a head; an ACL's exact rules do not.
    #[test]
    fn firewalls_get_a_head_and_acls_do_not() {
        let (fw, fw_costs) = choose(&gen::rules(Shape::Fw, 10_000, 1));
        let (acl, acl_costs) = choose(&gen::rules(Shape::Acl, 10_000, 1));
        assert!(fw >= 32, "fw head {fw}: {fw_costs:?}");
        assert_eq!(acl, 0, "acl head {acl}: {acl_costs:?}");
        assert_eq!(choose(&gen::rules(Shape::Fw, 20, 1)).0, 0);
    }
}
