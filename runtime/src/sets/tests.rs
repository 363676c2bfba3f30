//! Set tests: the maps the compiler made for sets, and values encoded as it encodes them.

use super::*;

fn compiled(src: &str) -> Compiled {
    match pol_compiler::driver::compile(src) {
        Ok(c) => c,
        Err(d) => panic!("does not compile: {d:?}"),
    }
}

const SRC: &str = "set big: cidr = { 10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4, 10.0.0.5, \
    10.0.0.6, 10.0.0.7, 10.0.0.8, 10.0.0.9 }\n\
    set nets: cidr = { 10.1.0.0/16, 10.2.0.0/16, 10.3.0.0/16, 10.4.0.0/16, 10.5.0.0/16, \
    10.6.0.0/16, 10.7.0.0/16, 10.8.0.0/16, 2001:db8::/32 }\n\
    set ports: port = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 100..200 }\n\
    set small: cidr = { 10.0.0.1 }\n\
    set unused: port = { 1, 2, 3, 4, 5, 6, 7, 8, 9 }\n\
    filter f on xdp(\"lo\") {\n    drop ip.src in big\n    drop ip.dst in nets\n    \
    drop tcp.dport in ports\n    drop ip.src in small\n    default pass\n}\n";

#[test]
fn finds_the_maps_of_sets_and_explains_the_rest() {
    let c = compiled(SRC);
    let big = lookup(&c, "f.pol", "big").expect("big");
    assert_eq!(big.maps.len(), 1);
    assert_eq!(
        big.maps[0].kind,
        SetMapKind::Addr {
            v6: false,
            lpm: false
        }
    );
    assert_eq!(big.maps[0].max_entries, 9 + 64);
    let nets = lookup(&c, "f.pol", "nets").expect("nets");
    assert_eq!(nets.maps.len(), 2);
    let ports = lookup(&c, "f.pol", "ports").expect("ports");
    assert_eq!(ports.maps[0].kind, SetMapKind::Int { size: 2 });
    assert_eq!(ports.ranges, 1);
    let e = lookup(&c, "f.pol", "bigg")
        .expect_err("unknown")
        .to_string();
    assert!(e.contains("did you mean `big`?"), "{e}");
    let e = lookup(&c, "f.pol", "small")
        .expect_err("inline")
        .to_string();
    assert!(e.contains("1 element,") && e.contains("more than 8"), "{e}");
    let e = lookup(&c, "f.pol", "unused")
        .expect_err("unused")
        .to_string();
    assert!(e.contains("not used by any filter"), "{e}");
    assert_eq!(all_set_maps(&c).len(), 4);
}

#[test]
fn encodes_like_the_compiler() {
    let c = compiled(SRC);
    // Every entry the compiler wrote decodes and re-encodes to the same key.
    for name in ["big", "nets", "ports"] {
        let s = lookup(&c, "f.pol", name).expect("set");
        for (i, m) in s.maps.iter().enumerate() {
            let def = c
                .maps
                .iter()
                .find(|d| d.spec.name == m.name)
                .expect("map def");
            for (k, v) in &def.entries {
                assert_eq!(v, &vec![PRESENT]);
                let val = decode(m.kind, k).expect("decodes");
                assert_eq!(encode(&s, &val).expect("encodes"), vec![(i, k.clone())]);
            }
        }
    }
}

#[test]
fn values_of_the_wrong_kind_are_refused() {
    let c = compiled(SRC);
    let big = lookup(&c, "f.pol", "big").expect("big");
    let v = parse_value("192.0.2.0/24", Ty::Cidr).expect("parses");
    let e = encode(&big, &v).expect_err("prefix").to_string();
    assert!(e.contains("cannot hold the prefix `192.0.2.0/24`"), "{e}");
    let v = parse_value("2001:db8::1", Ty::Cidr).expect("parses");
    let e = encode(&big, &v).expect_err("family").to_string();
    assert!(e.contains("has no IPv6 map"), "{e}");
    let v = parse_value("192.0.2.77/24", Ty::Cidr).expect("parses");
    assert_eq!(show(&v), "192.0.2.0/24");
    assert!(parse_value("300000", Ty::Port).is_err());
    assert!(parse_value("nope", Ty::Cidr).is_err());
    assert!(parse_value("10.0.0.0/8", Ty::Ip).is_err());
    assert!(parse_value("::1", Ty::Ip4).is_err());
    let ports = lookup(&c, "f.pol", "ports").expect("ports");
    let r = parse_value("5..6", Ty::Port).expect("range");
    assert!(encode(&ports, &r).is_err());
    let v = parse_value("2001:db8:1::/48", Ty::Cidr).expect("parses");
    let nets = lookup(&c, "f.pol", "nets").expect("nets");
    let keys = encode(&nets, &v).expect("encodes");
    assert_eq!(keys[0].1[..4], 48u32.to_le_bytes());
    assert_eq!(
        show(&decode(nets.maps[keys[0].0].kind, &keys[0].1).expect("dec")),
        "2001:db8:1::/48"
    );
}
