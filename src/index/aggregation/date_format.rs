//! Elasticsearch date formats and time zones for printing a date histogram's
//! `key_as_string`: the named formats (`epoch_millis`, `epoch_second`,
//! `strict_date_optional_time`, `strict_date_optional_time_nanos`, `date_time`, `date`, …)
//! and Java-style patterns such as `yyyy-MM-dd HH:mm:ss` (the letters `y u M d H h k m s
//! S a E Z X x`, quoted literals). `a||b` prints with `a`, as Elasticsearch does.
//!
//! Time zones are `UTC`/`Z`, fixed offsets (`+02:00`, `-0530`) and IANA names
//! (`Europe/Berlin`, through chrono-tz). Parsing is bounded ([`MAX_PATTERN_CHARS`]); an
//! unknown letter or zone is an error that names it. Reads and writes nothing else.

use chrono::{DateTime, Datelike, FixedOffset, Offset, TimeZone, Timelike, Utc};

/// Longest pattern accepted (Elasticsearch's own named formats are under 60 characters).
pub const MAX_PATTERN_CHARS: usize = 256;

/// How a date histogram key is printed.
#[derive(Debug, Clone, PartialEq)]
pub enum DateFormat {
    EpochMillis,
    EpochSecond,
    Pattern(Vec<Piece>),
}

/// One element of a Java date pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Literal(String),
    Year(usize),
    Month(usize),
    Day(usize),
    Hour24(usize),
    Hour12(usize),
    /// `k`: hour of day 1–24.
    Hour24From1(usize),
    Minute(usize),
    Second(usize),
    /// Fraction of a second with at least `min` and at most `max` digits.
    Fraction {
        min: usize,
        max: usize,
    },
    AmPm,
    DayName(usize),
    /// `Z`: `+0000`; `ZZZZZ`: `+00:00`/`Z`.
    OffsetZ(usize),
    /// `X`: `Z` at UTC, otherwise `+HH` (1), `+HHMM` (2) or `+HH:MM` (3).
    OffsetX(usize),
    /// `x`: as `X` without the `Z` at UTC.
    OffsetLowerX(usize),
}

/// A `time_zone` of an aggregation.
#[derive(Debug, Clone, PartialEq)]
pub enum Zone {
    Fixed(FixedOffset),
    Named(chrono_tz::Tz),
}

impl Default for Zone {
    fn default() -> Self {
        Zone::Fixed(FixedOffset::east_opt(0).expect("zero is a valid offset"))
    }
}

impl Zone {
    /// Parses `UTC`, `Z`, `+02:00`, `-0530`, `+2` or an IANA name.
    pub fn parse(text: &str) -> Result<Zone, String> {
        let trimmed = text.trim();
        if matches!(
            trimmed.to_ascii_uppercase().as_str(),
            "UTC" | "Z" | "GMT" | "ETC/UTC" | "ETC/GMT" | "UT"
        ) {
            return Ok(Zone::default());
        }
        if let Some(sign) = trimmed.chars().next().filter(|c| *c == '+' || *c == '-') {
            let digits: String = trimmed[1..].chars().filter(|c| *c != ':').collect();
            let (hours, minutes) = match digits.len() {
                1 | 2 => (digits.parse::<i32>().ok(), Some(0)),
                4 => (digits[..2].parse().ok(), digits[2..].parse().ok()),
                _ => (None, None),
            };
            if let (Some(hours), Some(minutes)) = (hours, minutes)
                && hours <= 18
                && minutes < 60
                && digits.chars().all(|c| c.is_ascii_digit())
            {
                let seconds = (hours * 3600 + minutes * 60) * if sign == '-' { -1 } else { 1 };
                if let Some(offset) = FixedOffset::east_opt(seconds) {
                    return Ok(Zone::Fixed(offset));
                }
            }
            return Err(format!(
                "time_zone `{text}` is not an offset; write it as `+02:00` or `-05:30`"
            ));
        }
        trimmed.parse::<chrono_tz::Tz>().map(Zone::Named).map_err(|_| {
            format!("unknown time_zone `{text}`; use `UTC`, an offset such as `+02:00` or a name such as `Europe/Berlin`")
        })
    }

