//! The recursive-descent parser for filters, PATCH paths and attribute paths/lists.
//!
//! ```text
//! filter   = or EOF
//! or       = and *("or" and)                       ; left-associative
//! and      = unary *("and" unary)                  ; left-associative
//! unary    = "not" "(" or ")" / "(" or ")" / attrExp
//! attrExp  = PATH "pr" / PATH compareOp VALUE / PATH "[" or "]"
//! patch    = PATH [ "[" or "]" [ "." NAME ] ] EOF
//! ```
//!
//! Recursion only happens when a `(`, `not (` or `[` opens a nesting level, and each level
//! is counted against [`Limits::max_depth`] before recursing, so the stack stays bounded
//! whatever the input.

use crate::ast::{AttrPath, CompareOp, Filter, Limits, ParseError, PatchPath};
use crate::lexer::{Kind, Token, tokenize};
use crate::literal::{decode_string, keyword_literal, parse_number};
use crate::path::{split_path, validate_name};

/// Shows a piece of input in an error message: quoted, and cut if long.
pub(crate) fn quote(text: &str) -> String {
    const MAX_CHARS: usize = 32;
    match text.char_indices().nth(MAX_CHARS) {
        Some((i, _)) => format!("{:?}...", text.get(..i).unwrap_or_default()),
        None => format!("{text:?}"),
    }
}

pub(crate) struct Parser<'a> {
    input: &'a str,
    tokens: Vec<Token>,
    next: usize,
    eof: Token,
    limits: Limits,
    depth: usize,
    terms: usize,
}

/// Where a sub-filter is being parsed; decides what may close it and what is allowed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    /// The top level of a filter.
    Top,
    /// Inside a value path's `[...]`: relative paths only, no nested `[`.
    Value,
}

impl<'a> Parser<'a> {
    /// Checks the length budget and tokenizes.
    pub(crate) fn new(input: &'a str, limits: Limits) -> Result<Self, ParseError> {
        if input.len() > limits.max_len {
            return Err(ParseError::new(
                limits.max_len,
                format!(
                    "input exceeds the maximum length of {} bytes",
                    limits.max_len
                ),
            ));
        }
        Ok(Parser {
            input,
            tokens: tokenize(input),
            next: 0,
            eof: Token {
                kind: Kind::Eof,
                start: input.len(),
                end: input.len(),
            },
            limits,
            depth: 0,
            terms: 0,
        })
    }

    fn peek(&self) -> &Token {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> &Token {
        self.tokens
            .get(self.next + ahead)
            .or(self.tokens.last())
            .unwrap_or(&self.eof)
    }

    /// Consumes and returns the next token (never moves past the final Eof/Error token).
    fn bump(&mut self) -> Token {
        let tok = self.peek().clone();
        if self.next + 1 < self.tokens.len() {
            self.next += 1;
        }
        tok
    }

    fn text(&self, tok: &Token) -> &'a str {
        self.input.get(tok.start..tok.end).unwrap_or_default()
    }

    fn is_word(&self, tok: &Token, keyword: &str) -> bool {
        tok.kind == Kind::Word && self.text(tok).eq_ignore_ascii_case(keyword)
    }

    fn describe(&self, tok: &Token) -> String {
        match &tok.kind {
            Kind::Word | Kind::Num => quote(self.text(tok)),
            Kind::Str => "string literal".into(),
            Kind::LParen => "\"(\"".into(),
            Kind::RParen => "\")\"".into(),
            Kind::LBracket => "\"[\"".into(),
            Kind::RBracket => "\"]\"".into(),
            Kind::Dot => "\".\"".into(),
            Kind::Comma => "\",\"".into(),
            Kind::Eof => "end of input".into(),
            Kind::Error(msg) => msg.clone(),
        }
    }

    /// The error for an unexpected token; a lexical error token reports itself.
    fn unexpected(&self, tok: &Token, expected: &str) -> ParseError {
        match &tok.kind {
            Kind::Error(msg) => ParseError::new(tok.start, msg.clone()),
            _ => ParseError::new(
                tok.start,
                format!("expected {expected}, found {}", self.describe(tok)),
            ),
        }
    }

    /// Consumes a token of `kind` or fails with `expected ...`.
    fn expect(&mut self, kind: &Kind, expected: &str) -> Result<Token, ParseError> {
        if &self.peek().kind == kind {
            Ok(self.bump())
        } else {
            Err(self.unexpected(self.peek(), expected))
        }
    }

