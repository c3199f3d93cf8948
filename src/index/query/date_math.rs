//! Elasticsearch date math: `now-5m/m`, `2024-05-01T10:00:00Z||+1h`, epoch numbers, with the
//! rounding rules of range bounds (`gt`/`lte` round up, `gte`/`lt` round down).

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};

use super::QueryError;

/// How a rounded value is used: as a lower or upper bound, inclusive or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// `gte`, `lt`, plain values: round to the start of the unit.
    Down,
    /// `gt`, `lte`: round to the last microsecond of the unit.
    Up,
}

/// Parses a date-math expression or absolute date into microseconds since the epoch.
///
/// `format` may be `epoch_millis`, `epoch_second` or anything else (RFC 3339 and ES'
/// `strict_date_optional_time` forms are always tried).
pub fn parse_micros(
    text: &str,
    now_micros: i64,
    rounding: Rounding,
    format: Option<&str>,
) -> Result<i64, QueryError> {
    let text = text.trim();
    let (anchor, math) = if let Some(rest) = text.strip_prefix("now") {
        (now_micros, rest)
    } else if let Some((date, rest)) = text.split_once("||") {
        (parse_absolute(date, format)?, rest)
    } else {
        return parse_absolute(text, format);
    };
    apply_math(anchor, math, rounding)
        .ok_or_else(|| QueryError::parsing(format!("failed to parse date field [{text}]: invalid date math `{math}`; expected e.g. `now-5m`, `now-1d/d`")))
}

