//! One rule for incomplete L7 messages (issue 13 §4, docs/l7.md *Incomplete messages*):
//! an HTTP request line, a DNS message and a ClientHello that pol cannot read whole, each
//! through BPF_PROG_TEST_RUN under every form of the rule — no `l7 incomplete` line with a
//! drop rule (fail-closed), with pass rules only, `l7 incomplete pass`, `l7 incomplete
//! drop`, and `malformed pass`, which must not change it — on XDP and tc. A complete
//! message beside each shows the filter is not simply dropping everything.

mod common;

use pol_compiler::driver;
use pol_runtime::direct::Object as _;
use pol_runtime::packet::Packet;
use pol_runtime::testrun;

/// One protocol: a test that never holds for the messages below, an incomplete message
/// and a complete one.
struct Proto {
    name: &'static str,
    test: &'static str,
    incomplete: Packet,
    complete: Packet,
}

fn protos() -> Vec<Proto> {
    // DNS: a query header, QDCOUNT 1, then a name cut short in its second label.
    let mut dns_cut = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    dns_cut.extend(b"\x07example\x03co");
    let mut dns_ok = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    dns_ok.extend(b"\x07example\x03com\x00\x00\x01\x00\x01");
    // TLS: a handshake record and a ClientHello header that promise 508 bytes, cut after
    // the random: the server_name extension lies in a segment pol does not see.
    let mut hello_cut = vec![0x16, 3, 1, 0x02, 0x00, 1, 0, 0x01, 0xfc, 3, 3];
    hello_cut.extend([0x5a; 32]);
    // A whole ClientHello without extensions: read, no name.
    let mut hello = vec![1, 0, 0, 0, 3, 3];
    hello.extend([0x5a; 32]);
    hello.extend([0, 0, 2, 0x13, 0x01, 1, 0]);
    let len = (hello.len() - 4) as u32;
    hello[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
    let mut hello_ok = vec![0x16, 3, 1];
    hello_ok.extend((hello.len() as u16).to_be_bytes());
    hello_ok.extend(hello);
    vec![
        Proto {
            name: "http",
            test: "http.path == \"/never\"",
            incomplete: Packet::tcp().dport(80).flags(0x18).payload(b"GE"),
            complete: Packet::tcp()
                .dport(80)
                .flags(0x18)
                .payload(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n"),
        },
        Proto {
            name: "dns",
            test: "dns.qname == \"never.example\"",
            incomplete: Packet::udp().sport(40000).dport(53).payload(&dns_cut),
            complete: Packet::udp().sport(40000).dport(53).payload(&dns_ok),
        },
        Proto {
            name: "tls",
            test: "tls.sni == \"never.example\"",
            incomplete: Packet::tcp().dport(443).flags(0x18).payload(&hello_cut),
            complete: Packet::tcp().dport(443).flags(0x18).payload(&hello_ok),
        },
    ]
}

/// A form of the rule: the filter's extra lines, its L7 rule's verdict, and what the
/// incomplete message must get.
struct Form {
    lines: &'static str,
    verdict: &'static str,
    incomplete: &'static str,
}

const FORMS: [Form; 5] = [
    // Fail-closed for drop rules.
    Form {
        lines: "",
        verdict: "drop",
        incomplete: "drop",
    },
    // Rules that only pass: the rules see no message, the default decides.
    Form {
        lines: "",
        verdict: "pass",
        incomplete: "pass",
    },
    Form {
        lines: "l7 incomplete pass",
        verdict: "drop",
        incomplete: "pass",
    },
    Form {
        lines: "l7 incomplete drop",
        verdict: "pass",
        incomplete: "drop",
    },
    // `malformed` is the L2–L4 parser's: it does not decide L7 messages.
    Form {
        lines: "malformed pass",
        verdict: "drop",
        incomplete: "drop",
    },
];

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn incomplete_messages_follow_one_rule_for_http_dns_and_tls() {
    common::require_kernel();
    let mut runs = 0;
    for p in protos() {
        for form in &FORMS {
            let src = format!(
                "filter fx on xdp(\"eth0\") {{\n    {}\n    {} {}\n    default pass\n}}\n\
                 filter ft on tc(\"eth0\", ingress) {{\n    {}\n    {} {}\n    default pass\n}}\n",
                form.lines, form.verdict, p.test, form.lines, form.verdict, p.test
            );
            let c = driver::compile(&src).unwrap_or_else(|d| {
                panic!(
                    "does not compile:\n{}",
                    pol_compiler::diag::render_all(&d, "incomplete.pol", &src)
                )
            });
            let l = testrun::load(&c).unwrap_or_else(|e| panic!("load: {e}\n{src}"));
            for (i, prog) in ["fx", "ft"].into_iter().enumerate() {
                let hook = &c.hir.filters[i].hook;
                let verdict = |pkt: &Packet| {
                    let bytes = pkt.build().expect("valid packet");
                    let run = l
                        .test_run(prog, &bytes, 1)
                        .unwrap_or_else(|e| panic!("test run: {e}"));
                    testrun::verdict_of(hook, run.retval).map_or("?", driver::verdict_word)
                };
                assert_eq!(
                    verdict(&p.incomplete),
                    form.incomplete,
                    "{} ({prog}): an incomplete message under\n{src}",
                    p.name
                );
                assert_eq!(
                    verdict(&p.complete),
                    "pass",
                    "{} ({prog}): a complete message no rule matches under\n{src}",
                    p.name
                );
                // A dropped incomplete message is counted in the malformed slot (the
                // last), and nowhere else.
                let stats: Vec<u64> = l
                    .map_entries(&format!("{prog}_stats"))
                    .unwrap_or_else(|e| panic!("stats: {e}"))
                    .iter()
                    .map(|(_, v)| u64::from_le_bytes(v.as_slice().try_into().expect("u64")))
                    .collect();
                let malformed = stats.last().copied().unwrap_or(0);
                assert_eq!(
                    malformed,
                    u64::from(form.incomplete == "drop"),
                    "{} ({prog}): malformed slot in {stats:?} under\n{src}",
                    p.name
                );
                runs += 2;
            }
        }
    }
    assert_eq!(runs, 3 * FORMS.len() * 4);
}