    fn enter(&mut self, at: usize) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(ParseError::new(
                at,
                format!(
                    "filter nested too deeply (maximum depth {})",
                    self.limits.max_depth
                ),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn count_term(&mut self, at: usize) -> Result<(), ParseError> {
        self.terms += 1;
        if self.terms > self.limits.max_terms {
            return Err(ParseError::new(
                at,
                format!("too many terms (maximum {})", self.limits.max_terms),
            ));
        }
        Ok(())
    }

    /// `filter = or EOF`
    pub(crate) fn filter(&mut self) -> Result<Filter, ParseError> {
        if self.peek().kind == Kind::Eof {
            return Err(ParseError::new(self.peek().start, "empty filter"));
        }
        let f = self.or(Ctx::Top)?;
        self.expect(&Kind::Eof, "\"and\", \"or\" or end of input")?;
        Ok(f)
    }

    fn or(&mut self, ctx: Ctx) -> Result<Filter, ParseError> {
        let mut left = self.and(ctx)?;
        while self.is_word(self.peek(), "or") {
            self.bump();
            let right = self.and(ctx)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, ctx: Ctx) -> Result<Filter, ParseError> {
        let mut left = self.unary(ctx)?;
        while self.is_word(self.peek(), "and") {
            self.bump();
            let right = self.unary(ctx)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, ctx: Ctx) -> Result<Filter, ParseError> {
        let tok = self.peek().clone();
        match tok.kind {
            Kind::LParen => {
                self.enter(tok.start)?;
                self.bump();
                let inner = self.or(ctx)?;
                self.expect(&Kind::RParen, "\"and\", \"or\" or \")\"")?;
                self.leave();
                Ok(inner)
            }
            Kind::Word if self.is_word(&tok, "not") && self.not_is_keyword()? => {
                self.enter(tok.start)?;
                self.bump();
                self.bump(); // the "(" checked by not_is_keyword
                let inner = self.or(ctx)?;
                self.expect(&Kind::RParen, "\"and\", \"or\" or \")\"")?;
                self.leave();
                Ok(Filter::Not(Box::new(inner)))
            }
            Kind::Word => self.attr_exp(ctx),
            _ => Err(self.unexpected(&tok, "attribute path, \"(\" or \"not\"")),
        }
    }

    /// With a `not` word next: true if it is the operator (followed by `(`), false if it
    /// is an attribute named `not` (followed by an operator or `[`).
    fn not_is_keyword(&self) -> Result<bool, ParseError> {
        let after = self.peek_at(1);
        match after.kind {
            Kind::LParen => Ok(true),
            Kind::LBracket => Ok(false),
            Kind::Word
                if self.is_word(after, "pr")
                    || CompareOp::from_keyword(self.text(after)).is_some() =>
            {
                Ok(false)
            }
            _ => Err(self.unexpected(after, "\"(\" after \"not\"")),
        }
    }

    fn path(&mut self, ctx: Ctx) -> Result<(AttrPath, usize), ParseError> {
        let tok = self.expect(&Kind::Word, "attribute path")?;
        let path = split_path(self.text(&tok), tok.start)?;
        if ctx == Ctx::Value && path.urn.is_some() {
            return Err(ParseError::new(
                tok.start,
                "schema URN not allowed inside a value filter (paths there are relative)",
            ));
        }
        Ok((path, tok.start))
    }

    /// `attrExp = PATH "pr" / PATH compareOp VALUE / PATH "[" or "]"`
    fn attr_exp(&mut self, ctx: Ctx) -> Result<Filter, ParseError> {
        let (path, start) = self.path(ctx)?;
        let tok = self.peek().clone();
        if tok.kind == Kind::LBracket {
            let filter = self.bracket_filter(&path, ctx, &tok)?;
            if self.peek().kind == Kind::Dot {
                let dot = self.peek().clone();
                let sub = self.peek_at(1);
                let sub = if sub.kind == Kind::Word {
                    self.text(sub)
                } else {
                    "sub"
                };
                return Err(ParseError::new(
                    dot.start,
                    format!(
                        "a sub-attribute after \"]\" is not allowed in a filter \
                         (write \"{}.{sub} ...\" or \"{}[... and {sub} ...]\" instead)",
                        path.name, path.name
                    ),
                ));
            }
            return Ok(Filter::ValuePath {
                path,
                filter: Box::new(filter),
            });
        }
        if self.is_word(&tok, "pr") {
            self.count_term(start)?;
            self.bump();
            return Ok(Filter::Present { path });
        }
        let op = (tok.kind == Kind::Word)
            .then(|| CompareOp::from_keyword(self.text(&tok)))
            .flatten()
            .ok_or_else(|| self.unexpected(&tok, "comparison operator"))?;
        self.count_term(start)?;
        self.bump();
        let value = self.value()?;
        Ok(Filter::Compare { path, op, value })
    }

    /// Parses `"[" or "]"` after `path`; `open` is the `[` token (not yet consumed).
    fn bracket_filter(
        &mut self,
        path: &AttrPath,
        ctx: Ctx,
        open: &Token,
    ) -> Result<Filter, ParseError> {
        if ctx == Ctx::Value {
            return Err(ParseError::new(
                open.start,
                "nested value filter not allowed inside a value filter",
            ));
        }
        if path.sub.is_some() {
            return Err(ParseError::new(
                open.start,
                "value filter not allowed on a sub-attribute",
            ));
        }
        self.enter(open.start)?;
        self.bump();
        if self.peek().kind == Kind::RBracket {
            return Err(self.unexpected(self.peek(), "value filter"));
        }
        let filter = self.or(Ctx::Value)?;
        self.expect(&Kind::RBracket, "\"and\", \"or\" or \"]\"")?;
        self.leave();
        Ok(filter)
    }

    fn value(&mut self) -> Result<serde_json::Value, ParseError> {
        let tok = self.peek().clone();
        let text = self.text(&tok);
        let value = match tok.kind {
            Kind::Str => decode_string(text, tok.start)?,
            Kind::Num => parse_number(text, tok.start)?,
            Kind::Word => keyword_literal(text).ok_or_else(|| {
                self.unexpected(
                    &tok,
                    "comparison value (string, number, true, false or null)",
                )
            })?,
            _ => {
                return Err(self.unexpected(
                    &tok,
                    "comparison value (string, number, true, false or null)",
                ));
            }
        };
        self.bump();
        Ok(value)
    }

    /// `patch = PATH [ "[" or "]" [ "." NAME ] ] EOF`
    pub(crate) fn patch_path(&mut self) -> Result<PatchPath, ParseError> {
        if self.peek().kind == Kind::Eof {
            return Err(ParseError::new(self.peek().start, "empty path"));
        }
        let (attr, _) = self.path(Ctx::Top)?;
        let tok = self.peek().clone();
        if tok.kind != Kind::LBracket {
            self.expect(&Kind::Eof, "\"[\" or end of input")?;
            return Ok(PatchPath {
                attr,
                filter: None,
                sub: None,
            });
        }
        let filter = self.bracket_filter(&attr, Ctx::Top, &tok)?;
        let mut sub = None;
        if self.peek().kind == Kind::Dot {
            self.bump();
            let name = self.expect(&Kind::Word, "sub-attribute name")?;
            let text = self.text(&name);
            validate_name(text, name.start)?;
            sub = Some(text.to_owned());
            self.expect(&Kind::Eof, "end of input")?;
        } else {
            self.expect(&Kind::Eof, "\".\" or end of input")?;
        }
        Ok(PatchPath {
            attr,
            filter: Some(filter),
            sub,
        })
    }

    /// A single attribute path, then end of input.
    pub(crate) fn attr_path(&mut self) -> Result<AttrPath, ParseError> {
        if self.peek().kind == Kind::Eof {
            return Err(ParseError::new(self.peek().start, "empty attribute path"));
        }
        let (path, _) = self.path(Ctx::Top)?;
        self.expect(&Kind::Eof, "end of input")?;
        Ok(path)
    }

    /// `list = [ PATH *("," PATH) ] EOF`
    pub(crate) fn attr_list(&mut self) -> Result<Vec<AttrPath>, ParseError> {
        let mut list = Vec::new();
        if self.peek().kind == Kind::Eof {
            return Ok(list);
        }
        loop {
            let start = self.peek().start;
            self.count_term(start)?;
            let (path, _) = self.path(Ctx::Top)?;
            list.push(path);
            if self.peek().kind == Kind::Comma {
                self.bump();
            } else {
                self.expect(&Kind::Eof, "\",\" or end of input")?;
                return Ok(list);
            }
        }
    }
}
