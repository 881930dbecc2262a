//! The one scrubbing function every dead-letter detail passes through.
//!
//! Details travel further than the dead letter's bytes: into listings,
//! logs, the admin API and support tickets. So a detail names the field and
//! the rule, never what the source or the caller sent. Most details are our
//! own templates and carry no input at all; the ones that wrap text written
//! by others — serde's messages quote offending values and unknown names,
//! the database's messages quote values and identifiers — are scrubbed here:
//!
//! - a double-quoted span (`"…"`) is replaced by `"…"` whatever it held;
//! - a backtick span is kept only where serde lists what it expected or names
//!   a missing or duplicate field of ours, and only if it looks like an
//!   identifier; otherwise (an unknown field or variant, an unexpected
//!   integer or character) it becomes `` `…` ``;
//! - personal numbers are masked in every shape: `DDMMYYXXXX`,
//!   `DDMMYY-XXXX` and `DDMMYY XXXX`, and any run of ten or more digits —
//!   except inside a UUID in its canonical form: ids are named in details
//!   and logs by design, and one in forty random UUIDs holds a run of ten
//!   digits that would otherwise be masked into an id nobody can find;
//! - control characters become `?` (a detail must be storable anywhere);
//! - the result is at most [`MAX_DETAIL_CHARS`] characters.

/// The longest detail kept, in characters.
pub const MAX_DETAIL_CHARS: usize = 512;

const MASKED: &str = "…";

/// Scrubs a dead-letter detail (see the module documentation).
pub fn scrub_detail(detail: &str) -> String {
    let spans = mask_spans(detail);
    let numbers = mask_personal_numbers(&spans);
    let mut out = String::with_capacity(numbers.len().min(MAX_DETAIL_CHARS * 4));
    for (i, c) in numbers.chars().enumerate() {
        if i == MAX_DETAIL_CHARS {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { '?' } else { c });
    }
    out
}

/// Whether a backtick span may stay: serde's own names of fields and
/// variants are identifiers.
fn identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 64
}

fn mask_spans(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    // Within one clause, spans after "expected" are serde's lists of our
    // names; spans before it are what was sent.
    let mut after_expected = false;
    while let Some(i) = rest.find(['"', '`']) {
        let (before, at) = rest.split_at(i);
        out.push_str(before);
        if before.contains("expected") {
            after_expected = true;
        }
        if before.contains(['.', ';', ':']) && !before.contains("expected") {
            after_expected = false;
        }
        let quote = at.as_bytes()[0] as char;
        let body = &at[1..];
        // The closing quote; a double-quoted span may escape quotes inside.
        let end = if quote == '"' {
            let mut escaped = false;
            body.char_indices().find_map(|(j, c)| match c {
                '\\' if !escaped => {
                    escaped = true;
                    None
                }
                '"' if !escaped => Some(j),
                _ => {
                    escaped = false;
                    None
                }
            })
        } else {
            body.find('`')
        };
        let (content, next) = match end {
            Some(j) => (&body[..j], &body[j + 1..]),
            None => (body, ""),
        };
        let ours = quote == '`'
            && identifier(content)
            && (after_expected || out.ends_with("missing field ") || out.ends_with("duplicate field "));
        out.push(quote);
        out.push_str(if ours { content } else { MASKED });
        out.push(quote);
        rest = next;
    }
    out.push_str(rest);
    out
}

/// Whether `s` holds what the scrubbing would mask as a personal number:
/// text an operator writes is refused rather than stored with one.
pub fn has_personal_number(s: &str) -> bool {
    mask_personal_numbers(s) != s
}

/// Masks `DDMMYYXXXX`, `DDMMYY-XXXX`, `DDMMYY XXXX` (also with a no-break
/// space or a slash) and any run of ten or more digits.
fn mask_personal_numbers(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut mask = vec![false; chars.len()];
    let digit_run = |from: usize| chars[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let run = digit_run(i);
        if run >= 10 {
            mask[i..i + run].iter_mut().for_each(|m| *m = true);
        } else if run == 6
            && let Some(sep) = chars.get(i + 6)
            && matches!(sep, '-' | ' ' | '\u{a0}' | '/')
            && i + 7 < chars.len()
            && digit_run(i + 7) == 4
        {
            mask[i..i + 11].iter_mut().for_each(|m| *m = true);
            mask[i + 6] = false;
            i += 11;
            continue;
        }
        i += run;
    }
    for (at, _) in chars.iter().enumerate() {
        if is_uuid_at(&chars, at) {
            mask[at..at + UUID_CHARS].iter_mut().for_each(|m| *m = false);
        }
    }
    chars.iter().zip(mask).map(|(c, m)| if m { '*' } else { *c }).collect()
}

