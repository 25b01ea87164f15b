//! Wall-clock times as records write them: RFC 3339, UTC, to the second.

use std::time::SystemTime;

/// `2026-12-02T20:25:38Z`.
pub fn rfc3339_utc(at: SystemTime) -> String {
    let seconds = match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => since.as_secs() as i64,
        Err(before) => -(before.duration().as_secs() as i64),
    };
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

/// Milliseconds since the epoch of `2026-12-02T20:25:38Z` (or with a fraction, `...38.5Z`);
/// None for anything else.
pub fn parse_rfc3339_utc_ms(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut date = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    let (time, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut time = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (time.next()??, time.next()??, time.next()??);
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && (0..24).contains(&hour)
        && (0..60).contains(&minute)
        && (0..61).contains(&second)
        && fraction.chars().all(|c| c.is_ascii_digit());
    if !valid {
        return None;
    }
    let millis = format!("{fraction:0<3}")[..3].parse::<i64>().ok()?;
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    u64::try_from(seconds * 1000 + millis).ok()
}

/// Days from 1970-01-01 of a proleptic Gregorian date (the inverse of [`civil_from_days`];
/// astronomical years, 1 BC is 0).
pub const fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian (year, month, day) of a day counted from 1970-01-01 (H. Hinnant's
/// algorithm; astronomical years, 1 BC is 0).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A span written as a number and a unit: `90s`, `15m`, `2h`, `7d`.
pub fn parse_span(text: &str) -> Option<std::time::Duration> {
    let unit = text.chars().last()?;
    let scale: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return None,
    };
    let amount: u64 = text[..text.len() - unit.len_utf8()].parse().ok()?;
    Some(std::time::Duration::from_secs(amount.checked_mul(scale)?))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::{civil_from_days, days_from_civil, parse_rfc3339_utc_ms, rfc3339_utc};

    #[test]
    fn known_instants() {
        let at = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(rfc3339_utc(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(at(1_796_243_138)), "2026-12-02T20:25:38Z");
    }

    #[test]
    fn written_times_read_back() {
        let at = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        for seconds in [0, 951_782_400, 1_796_243_138, 4_102_444_799] {
            let text = rfc3339_utc(at(seconds));
            assert_eq!(parse_rfc3339_utc_ms(&text), Some(seconds * 1000), "{text}");
        }
        assert_eq!(
            parse_rfc3339_utc_ms("2026-12-02T20:25:38.25Z"),
            Some(1_796_243_138_250)
        );
        for bad in [
            "2026-12-02",
            "2026-13-02T00:00:00Z",
            "2026-12-02T20:25:38",
            "x",
        ] {
            assert_eq!(parse_rfc3339_utc_ms(bad), None, "{bad}");
        }
        for days in [-800_000, -1, 0, 59, 10_957, 20_789, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
