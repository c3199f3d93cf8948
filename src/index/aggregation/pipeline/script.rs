//! The Painless scripts of `bucket_script` that Grafana's query editor writes: arithmetic
//! over the `buckets_path` variables (`params.var1 * 100 / params.var2`), numbers,
//! `+ - * / %` and parentheses, with an optional `return` and `;`. Painless' number
//! rules are kept: integer literals are Java `int`s (`1 / 2` is 0, wrapping on overflow,
//! `/ by zero` an error), anything with a variable or a decimal is a `double`.
//!
//! Any other script is refused with an error naming it: Lookout runs no Painless.

use std::collections::BTreeMap;

/// The longest script accepted.
pub const MAX_SCRIPT_BYTES: usize = 1024;
/// The deepest nesting of parentheses and signs accepted.
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub enum Expression {
    Int(i32),
    Double(f64),
    Variable(String),
    Negate(Box<Expression>),
    Binary(Box<Expression>, Operator, Box<Expression>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Add,
    Subtract,
    Multiply,
    Divide,
    Remainder,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Number {
    Int(i32),
    Double(f64),
}

impl Number {
    fn as_f64(self) -> f64 {
        match self {
            Number::Int(value) => f64::from(value),
            Number::Double(value) => value,
        }
    }
}

/// Parses `source`; the error says what is wrong and where.
pub fn parse(source: &str) -> Result<Expression, String> {
    if source.len() > MAX_SCRIPT_BYTES {
        return Err(format!("a script is at most {MAX_SCRIPT_BYTES} bytes"));
    }
    let mut body = source.trim();
    body = body.strip_suffix(';').unwrap_or(body).trim_end();
    if let Some(rest) = body.strip_prefix("return")
        && rest.starts_with(|c: char| c.is_whitespace() || c == '(')
    {
        body = rest.trim_start();
    }
    let tokens = tokenize(body)?;
    let mut parser = Parser {
        tokens: &tokens,
        position: 0,
        depth: 0,
    };
    let expression = parser.sum()?;
    if let Some(token) = tokens.get(parser.position) {
        return Err(format!("unexpected `{}`", token.text()));
    }
    Ok(expression)
}

impl Expression {
    /// The variables the expression reads.
    pub fn variables(&self) -> Vec<&str> {
        match self {
            Expression::Int(_) | Expression::Double(_) => Vec::new(),
            Expression::Variable(name) => vec![name],
            Expression::Negate(inner) => inner.variables(),
            Expression::Binary(left, _, right) => {
                let mut names = left.variables();
                names.extend(right.variables());
                names
            }
        }
    }

    /// The value with `variables` bound; `/ by zero` on integers is an error.
    pub fn evaluate(&self, variables: &BTreeMap<String, f64>) -> Result<f64, String> {
        self.number(variables).map(Number::as_f64)
    }

    fn number(&self, variables: &BTreeMap<String, f64>) -> Result<Number, String> {
        Ok(match self {
            Expression::Int(value) => Number::Int(*value),
            Expression::Double(value) => Number::Double(*value),
            Expression::Variable(name) => Number::Double(
                *variables
                    .get(name)
                    .ok_or_else(|| format!("`params.{name}` is not set"))?,
            ),
            Expression::Negate(inner) => match inner.number(variables)? {
                Number::Int(value) => Number::Int(value.wrapping_neg()),
                Number::Double(value) => Number::Double(-value),
            },
            Expression::Binary(left, operator, right) => {
                let (left, right) = (left.number(variables)?, right.number(variables)?);
                match (left, right) {
                    (Number::Int(left), Number::Int(right)) => Number::Int(match operator {
                        Operator::Add => left.wrapping_add(right),
                        Operator::Subtract => left.wrapping_sub(right),
                        Operator::Multiply => left.wrapping_mul(right),
                        Operator::Divide | Operator::Remainder if right == 0 => {
                            return Err("/ by zero".into());
                        }
                        Operator::Divide => left.wrapping_div(right),
                        Operator::Remainder => left.wrapping_rem(right),
                    }),
                    (left, right) => {
                        let (left, right) = (left.as_f64(), right.as_f64());
                        Number::Double(match operator {
                            Operator::Add => left + right,
                            Operator::Subtract => left - right,
                            Operator::Multiply => left * right,
                            Operator::Divide => left / right,
                            Operator::Remainder => left % right,
                        })
                    }
                }
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Int(i32),
    Double(f64),
    Variable(String),
    Symbol(char),
}

impl Token {
    fn text(&self) -> String {
        match self {
            Token::Int(value) => value.to_string(),
            Token::Double(value) => value.to_string(),
            Token::Variable(name) => format!("params.{name}"),
            Token::Symbol(symbol) => symbol.to_string(),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut rest = text;
    while let Some(first) = rest.chars().next() {
        if first.is_whitespace() {
            rest = &rest[first.len_utf8()..];
            continue;
        }
        if "+-*/%()".contains(first) {
            tokens.push(Token::Symbol(first));
            rest = &rest[1..];
            continue;
        }
        if first.is_ascii_digit() || first == '.' {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-')))
                .unwrap_or(rest.len());
            // a sign belongs to the number only right after an exponent
            let mut end_at = 0;
            let bytes = rest.as_bytes();
            while end_at < end {
                let byte = bytes[end_at];
                if (byte == b'+' || byte == b'-')
                    && !(end_at > 0 && matches!(bytes[end_at - 1], b'e' | b'E'))
                {
                    break;
                }
                end_at += 1;
            }
            tokens.push(number_token(&rest[..end_at])?);
            rest = &rest[end_at..];
            continue;
        }
        if let Some(after) = rest.strip_prefix("params") {
            let (name, consumed) = if let Some(dotted) = after.strip_prefix('.') {
                let end = dotted
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(dotted.len());
                (&dotted[..end], 1 + end)
            } else if let Some(indexed) = after
                .strip_prefix("['")
                .or_else(|| after.strip_prefix("[\""))
            {
                let quote = if after.starts_with("['") { "']" } else { "\"]" };
                let end = indexed
                    .find(quote)
                    .ok_or("a `params[` is closed with `]`")?;
                (&indexed[..end], 2 + end + 2)
            } else {
                return Err("`params` is read as `params.NAME` or `params['NAME']`".into());
            };
            if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
                return Err(format!("`params.{name}` is not a variable name"));
            }
            tokens.push(Token::Variable(name.to_string()));
            rest = &after[consumed..];
            continue;
        }
        let word: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
            .take(40)
            .collect();
        return Err(format!(
            "`{}` is not supported: only `params.NAME`, numbers, + - * / % and parentheses are",
            if word.is_empty() {
                first.to_string()
            } else {
                word
            }
        ));
    }
    Ok(tokens)
}

fn number_token(text: &str) -> Result<Token, String> {
    let (digits, double_suffix) = match text.strip_suffix(['d', 'D', 'f', 'F']) {
        Some(digits) => (digits, true),
        None => (text, false),
    };
    let is_double = double_suffix || digits.contains(['.', 'e', 'E']);
    if is_double {
        let value: f64 = digits
            .parse()
            .map_err(|_| format!("`{text}` is not a number"))?;
        return Ok(Token::Double(value));
    }
    if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(format!("`{text}` is not a number"));
    }
    digits
        .parse::<i32>()
        .map(Token::Int)
        .map_err(|_| format!("the integer `{text}` does not fit an int; write it as `{text}.0`"))
}

struct Parser<'a> {
    tokens: &'a [Token],
    position: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn sum(&mut self) -> Result<Expression, String> {
        let mut left = self.product()?;
        while let Some(Token::Symbol(symbol @ ('+' | '-'))) = self.peek() {
            let operator = if *symbol == '+' {
                Operator::Add
            } else {
                Operator::Subtract
            };
            self.position += 1;
            let right = self.product()?;
            left = Expression::Binary(Box::new(left), operator, Box::new(right));
        }
        Ok(left)
    }

    fn product(&mut self) -> Result<Expression, String> {
        let mut left = self.unary()?;
        while let Some(Token::Symbol(symbol @ ('*' | '/' | '%'))) = self.peek() {
            let operator = match symbol {
                '*' => Operator::Multiply,
                '/' => Operator::Divide,
                _ => Operator::Remainder,
            };
            self.position += 1;
            let right = self.unary()?;
            left = Expression::Binary(Box::new(left), operator, Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expression, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!(
                "nested deeper than {MAX_DEPTH} parentheses and signs"
            ));
        }
        let expression = match self.peek().cloned() {
            Some(Token::Symbol('-')) => {
                self.position += 1;
                Expression::Negate(Box::new(self.unary()?))
            }
            Some(Token::Symbol('+')) => {
                self.position += 1;
                self.unary()?
            }
            Some(Token::Symbol('(')) => {
                self.position += 1;
                let inner = self.sum()?;
                if self.peek() != Some(&Token::Symbol(')')) {
                    return Err("a `(` is not closed".into());
                }
                self.position += 1;
                inner
            }
            Some(Token::Int(value)) => {
                self.position += 1;
                Expression::Int(value)
            }
            Some(Token::Double(value)) => {
                self.position += 1;
                Expression::Double(value)
            }
            Some(Token::Variable(name)) => {
                self.position += 1;
                Expression::Variable(name)
            }
            Some(other) => return Err(format!("unexpected `{}`", other.text())),
            None => return Err("the script ends where a value was expected".into()),
        };
        self.depth -= 1;
        Ok(expression)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(source: &str, variables: &[(&str, f64)]) -> Result<f64, String> {
        let variables = variables
            .iter()
            .map(|(name, value)| (name.to_string(), *value))
            .collect();
        parse(source)?.evaluate(&variables)
    }

    #[test]
    fn grafana_scripts_evaluate_as_painless_does() {
        let vars = [("var1", 3.0), ("var2", 4.0)];
        assert_eq!(run("params.var1 * params.var2", &vars), Ok(12.0));
        assert_eq!(run("params.var1 * 100 / params.var2", &vars), Ok(75.0));
        assert_eq!(run("return (params.var1 + 1) * -2;", &vars), Ok(-8.0));
        assert_eq!(run("params['var1'] - params.var2 % 3", &vars), Ok(2.0));
        assert_eq!(run("1 / 2", &[]), Ok(0.0), "int division");
        assert_eq!(run("1.0 / 2", &[]), Ok(0.5));
        assert_eq!(run("1e2 + 2d", &[]), Ok(102.0));
        assert_eq!(run("2147483647 + 1", &[]), Ok(-2147483648.0), "int wraps");
        assert!(run("params.var1 / 0", &vars).expect("double").is_infinite());
        assert_eq!(run("1 / 0", &[]), Err("/ by zero".into()));
    }

    #[test]
    fn other_scripts_are_refused_saying_why() {
        for (source, says) in [
            ("Math.log(params.a)", "`Math.log` is not supported"),
            ("params.a > 1 ? 1 : 0", "`>` is not supported"),
            ("doc['x'].value", "`doc` is not supported"),
            ("(params.a", "not closed"),
            ("params.a +", "ends where a value"),
            ("params.a params.b", "unexpected"),
            ("99999999999", "does not fit an int"),
            ("params.", "not a variable name"),
        ] {
            let error = parse(source).expect_err(source);
            assert!(error.contains(says), "{source}: {error}");
        }
        assert!(
            parse(&"(".repeat(40))
                .expect_err("deep")
                .contains("nested deeper")
        );
        assert!(
            parse(&"1+".repeat(600))
                .expect_err("long")
                .contains("at most")
        );
    }

    #[test]
    fn variables_are_listed() {
        let expression = parse("params.a * (params.b - params.a)").expect("valid");
        assert_eq!(expression.variables(), ["a", "b", "a"]);
    }
}
