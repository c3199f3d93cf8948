//! How configuration mistakes are told to the user, shared by every file Lookout reads
//! (`lookout.toml`, `agent.toml`, rules): TOML errors as `FILE:LINE:COLUMN: message`, and
//! "did you mean …?" hints for a misspelt name. A leaf: it imports nothing of Lookout.

/// The known name nearest to `unknown`, when it is near enough to be a typo (for "did
/// you mean …?" in config and rule errors).
pub fn suggestion<'a>(unknown: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|candidate| (strsim::damerau_levenshtein(unknown, candidate), candidate))
        .filter(|(distance, candidate)| {
            *distance <= (candidate.chars().count() / 3).max(1) + usize::from(unknown.len() > 4)
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// A TOML error of file `origin` (whose text is `text`) as `lookout check` prints every
/// error: `FILE:LINE:COLUMN: message`, once, with the nearest known key for an unknown one.
pub fn toml_error(origin: &str, text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    // "unknown field `max_body_byte`, expected one of `max_body_bytes`, …"
    let hint = message
        .strip_prefix("unknown field `")
        .and_then(|_| {
            let names: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
            let (unknown, known) = names.split_first()?;
            suggestion(unknown, known.iter().copied())
        })
        .map(|near| format!("; did you mean `{near}`?"))
        .unwrap_or_default();
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |at| at + 1) + 1;
            format!("{origin}:{line}:{column}: {message}{hint}")
        }
        None => format!("{origin}: {message}{hint}"),
    }
}