const UUID_CHARS: usize = 36;

/// Whether a canonical UUID (8-4-4-4-12 hexadecimal digits) starts at `at`
/// and stands alone (no letter, digit or hyphen right before or after).
fn is_uuid_at(chars: &[char], at: usize) -> bool {
    let Some(span) = chars.get(at..at + UUID_CHARS) else { return false };
    let shape_ok = span.iter().enumerate().all(|(i, c)| match i {
        8 | 13 | 18 | 23 => *c == '-',
        _ => c.is_ascii_hexdigit(),
    });
    let joined = |c: Option<&char>| c.is_some_and(|c| c.is_alphanumeric() || *c == '-');
    shape_ok && !joined(at.checked_sub(1).and_then(|b| chars.get(b))) && !joined(chars.get(at + UUID_CHARS))
}

#[cfg(test)]
mod tests {
    use super::scrub_detail;

    #[test]
    fn personal_numbers_are_masked_in_every_shape() {
        for (input, want) in [
            ("subject 0107851234 refused", "subject ********** refused"),
            ("subject 010785-1234 refused", "subject ******-**** refused"),
            ("subject 010785 1234 refused", "subject ****** **** refused"),
            ("subject 010785\u{a0}1234 refused", "subject ******\u{a0}**** refused"),
            ("urn:oio:cpr-nr:0107851234", "urn:oio:cpr-nr:**********"),
            ("a BorgerID 123456789012", "a BorgerID ************"),
            ("x0107851234y", "x**********y"),
        ] {
            assert_eq!(scrub_detail(input), want, "{input}");
        }
        // What is not a personal number stays: dates, sizes, SQLSTATEs, CVRs.
        for keep in ["2024-01-31", "1048577 bytes is over the limit of 1048576 bytes", "SQLSTATE 23514", "29189420"] {
            assert_eq!(scrub_detail(keep), keep);
        }
    }

    #[test]
    fn ids_are_kept_whole_and_numbers_next_to_them_masked() {
        let id = "6a923f64-5de0-4f39-af28-1a0123456789";
        let six_four = "ab123456-7890-4f39-af28-1a2b3c4d5e6f";
        let detail = format!("held by {id} and {six_four}; 0101801234 and x{id}0101801234");
        let out = scrub_detail(&detail);
        assert!(out.contains(&format!("held by {id} and {six_four};")), "{out}");
        assert!(!out.contains("0101801234"), "a number beside an id is still masked: {out}");
    }

    #[test]
    fn values_sent_by_others_are_not_echoed() {
        let cases = [
            ("data.title: invalid type: string \"Jens Hansen\", expected a string", "Jens Hansen"),
            ("data: unknown field `jens_hansen`, expected one of `title`, `kle`", "jens_hansen"),
            ("data.status: unknown variant `Henlagt`, expected one of `Opstaaet`, `Oplyst`", "Henlagt"),
            ("data.title: invalid type: integer `4711`, expected a string", "4711"),
            ("type \"dk.overblik.0107851234.v1\" is unknown", "dk.overblik"),
            ("invalid input syntax for type uuid: \"secret\\\"still\"", "still"),
            ("a \"quote that never ends with a name", "name"),
        ];
        for (input, secret) in cases {
            let out = scrub_detail(input);
            assert!(!out.contains(secret), "{input} → {out}");
        }
        // serde's lists of what it expected, and our own field names, stay.
        let kept = scrub_detail("data: unknown field `x`, expected one of `title`, `kle`");
        assert_eq!(kept, "data: unknown field `…`, expected one of `title`, `kle`");
        assert_eq!(scrub_detail("data: missing field `title`"), "data: missing field `title`");
    }

    #[test]
    fn details_are_storable_and_bounded() {
        let out = scrub_detail(&format!("a\u{0}b\u{1b}c{}", "x".repeat(2000)));
        assert!(out.starts_with("a?b?c"));
        assert!(!out.chars().any(char::is_control));
        assert_eq!(out.chars().count(), super::MAX_DETAIL_CHARS + 1);
    }
}
