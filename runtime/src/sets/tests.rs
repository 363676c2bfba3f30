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

#[test]
fn mac_sets_are_changeable_and_encode_like_the_compiler() {
    let macs: Vec<String> = (1..=9).map(|i| format!("02:00:00:00:00:{i:02x}")).collect();
    let src = format!(
        "set gws: mac = {{ {} }}\nfilter f on xdp(\"lo\") {{\n    drop eth.src in gws\n    default pass\n}}\n",
        macs.join(", ")
    );
    let c = compiled(&src);
    let s = lookup(&c, "f.pol", "gws").expect("a mac set of 9 is a map");
    assert_eq!(s.maps.len(), 1);
    assert_eq!(s.maps[0].name, "gws_u48");
    assert_eq!(s.maps[0].kind, SetMapKind::Int { size: 6 });
    // The compiler's entry for 02:00:00:00:00:03 is the key `encode` makes for it.
    let v = parse_value("02:00:00:00:00:03", s.elem).expect("a MAC");
    let keys = encode(&s, &v).expect("encodes");
    assert_eq!(keys, vec![(0, vec![3, 0, 0, 0, 0, 2])]);
    let map = c
        .maps
        .iter()
        .find(|m| m.spec.name == "gws_u48")
        .expect("map");
    assert!(map.entries.iter().any(|(k, _)| *k == keys[0].1));
    let back = decode(s.maps[0].kind, &keys[0].1).expect("decodes");
    assert_eq!(show_in(&back, s.elem), "02:00:00:00:00:03");
    // Any case in, lower case out; a malformed MAC is a sentence.
    let v = parse_value("0A:BB:CC:DD:EE:FF", s.elem).expect("upper case");
    assert_eq!(show_in(&v, s.elem), "0a:bb:cc:dd:ee:ff");
    let e = parse_value("02:00:00:00:00", s.elem).expect_err("five groups");
    assert!(e.contains("is not a MAC address"), "{e}");
}

#[test]
fn name_sets_are_changeable_and_encode_like_the_compiler() {
    let src = "set bl: dnsname = { \"evil.test\", \"*.ads.test\" }\n\
        set idle: dnsname = { \"x.test\" }\n\
        filter f on xdp(\"lo\") {\n    drop dns.qname in bl\n    \
        drop dns.qname == \"inline.test\"\n    default pass\n}\n";
    let c = compiled(src);
    let s = lookup(&c, "f.pol", "bl").expect("a name set is a map");
    assert_eq!(s.elem, Ty::DnsName);
    assert_eq!(s.maps.len(), 1);
    assert_eq!(s.maps[0].kind, SetMapKind::Name);
    assert_eq!(s.maps[0].max_entries, 2 + 64);
    // Every entry the compiler wrote decodes to its pattern and encodes back.
    let def = c
        .maps
        .iter()
        .find(|m| m.spec.name == "bl")
        .expect("map def");
    let mut shown = Vec::new();
    for (k, _) in &def.entries {
        let m = decode(SetMapKind::Name, k).expect("decodes");
        assert_eq!(encode(&s, &m).expect("encodes"), vec![(0, k.clone())]);
        shown.push(show(&m));
    }
    shown.sort();
    assert_eq!(shown, ["*.ads.test", "evil.test"]);
    let v = parse_value("WWW.Example.COM.", s.elem).expect("a name");
    assert_eq!(show_in(&v, s.elem), "www.example.com");
    let e = parse_value("a*.test", s.elem).expect_err("bad wildcard");
    assert!(e.contains("is not a DNS name pattern"), "{e}");
    let e = lookup(&c, "f.pol", "idle").expect_err("unused").to_string();
    assert!(e.contains("not used by any filter"), "{e}");
    // The inline patterns of a rule are no set; named sets are pinned.
    assert!(lookup(&c, "f.pol", "dns_names1").is_err());
    assert!(all_set_maps(&c).iter().any(|m| m.name == "bl"));
}