    /// Seconds east of UTC at `millis` since the epoch.
    pub fn offset_seconds_at(&self, millis: i64) -> i32 {
        match self {
            Zone::Fixed(offset) => offset.local_minus_utc(),
            Zone::Named(zone) => Utc.timestamp_millis_opt(millis).single().map_or(0, |utc| {
                zone.offset_from_utc_datetime(&utc.naive_utc())
                    .fix()
                    .local_minus_utc()
            }),
        }
    }
}

impl DateFormat {
    /// Parses a named format or a pattern; `a||b` keeps `a`.
    pub fn parse(text: &str) -> Result<DateFormat, String> {
        if text.len() > MAX_PATTERN_CHARS {
            return Err(format!(
                "date format is {} characters long; at most {MAX_PATTERN_CHARS} are accepted",
                text.len()
            ));
        }
        let first = text.split("||").next().unwrap_or(text).trim();
        let pattern = match first {
            "epoch_millis" => return Ok(DateFormat::EpochMillis),
            "epoch_second" => return Ok(DateFormat::EpochSecond),
            "strict_date_optional_time"
            | "date_optional_time"
            | "strict_date_time"
            | "date_time" => "yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
            "strict_date_optional_time_nanos" => "yyyy-MM-dd'T'HH:mm:ss.SSSSSSSSSXXX",
            "strict_date_time_no_millis" | "date_time_no_millis" => "yyyy-MM-dd'T'HH:mm:ssXXX",
            "strict_date" | "date" => "yyyy-MM-dd",
            "strict_date_hour_minute_second" | "date_hour_minute_second" => "yyyy-MM-dd'T'HH:mm:ss",
            "strict_date_hour_minute_second_millis" | "date_hour_minute_second_millis" => {
                "yyyy-MM-dd'T'HH:mm:ss.SSS"
            }
            "strict_date_hour_minute" | "date_hour_minute" => "yyyy-MM-dd'T'HH:mm",
            "strict_date_hour" | "date_hour" => "yyyy-MM-dd'T'HH",
            "strict_hour_minute_second" | "hour_minute_second" => "HH:mm:ss",
            "strict_hour_minute" | "hour_minute" => "HH:mm",
            "strict_year_month" | "year_month" => "yyyy-MM",
            "strict_year" | "year" => "yyyy",
            "basic_date" => "yyyyMMdd",
            "basic_date_time" => "yyyyMMdd'T'HHmmss.SSSZ",
            "basic_date_time_no_millis" => "yyyyMMdd'T'HHmmssZ",
            pattern => pattern,
        };
        let mut pieces = parse_pattern(pattern)?;
        // strict_date_optional_time_nanos prints 3 to 9 fraction digits
        if first == "strict_date_optional_time_nanos" {
            for piece in &mut pieces {
                if let Piece::Fraction { min, .. } = piece {
                    *min = 3;
                }
            }
        }
        Ok(DateFormat::Pattern(pieces))
    }

    /// `millis` since the epoch (a bucket key) printed in `zone`.
    pub fn print(&self, millis: i64, zone: &Zone) -> String {
        match self {
            DateFormat::EpochMillis => millis.to_string(),
            DateFormat::EpochSecond => millis.div_euclid(1000).to_string(),
            DateFormat::Pattern(pieces) => {
                let offset = FixedOffset::east_opt(zone.offset_seconds_at(millis))
                    .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero is valid"));
                let Some(date) = Utc.timestamp_millis_opt(millis).single() else {
                    return millis.to_string();
                };
                print_pattern(pieces, &date.with_timezone(&offset))
            }
        }
    }
}

