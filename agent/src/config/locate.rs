//! Find where a field path (`issuers[1].audiences`) sits in a YAML text, so checks made after
//! deserializing can still point at file:line:column.

use std::fmt;

use saphyr_parser::{Event, Parser, Span};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A field path, displayed as `issuers[1].jwks.minRefreshSeconds`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(pub Vec<Seg>);

impl FieldPath {
    pub fn key(mut self, k: &str) -> Self {
        self.0.push(Seg::Key(k.to_owned()));
        self
    }
    pub fn index(mut self, i: usize) -> Self {
        self.0.push(Seg::Index(i));
        self
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
enum Node {
    Map(Vec<(String, Span, Node)>),
    Seq(Vec<(Span, Node)>),
    Leaf,
}

/// 1-based (line, column) of the path's key (or sequence item), or of its deepest existing
/// ancestor when the path names a field that is absent.
pub fn locate(text: &str, path: &FieldPath) -> Option<(usize, usize)> {
    // Stop at the first scan error: the parser repeats it forever, so skipping errors would
    // never end (libyaml, behind serde, accepts some documents saphyr refuses).
    let mut events = Parser::new_from_str(text).map_while(Result::ok);
    // Skip stream and document starts.
    let (root, root_span) = loop {
        let (ev, span) = events.next()?;
        match ev {
            Event::StreamStart | Event::DocumentStart(_) => continue,
            other => break (build(other, &mut events)?, span),
        }
    };
    let mut node = &root;
    let mut at = root_span;
    for seg in &path.0 {
        let next = match (seg, node) {
            (Seg::Key(k), Node::Map(entries)) => entries.iter().find(|(name, _, _)| name == k).map(|(_, s, n)| (*s, n)),
            (Seg::Index(i), Node::Seq(items)) => items.get(*i).map(|(s, n)| (*s, n)),
            _ => None,
        };
        match next {
            Some((span, n)) => {
                at = span;
                node = n;
            }
            None => break,
        }
    }
    Some((at.start.line(), at.start.col() + 1))
}

fn build<'a>(first: Event<'a>, events: &mut impl Iterator<Item = (Event<'a>, Span)>) -> Option<Node> {
    match first {
        Event::MappingStart(..) => {
            let mut entries = Vec::new();
            loop {
                let (ev, span) = events.next()?;
                match ev {
                    Event::MappingEnd => return Some(Node::Map(entries)),
                    Event::Scalar(key, ..) => {
                        let (vev, _) = events.next()?;
                        let value = build(vev, events)?;
                        entries.push((key.into_owned(), span, value));
                    }
                    // Complex keys: skip the key node and its value.
                    other => {
                        build(other, events)?;
                        let (vev, _) = events.next()?;
                        build(vev, events)?;
                    }
                }
            }
        }
        Event::SequenceStart(..) => {
            let mut items = Vec::new();
            loop {
                let (ev, span) = events.next()?;
                if matches!(ev, Event::SequenceEnd) {
                    return Some(Node::Seq(items));
                }
                items.push((span, build(ev, events)?));
            }
        }
        _ => Some(Node::Leaf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys_and_items() {
        let text = "issuers:\n  - issuer: a\n    audiences: [x]\n  - issuer: b\n    jwks: {minRefreshSeconds: 9}\npolicies: []\n";
        let p = |f: FieldPath| locate(text, &f);
        assert_eq!(p(FieldPath::default().key("issuers")), Some((1, 1)));
        assert_eq!(p(FieldPath::default().key("issuers").index(1).key("issuer")), Some((4, 5)));
        assert_eq!(p(FieldPath::default().key("issuers").index(1).key("jwks").key("minRefreshSeconds")), Some((5, 12)));
        assert_eq!(p(FieldPath::default().key("issuers").index(0).key("audiences").index(0)), Some((3, 17)));
        // Absent field: its parent.
        assert_eq!(p(FieldPath::default().key("issuers").index(0).key("nope")), Some((2, 5)));
        assert_eq!(FieldPath::default().key("issuers").index(1).key("jwks").to_string(), "issuers[1].jwks");
    }

    /// Regression (found by fuzzing `config`): serde's YAML parser accepts this multi-line
    /// quoted scalar, saphyr does not, and `locate` looped forever on the repeated error, so
    /// `ward run` hung at start and a reload hung the watcher.
    #[test]
    fn a_scan_error_ends_the_search() {
        let text = "issuers:\n- issuer: \"https:/+i\n-d/\"\n  audiences: [a]\n";
        assert_eq!(locate(text, &FieldPath::default().key("issuers").index(0).key("issuer")), None);
        let err = crate::config::parse_str(text, "t.yaml").expect_err("the issuer is not a URL");
        assert!(err.to_string().starts_with("t.yaml:1:1: issuers[0].issuer: "), "{err}");
    }
}
