//! Comments: the lexer skips them, the formatter and editors need them back.
//!
//! A comment starts at `#` or `//` outside a string and runs to the end of its line,
//! exactly where the lexer's skip rules put it. The formatter checks its own output by
//! lexing it again, so a divergence here could not silently change a program.

use crate::syntax::ast::Span;

/// The spans of every comment in `source` (without the line break), in order.
pub fn comments(source: &str) -> Vec<Span> {
    let bytes = source.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut in_str = false;
    while let Some(&b) = bytes.get(i) {
        if in_str {
            match b {
                b'\\' if bytes.get(i + 1).is_some_and(|&n| n != b'\n') => i += 1,
                b'"' | b'\n' => in_str = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'#' => {
                let end = line_end(bytes, i);
                out.push(i..end);
                i = end;
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                let end = line_end(bytes, i);
                out.push(i..end);
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

fn line_end(bytes: &[u8], from: usize) -> usize {
    bytes
        .get(from..)
        .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
        .map_or(bytes.len(), |n| from + n)
}

#[cfg(test)]
mod tests {
    use super::comments;

    #[test]
    fn finds_comments_outside_strings() {
        let src = "# a\nset s: u8 = { 1 } // b\nconst x = \"#no // no\" # c\n";
        let got: Vec<&str> = comments(src).into_iter().map(|s| &src[s]).collect();
        assert_eq!(got, ["# a", "// b", "# c"]);
    }

    #[test]
    fn escaped_quote_stays_in_string() {
        let src = "const x = \"a\\\"#b\" # c";
        let got: Vec<&str> = comments(src).into_iter().map(|s| &src[s]).collect();
        assert_eq!(got, ["# c"]);
    }
}
