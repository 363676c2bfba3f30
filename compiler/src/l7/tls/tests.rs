//! The TLS stage's MIR verifies and compiles with the DNS callbacks it uses.

use super::*;

#[test]
fn the_hello_verifies_and_compiles() {
    for alpn in [None, Some(3)] {
        hello_compiles(alpn);
    }
}

fn hello_compiles(alpn: Option<u32>) {
    let names = Names::of_filter("f");
    let text = format!("{}\n{}", dns::text(&names), text("f", &names, alpn));
    let m = crate::mir::parse_module(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    if let Err(errs) = crate::mir::verify_module(&m) {
        let all: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        panic!("{}\n{text}", all.join("\n"));
    }
    crate::codegen::compile(&m).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn blocks_are_renumbered_densely() {
    let t = "block0:\n    jump block7\nblock7:\n    br eq v1, 0, block3, block0\nblock3:\n";
    assert_eq!(
        renumber(t),
        "block0:\n    jump block1\nblock1:\n    br eq v1, 0, block2, block0\nblock2:\n"
    );
}

#[test]
fn versions_have_names() {
    assert_eq!(version("tls13"), Some(0x0304));
    assert_eq!(version("TLS12"), Some(0x0303));
    assert_eq!(version("tls1.3"), None);
}

/// A ClientHello as the random tests build them: `exts` are (type, data).
fn hello_bytes(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend([7u8; 32]);
    body.push(0); // session id
    body.extend([0, 2, 0x13, 0x01, 1, 0]);
    let mut e = Vec::new();
    for (ty, data) in exts {
        e.extend(ty.to_be_bytes());
        e.extend((data.len() as u16).to_be_bytes());
        e.extend(data);
    }
    body.extend((e.len() as u16).to_be_bytes());
    body.extend(e);
    let mut hs = vec![1, 0];
    hs.extend((body.len() as u16).to_be_bytes());
    hs.extend(body);
    let mut rec = vec![22, 3, 1];
    rec.extend((hs.len() as u16).to_be_bytes());
    rec.extend(hs);
    rec
}

fn alpn_ext(names: &[&[u8]]) -> (u16, Vec<u8>) {
    let mut l = Vec::new();
    for n in names {
        l.push(n.len() as u8);
        l.extend(*n);
    }
    let mut d = (l.len() as u16).to_be_bytes().to_vec();
    d.extend(l);
    (16, d)
}

fn sni_ext(name: &[u8]) -> (u16, Vec<u8>) {
    let mut d = ((name.len() + 3) as u16).to_be_bytes().to_vec();
    d.push(0);
    d.extend((name.len() as u16).to_be_bytes());
    d.extend(name);
    (0, d)
}

#[test]
fn the_reference_reads_names_versions_and_protocols() {
    let h = hello_bytes(&[
        sni_ext(b"a.Example.com"),
        (43, vec![4, 0x0a, 0x0a, 3, 4]),
        alpn_ext(&[b"h2", b"http/1.1"]),
    ]);
    assert_eq!(
        hello(&h, true),
        Hello::Read {
            version: 0x0304,
            sni: Some(vec![b"a".to_vec(), b"Example".to_vec(), b"com".to_vec()]),
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        }
    );
    // Without ALPN tests the list is not read.
    assert!(matches!(hello(&h, false), Hello::Read { alpn, .. } if alpn.is_empty()));
    // An empty protocol name, a list longer than its extension, 17 protocols.
    for bad in [
        alpn_ext(&[b"h2", b""]),
        (16, vec![0, 9, 2, b'h', b'2']),
        alpn_ext(&[&b"x"[..]; 17]),
    ] {
        let h = hello_bytes(&[sni_ext(b"a.test"), bad]);
        assert_eq!(hello(&h, true), Hello::Incomplete);
        assert!(matches!(hello(&h, false), Hello::Read { .. }));
    }
    // Cut inside the ALPN extension after the name: complete without ALPN tests only.
    let h = hello_bytes(&[sni_ext(b"a.test"), alpn_ext(&[b"h2", b"http/1.1"])]);
    let cut = &h[..h.len() - 3];
    assert_eq!(hello(cut, true), Hello::Incomplete);
    assert!(matches!(
        hello(cut, false),
        Hello::Read { sni: Some(_), .. }
    ));
    assert_eq!(hello(&h[..5], true), Hello::None);
    assert_eq!(hello(b"GET / HTTP/1.1\r\n", true), Hello::None);
}

#[test]
fn alpn_entries_carry_every_test_bit() {
    let sets = [
        AlpnSet {
            protocols: vec![b"h2".to_vec()],
        },
        AlpnSet {
            protocols: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        },
    ];
    let e = alpn_entries(&sets);
    assert_eq!(e.len(), 2);
    let h2 = alpn_key(b"h2").unwrap_or_default();
    assert_eq!(h2.len(), ALPN_KEY);
    let v = e.iter().find(|(k, _)| *k == h2).map(|(_, v)| v.clone());
    assert_eq!(v, Some(3u32.to_le_bytes().to_vec()));
    assert_eq!(alpn_key(&[b'x'; 32]), None);
}
