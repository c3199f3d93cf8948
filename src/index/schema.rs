//! The one tantivy schema every partition of every log index shares.
//!
//! | field | what | how |
//! |---|---|---|
//! | `_id` | document id | raw, indexed, stored (not fast: a column of unique ids is costly, and ES 8 does not sort on `_id` either) |
//! | `@timestamp` | event time, microseconds | fast only: ranges scan the column, which is what tantivy does for fast fields anyway |
//! | `_source` | the line as received | stored bytes, returned verbatim |
//! | `body` | the whole object, dynamic | JSON: words per string (plus a keyword term for one-word values, see `tokenizer`), numbers as numbers, fast columns (strings up to 256 bytes as they are) |
//!
//! There is no catch-all `_all` field: free text without a field name expands over the
//! paths an index has seen (as Elasticsearch's `default_field: *` does), which saves
//! indexing every string a second time.

use tantivy::schema::{
    DateOptions, DateTimePrecision, Field, IndexRecordOption, JsonObjectOptions, STORED, STRING,
    Schema, TextFieldIndexing,
};
use tantivy::tokenizer::TextAnalyzer;

use super::tokenizer::{BODY_TOKENIZER, BodyTokenizer, KEYWORD_TOKENIZER, KeywordTokenizer};

pub const ID_FIELD: &str = "_id";
pub const TIMESTAMP_FIELD: &str = "@timestamp";
pub const SOURCE_FIELD: &str = "_source";
pub const BODY_FIELD: &str = "body";

/// Handles to the fields of [`LogSchema::new`].
#[derive(Clone, Debug)]
pub struct LogSchema {
    pub schema: Schema,
    pub id: Field,
    pub timestamp: Field,
    pub source: Field,
    pub body: Field,
}

impl LogSchema {
    pub fn new() -> LogSchema {
        let mut builder = Schema::builder();
        let id = builder.add_text_field(ID_FIELD, STRING | STORED);
        let timestamp = builder.add_date_field(
            TIMESTAMP_FIELD,
            DateOptions::default()
                .set_fast()
                .set_precision(DateTimePrecision::Microseconds),
        );
        let source = builder.add_bytes_field(SOURCE_FIELD, STORED);
        let body = builder.add_json_field(
            BODY_FIELD,
            JsonObjectOptions::default()
                .set_indexing_options(
                    TextFieldIndexing::default()
                        .set_tokenizer(BODY_TOKENIZER)
                        .set_fieldnorms(false)
                        .set_index_option(IndexRecordOption::WithFreqsAndPositions),
                )
                .set_fast(KEYWORD_TOKENIZER)
                .set_expand_dots_enabled(),
        );
        LogSchema {
            schema: builder.build(),
            id,
            timestamp,
            source,
            body,
        }
    }

    /// Registers the tokenizers the schema names; every opened `Index` needs them.
    pub fn register_tokenizers(index: &tantivy::Index) {
        let manager = index.tokenizers();
        manager.register(BODY_TOKENIZER, TextAnalyzer::from(BodyTokenizer::default()));
        manager.register(
            KEYWORD_TOKENIZER,
            TextAnalyzer::from(KeywordTokenizer::default()),
        );
        index.fast_field_tokenizer().register(
            KEYWORD_TOKENIZER,
            TextAnalyzer::from(KeywordTokenizer::default()),
        );
    }
}

impl Default for LogSchema {
    fn default() -> Self {
        LogSchema::new()
    }
}