/// Parses an absolute date into microseconds.
pub fn parse_absolute(text: &str, format: Option<&str>) -> Result<i64, QueryError> {
    let bad = || {
        QueryError::parsing(format!(
            "failed to parse date field [{text}] with format [{}]: use RFC 3339 (2024-05-01T10:00:00Z), a date (2024-05-01), epoch milliseconds or date math (now-15m)",
            format.unwrap_or("strict_date_optional_time||epoch_millis")
        ))
    };
    let trimmed = text.trim();
    if let Some(format) = format {
        let number = || trimmed.parse::<f64>().map_err(|_| bad());
        match format {
            "epoch_second" => return Ok((number()? * 1e6) as i64),
            "epoch_millis" => return Ok((number()? * 1e3) as i64),
            _ => {}
        }
    }
    if let Ok(millis) = trimmed.parse::<i64>() {
        return Ok(millis.saturating_mul(1000));
    }
    if let Ok(date) = DateTime::parse_from_rfc3339(trimmed) {
        return Ok(date.timestamp_micros());
    }
    for pattern in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(trimmed, pattern) {
            return Ok(naive.and_utc().timestamp_micros());
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(trimmed, "%Y-%m-%d") {
        return date
            .and_hms_opt(0, 0, 0)
            .map(|naive| naive.and_utc().timestamp_micros())
            .ok_or_else(bad);
    }
    if let Ok(date) = NaiveDate::parse_from_str(&format!("{trimmed}-01"), "%Y-%m-%d") {
        return date
            .and_hms_opt(0, 0, 0)
            .map(|naive| naive.and_utc().timestamp_micros())
            .ok_or_else(bad);
    }
    Err(bad())
}

fn apply_math(anchor_micros: i64, mut math: &str, rounding: Rounding) -> Option<i64> {
    let mut time = Utc.timestamp_micros(anchor_micros).single()?;
    while !math.is_empty() {
        let op = math.chars().next()?;
        math = &math[op.len_utf8()..];
        match op {
            '+' | '-' => {
                let digits = math.chars().take_while(char::is_ascii_digit).count();
                let amount: i64 = if digits == 0 {
                    1
                } else {
                    math[..digits].parse().ok()?
                };
                math = &math[digits..];
                let unit = math.chars().next()?;
                math = &math[unit.len_utf8()..];
                let amount = if op == '-' { -amount } else { amount };
                time = add_unit(time, amount, unit)?;
            }
            '/' => {
                let unit = math.chars().next()?;
                math = &math[unit.len_utf8()..];
                time = round(time, unit, rounding)?;
            }
            _ => return None,
        }
    }
    Some(time.timestamp_micros())
}

fn add_unit(time: DateTime<Utc>, amount: i64, unit: char) -> Option<DateTime<Utc>> {
    Some(match unit {
        'y' => add_months(time, amount.checked_mul(12)?)?,
        'M' => add_months(time, amount)?,
        'w' => time.checked_add_signed(Duration::try_weeks(amount)?)?,
        'd' => time.checked_add_signed(Duration::try_days(amount)?)?,
        'h' | 'H' => time.checked_add_signed(Duration::try_hours(amount)?)?,
        'm' => time.checked_add_signed(Duration::try_minutes(amount)?)?,
        's' => time.checked_add_signed(Duration::try_seconds(amount)?)?,
        _ => return None,
    })
}

fn add_months(time: DateTime<Utc>, months: i64) -> Option<DateTime<Utc>> {
    let months = i32::try_from(months).ok()?;
    if months >= 0 {
        time.checked_add_months(chrono::Months::new(months.unsigned_abs()))
    } else {
        time.checked_sub_months(chrono::Months::new(months.unsigned_abs()))
    }
}

fn round(time: DateTime<Utc>, unit: char, rounding: Rounding) -> Option<DateTime<Utc>> {
    let date = time.date_naive();
    let start = match unit {
        'y' => NaiveDate::from_ymd_opt(date.year(), 1, 1)?.and_hms_opt(0, 0, 0)?,
        'M' => NaiveDate::from_ymd_opt(date.year(), date.month(), 1)?.and_hms_opt(0, 0, 0)?,
        'w' => (date - Duration::days(i64::from(date.weekday().num_days_from_monday())))
            .and_hms_opt(0, 0, 0)?,
        'd' => date.and_hms_opt(0, 0, 0)?,
        'h' | 'H' => date.and_hms_opt(time.hour(), 0, 0)?,
        'm' => date.and_hms_opt(time.hour(), time.minute(), 0)?,
        's' => date.and_hms_opt(time.hour(), time.minute(), time.second())?,
        _ => return None,
    }
    .and_utc();
    match rounding {
        Rounding::Down => Some(start),
        Rounding::Up => Some(add_unit(start, 1, unit)? - Duration::microseconds(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .expect("valid")
            .timestamp_micros()
    }

    #[test]
    fn date_math_table() {
        let now = micros("2024-05-01T10:17:42.5Z");
        let cases = [
            ("now", Rounding::Down, "2024-05-01T10:17:42.5Z"),
            ("now-5m", Rounding::Down, "2024-05-01T10:12:42.5Z"),
            ("now-5m/m", Rounding::Down, "2024-05-01T10:12:00Z"),
            ("now/m", Rounding::Up, "2024-05-01T10:17:59.999999Z"),
            ("now-1d/d", Rounding::Down, "2024-04-30T00:00:00Z"),
            ("now+1h", Rounding::Down, "2024-05-01T11:17:42.5Z"),
            ("now-1M/M", Rounding::Down, "2024-04-01T00:00:00Z"),
            ("now/w", Rounding::Down, "2024-04-29T00:00:00Z"),
            ("2024-05-01||+1d", Rounding::Down, "2024-05-02T00:00:00Z"),
            (
                "2024-05-01T10:00:00+02:00",
                Rounding::Down,
                "2024-05-01T08:00:00Z",
            ),
            ("1714558662500", Rounding::Down, "2024-05-01T10:17:42.5Z"),
        ];
        for (text, rounding, expected) in cases {
            assert_eq!(
                parse_micros(text, now, rounding, None).expect(text),
                micros(expected),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_date_math_is_a_parsing_error_that_names_the_input() {
        let error = parse_micros("now-5x", 0, Rounding::Down, None).expect_err("bad unit");
        assert_eq!(error.kind, "parsing_exception");
        assert!(error.reason.contains("now-5x"), "{}", error.reason);
        assert!(parse_micros("yesterday", 0, Rounding::Down, None).is_err());
    }
}
