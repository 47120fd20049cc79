//! The lexer shared by filters, PATCH paths, `sortBy` and `attributes` lists.
//!
//! [`tokenize`] turns the whole input into tokens in one linear pass. It never fails: a
//! lexical problem becomes a final [`Kind::Error`] token, so that the parser reports
//! whichever problem comes first in the input. The token list always ends with exactly
//! one [`Kind::Eof`] or [`Kind::Error`] token.

/// What a token is. Its text is `input[start..end]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A run of `[A-Za-z0-9$:._-]` starting with a letter or `$`: an attribute path, an
    /// operator or keyword, or a `true`/`false`/`null` literal.
    Word,
    /// A JSON string literal including its quotes (not yet decoded).
    Str,
    /// A run of `[A-Za-z0-9.+-]` starting with a digit or `-` (not yet validated).
    Num,
    LParen,
    RParen,
    LBracket,
    RBracket,
    /// A `.` that starts a token (only valid after `]` in a PATCH path).
    Dot,
    Comma,
    /// End of input; `start == end == input.len()`.
    Eof,
    /// A lexical error; the message describes it and `start` is its position.
    Error(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) kind: Kind,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'$'
}

fn is_word_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'$' | b':' | b'.' | b'-' | b'_')
}

fn is_num_start(b: u8) -> bool {
    b.is_ascii_digit() || b == b'-'
}

fn is_num_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-')
}

/// Splits `input` into tokens. Linear in the input length.
pub(crate) fn tokenize(input: &str) -> Vec<Token> {
    let bytes = input.as_bytes();
    let mut tokens = Vec::new();
    let mut pos = 0;
    loop {
        while bytes.get(pos).is_some_and(|&b| is_space(b)) {
            pos += 1;
        }
        let Some(&b) = bytes.get(pos) else {
            tokens.push(Token {
                kind: Kind::Eof,
                start: input.len(),
                end: input.len(),
            });
            return tokens;
        };
        let start = pos;
        let kind = match b {
            b'(' => Kind::LParen,
            b')' => Kind::RParen,
            b'[' => Kind::LBracket,
            b']' => Kind::RBracket,
            b'.' => Kind::Dot,
            b',' => Kind::Comma,
            b'"' => match string_end(bytes, start) {
                Some(end) => {
                    tokens.push(Token {
                        kind: Kind::Str,
                        start,
                        end,
                    });
                    pos = end;
                    continue;
                }
                None => {
                    tokens.push(error(start, "unterminated string literal"));
                    return tokens;
                }
            },
            b if is_word_start(b) || is_num_start(b) => {
                let (kind, more): (Kind, fn(u8) -> bool) = if is_word_start(b) {
                    (Kind::Word, is_word_char)
                } else {
                    (Kind::Num, is_num_char)
                };
                pos += 1;
                while bytes.get(pos).is_some_and(|&c| more(c)) {
                    pos += 1;
                }
                tokens.push(Token {
                    kind,
                    start,
                    end: pos,
                });
                continue;
            }
            _ => {
                let found = input
                    .get(start..)
                    .and_then(|rest| rest.chars().next())
                    .unwrap_or(char::REPLACEMENT_CHARACTER);
                tokens.push(error(start, format!("unexpected character {found:?}")));
                return tokens;
            }
        };
        pos += 1;
        tokens.push(Token {
            kind,
            start,
            end: pos,
        });
    }
}

fn error(start: usize, message: impl Into<String>) -> Token {
    Token {
        kind: Kind::Error(message.into()),
        start,
        end: start,
    }
}

/// The end (exclusive) of the string literal whose opening quote is at `start`, or `None`
/// if it is not terminated. Escapes are skipped but not validated here.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        match bytes.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(input: &str) -> Vec<(Kind, &str)> {
        tokenize(input)
            .into_iter()
            .map(|t| {
                let text = input.get(t.start..t.end).unwrap_or("<bad span>");
                (t.kind, text)
            })
            .collect()
    }

    #[test]
    fn tokens() {
        use Kind::*;
        let table: &[(&str, Vec<(Kind, &str)>)] = &[
            ("", vec![(Eof, "")]),
            ("  \t ", vec![(Eof, "")]),
            (
                r#"userName eq "bjensen""#,
                vec![
                    (Word, "userName"),
                    (Word, "eq"),
                    (Str, r#""bjensen""#),
                    (Eof, ""),
                ],
            ),
            (
                r#"emails[type eq "a\"b"].value"#,
                vec![
                    (Word, "emails"),
                    (LBracket, "["),
                    (Word, "type"),
                    (Word, "eq"),
                    (Str, r#""a\"b""#),
                    (RBracket, "]"),
                    (Dot, "."),
                    (Word, "value"),
                    (Eof, ""),
                ],
            ),
            (
                "urn:a:b:2.0:User:x.y gt -1.5e3)",
                vec![
                    (Word, "urn:a:b:2.0:User:x.y"),
                    (Word, "gt"),
                    (Num, "-1.5e3"),
                    (RParen, ")"),
                    (Eof, ""),
                ],
            ),
            (
                "$ref,a ,(not",
                vec![
                    (Word, "$ref"),
                    (Comma, ","),
                    (Word, "a"),
                    (Comma, ","),
                    (LParen, "("),
                    (Word, "not"),
                    (Eof, ""),
                ],
            ),
            (
                "a eq \"x",
                vec![
                    (Word, "a"),
                    (Word, "eq"),
                    (Error("unterminated string literal".into()), ""),
                ],
            ),
            (
                "a \"\\",
                vec![
                    (Word, "a"),
                    (Error("unterminated string literal".into()), ""),
                ],
            ),
            (
                "a é",
                vec![(Word, "a"), (Error("unexpected character 'é'".into()), "")],
            ),
        ];
        for (input, expected) in table {
            assert_eq!(&kinds(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn positions_are_byte_offsets() {
        let toks = tokenize("\"é\" +");
        assert_eq!(toks.len(), 2);
        assert_eq!(toks.first().map(|t| (t.start, t.end)), Some((0, 4)));
        assert_eq!(toks.get(1).map(|t| t.start), Some(5));
    }
}