fn parse_pattern(pattern: &str) -> Result<Vec<Piece>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut pieces = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        let letter = chars[at];
        if letter == '\'' {
            // quoted literal; '' is a quote
            let mut literal = String::new();
            at += 1;
            loop {
                match (chars.get(at), chars.get(at + 1)) {
                    (None, _) => {
                        return Err(format!("date format `{pattern}` has an unclosed quote"));
                    }
                    (Some('\''), Some('\'')) => {
                        literal.push('\'');
                        at += 2;
                    }
                    (Some('\''), _) => {
                        at += 1;
                        break;
                    }
                    (Some(other), _) => {
                        literal.push(*other);
                        at += 1;
                    }
                }
            }
            if literal.is_empty() {
                literal.push('\'');
            }
            pieces.push(Piece::Literal(literal));
            continue;
        }
        let run = chars[at..].iter().take_while(|c| **c == letter).count();
        at += run;
        let piece = match letter {
            'y' | 'u' | 'Y' => Piece::Year(run),
            'M' | 'L' => Piece::Month(run),
            'd' => Piece::Day(run),
            'H' => Piece::Hour24(run),
            'h' => Piece::Hour12(run),
            'k' => Piece::Hour24From1(run),
            'm' => Piece::Minute(run),
            's' => Piece::Second(run),
            'S' => Piece::Fraction {
                min: run.min(9),
                max: run.min(9),
            },
            'a' => Piece::AmPm,
            'E' => Piece::DayName(run),
            'Z' => Piece::OffsetZ(run),
            'X' => Piece::OffsetX(run),
            'x' => Piece::OffsetLowerX(run),
            letter if letter.is_ascii_alphabetic() => {
                return Err(format!(
                    "date format `{pattern}` uses the letter `{letter}`, which is not supported; use y M d H h m s S a E Z X x and quoted literals"
                ));
            }
            other => Piece::Literal(other.to_string().repeat(run)),
        };
        pieces.push(piece);
    }
    Ok(pieces)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn print_pattern(pieces: &[Piece], date: &DateTime<FixedOffset>) -> String {
    let mut out = String::new();
    let padded = |out: &mut String, value: i64, width: usize| {
        out.push_str(&format!("{value:0width$}"));
    };
    for piece in pieces {
        match piece {
            Piece::Literal(text) => out.push_str(text),
            Piece::Year(2) => padded(&mut out, i64::from(date.year().rem_euclid(100)), 2),
            Piece::Year(width) => padded(&mut out, i64::from(date.year()), *width),
            Piece::Month(width) if *width >= 3 => {
                let name = MONTHS[date.month0() as usize];
                out.push_str(if *width == 3 { &name[..3] } else { name });
            }
            Piece::Month(width) => padded(&mut out, i64::from(date.month()), *width),
            Piece::Day(width) => padded(&mut out, i64::from(date.day()), *width),
            Piece::Hour24(width) => padded(&mut out, i64::from(date.hour()), *width),
            Piece::Hour12(width) => {
                let hour = date.hour12().1;
                padded(&mut out, i64::from(hour), *width);
            }
            Piece::Hour24From1(width) => {
                let hour = if date.hour() == 0 { 24 } else { date.hour() };
                padded(&mut out, i64::from(hour), *width);
            }
            Piece::Minute(width) => padded(&mut out, i64::from(date.minute()), *width),
            Piece::Second(width) => padded(&mut out, i64::from(date.second()), *width),
            Piece::Fraction { min, max } => {
                let nanos = format!("{:09}", date.nanosecond() % 1_000_000_000);
                let mut digits = &nanos[..*max];
                while digits.len() > *min && digits.ends_with('0') {
                    digits = &digits[..digits.len() - 1];
                }
                out.push_str(digits);
            }
            Piece::AmPm => out.push_str(if date.hour12().0 { "PM" } else { "AM" }),
            Piece::DayName(width) => {
                let name = date.weekday().to_string(); // Mon, Tue, …
                let full = match name.as_str() {
                    "Mon" => "Monday",
                    "Tue" => "Tuesday",
                    "Wed" => "Wednesday",
                    "Thu" => "Thursday",
                    "Fri" => "Friday",
                    "Sat" => "Saturday",
                    _ => "Sunday",
                };
                out.push_str(if *width >= 4 { full } else { &name });
            }
            Piece::OffsetZ(width) => {
                let seconds = date.offset().local_minus_utc();
                if *width >= 5 {
                    out.push_str(&offset_text(seconds, true, true));
                } else {
                    out.push_str(&offset_text(seconds, false, false));
                }
            }
            Piece::OffsetX(width) | Piece::OffsetLowerX(width) => {
                let seconds = date.offset().local_minus_utc();
                if seconds == 0 && matches!(piece, Piece::OffsetX(_)) {
                    out.push('Z');
                } else if *width == 1 && seconds % 3600 == 0 {
                    let text = offset_text(seconds, false, false);
                    out.push_str(&text[..3]);
                } else {
                    out.push_str(&offset_text(seconds, *width >= 3, false));
                }
            }
        }
    }
    out
}

