//! [`ColumnPatternQuery`]: `prefix`, `wildcard` and `regexp` on a string field, matched
//! against the values of the field's fast column.
//!
//! The column holds every string value of at most `KEYWORD_MAX_BYTES` exactly as logged
//! (`index::tokenizer`), while the term dictionary holds keyword terms only for values
//! of at most one word: a pattern over whole values therefore reads the column. Per
//! segment the automaton runs over the column's dictionary (each distinct value once),
//! then one pass over the column's value ordinals marks the matching documents.

use std::sync::Arc;

use tantivy::query::{
    BitSetDocSet, ConstScorer, EmptyScorer, EnableScoring, Explanation, Query, Scorer, Weight,
};
use tantivy::{BitSet, DocId, DocSet, Score, SegmentReader};
use tantivy_fst::Regex;

/// Documents whose string value at a path (its full fast-field name, `body.http.path`)
/// matches `automaton`; `literal` is a known prefix of every match (narrows the scan).
#[derive(Clone, Debug)]
pub struct ColumnPatternQuery {
    column: String,
    automaton: Arc<Regex>,
    literal: Vec<u8>,
}

impl ColumnPatternQuery {
    pub fn new(column: String, automaton: Regex, literal: Vec<u8>) -> ColumnPatternQuery {
        ColumnPatternQuery {
            column,
            automaton: Arc::new(automaton),
            literal,
        }
    }

    /// The ordinals of the matching values of one segment's column, then its documents.
    fn matches(&self, reader: &SegmentReader) -> tantivy::Result<Option<BitSet>> {
        let Some(column) = reader.fast_fields().str(&self.column)? else {
            return Ok(None);
        };
        let dictionary = column.dictionary();
        let mut search = dictionary.search(self.automaton.as_ref());
        if !self.literal.is_empty() {
            search = search.ge(&self.literal);
            if let Some(end) = prefix_end(&self.literal) {
                search = search.lt(end);
            }
        }
        let mut stream = search.into_stream()?;
        let mut ordinals = BitSet::with_max_value(dictionary.num_terms().max(1) as u32);
        let mut any = false;
        while stream.advance() {
            ordinals.insert(stream.term_ord() as u32);
            any = true;
        }
        if !any {
            return Ok(None);
        }
        let mut docs = BitSet::with_max_value(reader.max_doc().max(1));
        let ords = column.ords();
        for doc in 0..reader.max_doc() {
            if ords
                .values_for_doc(doc)
                .any(|ordinal| ordinals.contains(ordinal as u32))
            {
                docs.insert(doc);
            }
        }
        Ok(Some(docs))
    }
}

/// The smallest key above every key that starts with `prefix` (`None`: no such key).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl Query for ColumnPatternQuery {
    fn weight(&self, _scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(self.clone()))
    }
}

impl Weight for ColumnPatternQuery {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        Ok(match self.matches(reader)? {
            Some(docs) => Box::new(ConstScorer::new(BitSetDocSet::from(docs), boost)),
            None => Box::new(EmptyScorer),
        })
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.seek(doc) == doc {
            Ok(Explanation::new("ColumnPatternQuery", 1.0))
        } else {
            Err(tantivy::TantivyError::InvalidArgument(format!(
                "no value of `{}` matches the pattern",
                self.column
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_every_key_with_the_prefix() {
        assert_eq!(prefix_end(b"web-"), Some(b"web.".to_vec()));
        assert_eq!(prefix_end(&[b'a', 0xff]), Some(b"b".to_vec()));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }
}
