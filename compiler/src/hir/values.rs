//! Set and literal values from text: parsing one element in a set's element type, and the
//! canonical form of address prefixes.

use super::{Ty, Value};

/// One element of a set written as text (a line of a `file("...")` set, a value given to
/// `pol set`), in the set's element type: an integer or `lo..hi` / `lo-hi` range, an
/// address, or an address prefix. The error completes a sentence that starts with the text.
pub fn parse_element(text: &str, elem: Ty) -> Result<Value, String> {
    use std::net::IpAddr;
    if elem.is_int() {
        let max = elem.int_max().unwrap_or(u64::MAX);
        let int = |t: &str| -> Result<u64, String> {
            let v: u64 = t
                .trim()
                .parse()
                .map_err(|_| format!("is not a {elem} value"))?;
            if v > max {
                return Err(format!("does not fit in {elem} (at most {max})"));
            }
            Ok(v)
        };
        let (lo, hi) = match text.split_once("..").or_else(|| text.split_once('-')) {
            Some((a, b)) => (int(a)?, int(b)?),
            None => {
                let v = int(text)?;
                (v, v)
            }
        };
        if lo > hi {
            return Err(format!("is an empty range ({lo} > {hi})"));
        }
        return Ok(Value::Int { lo, hi });
    }
    if elem == Ty::Mac {
        let v = parse_mac(text.trim()).ok_or("is not a MAC address such as 02:00:00:00:00:01")?;
        return Ok(Value::Int { lo: v, hi: v });
    }
    if !elem.is_addr() {
        return Err(format!(
            "cannot be read from a file: sets of {elem} are written inline"
        ));
    }
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (
            a,
            Some(
                p.parse::<u8>()
                    .map_err(|_| format!("has a bad prefix length `{p}`"))?,
            ),
        ),
        None => (text, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| "is not an IPv4 or IPv6 address".to_string())?;
    let (v6, full, bytes) = match ip {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (false, 32, b)
        }
        IpAddr::V6(a) => (true, 128, a.octets()),
    };
    let prefix = prefix.unwrap_or(full);
    if prefix > full {
        return Err(format!("has a prefix longer than {full} bits"));
    }
    match (elem, v6) {
        (Ty::Ip4, true) => return Err("is an IPv6 address in a set of ip4".into()),
        (Ty::Ip6, false) => return Err("is an IPv4 address in a set of ip6".into()),
        (Ty::Ip4 | Ty::Ip6 | Ty::Ip, _) if prefix != full => {
            return Err("is a prefix; declare the set as `cidr` to hold prefixes".into())
        }
        _ => {}
    }
    Ok(net(v6, bytes, prefix))
}

/// A MAC address as the 48-bit integer its six bytes spell (first byte highest): the value
/// a `mac` holds, and the record's MAC slots in host order.
pub fn mac_value(m: &[u8; 6]) -> u64 {
    m.iter().fold(0, |acc, &b| acc << 8 | u64::from(b))
}

/// `02:00:00:00:00:01` (six groups of two hex digits) as its 48-bit value.
pub fn parse_mac(text: &str) -> Option<u64> {
    crate::syntax::lexer::mac(text).map(|m| mac_value(&m))
}

/// A network prefix value in canonical form.
pub fn net(v6: bool, addr: [u8; 16], prefix: u8) -> Value {
    // Canonical form: host bits cleared, so equal prefixes compare equal.
    let mut a = addr;
    let len = if v6 { 16 } else { 4 };
    for (i, byte) in a.iter_mut().enumerate().take(len) {
        let bits = (prefix as usize).saturating_sub(i * 8).min(8);
        *byte &= if bits == 0 { 0 } else { 0xffu8 << (8 - bits) };
    }
    Value::Net {
        v6,
        addr: a,
        prefix,
    }
}