/// `+HHMM`, or `+HH:MM` with `colon`; `Z` for zero when `z_at_zero`.
fn offset_text(seconds: i32, colon: bool, z_at_zero: bool) -> String {
    if seconds == 0 && z_at_zero {
        return "Z".into();
    }
    let sign = if seconds < 0 { '-' } else { '+' };
    let minutes = seconds.abs() / 60;
    let separator = if colon { ":" } else { "" };
    format!("{sign}{:02}{separator}{:02}", minutes / 60, minutes % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: i64 = 1_668_422_437_218; // 2022-11-14T10:40:37.218Z

    fn print(format: &str, zone: &str) -> String {
        DateFormat::parse(format)
            .expect("valid format")
            .print(KEY, &Zone::parse(zone).expect("valid zone"))
    }

    #[test]
    fn named_formats_print_as_elasticsearch_does() {
        for (format, expected) in [
            ("epoch_millis", "1668422437218"),
            ("epoch_second", "1668422437"),
            ("strict_date_optional_time", "2022-11-14T10:40:37.218Z"),
            (
                "strict_date_optional_time_nanos",
                "2022-11-14T10:40:37.218Z",
            ),
            ("date", "2022-11-14"),
            ("yyyy-MM-dd HH:mm:ss", "2022-11-14 10:40:37"),
            ("dd/MMM/yyyy:hh:mm a", "14/Nov/2022:10:40 AM"),
            ("yyyy-MM-dd'T'HH:mm:ssZ", "2022-11-14T10:40:37+0000"),
            ("epoch_millis||strict_date_optional_time", "1668422437218"),
        ] {
            assert_eq!(print(format, "UTC"), expected, "{format}");
        }
    }

    #[test]
    fn zones_shift_the_printed_time() {
        assert_eq!(
            print("strict_date_optional_time", "+02:00"),
            "2022-11-14T12:40:37.218+02:00"
        );
        // Berlin is on winter time (+01:00) in November
        assert_eq!(
            print("yyyy-MM-dd HH:mm XXX", "Europe/Berlin"),
            "2022-11-14 11:40 +01:00"
        );
        assert_eq!(print("HH:mm", "-0530"), "05:10");
    }

    #[test]
    fn bad_formats_and_zones_say_what_is_wrong() {
        let error = DateFormat::parse("yyyy-QQ").expect_err("Q is unknown");
        assert!(error.contains("letter `Q`"), "{error}");
        assert!(DateFormat::parse("'open").is_err());
        assert!(DateFormat::parse(&"y".repeat(MAX_PATTERN_CHARS + 1)).is_err());
        let error = Zone::parse("Mars/Olympus").expect_err("no such zone");
        assert!(error.contains("unknown time_zone"), "{error}");
        assert!(Zone::parse("+99:00").is_err());
    }
}
