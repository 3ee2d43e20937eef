//! Time windows of access-request rules: days of the week and a start and end time of day,
//! in a time zone.
//!
//! Ward carries no time-zone database, so a zone is `UTC` or a fixed offset such as `+02:00`
//! or `-05:30`. Named zones (`Europe/Paris`) are refused when the role is written, with a
//! message that says to use an offset: a silently wrong daylight-saving guess would open or
//! close a window an hour off, which is worse than asking the operator to be explicit.

use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, UtcOffset, Weekday};

use crate::error::Error;

/// One window: `days` (`mon`..`sun`, empty means every day), `start` and `end` as `HH:MM`
/// (end after start; split a window that crosses midnight in two), and `time_zone`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TimeWindow {
    #[serde(default)]
    pub(crate) days: Vec<String>,
    pub(crate) start: String,
    pub(crate) end: String,
    #[serde(default = "utc")]
    pub(crate) time_zone: String,
}

fn utc() -> String {
    "UTC".into()
}

impl TimeWindow {
    /// Checks the fields; the message names what is wrong.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        offset(&self.time_zone)?;
        let start = minutes(&self.start)?;
        let end = minutes(&self.end)?;
        if end <= start {
            return Err(Error::invalid(format!(
                "time window end {} must be after start {}; split a window that crosses midnight in two",
                self.end, self.start
            )));
        }
        for day in &self.days {
            weekday(day)?;
        }
        Ok(())
    }

    /// True when `now` falls inside the window.
    pub(crate) fn contains(&self, now: OffsetDateTime) -> Result<bool, Error> {
        let local = now.to_offset(offset(&self.time_zone)?);
        let day_ok = self.days.is_empty()
            || self
                .days
                .iter()
                .map(|d| weekday(d))
                .collect::<Result<Vec<_>, _>>()?
                .contains(&local.weekday());
        let minute = u32::from(local.hour()) * 60 + u32::from(local.minute());
        Ok(day_ok && minute >= minutes(&self.start)? && minute < minutes(&self.end)?)
    }
}

fn offset(zone: &str) -> Result<UtcOffset, Error> {
    let zone = zone.trim();
    if zone.is_empty()
        || zone.eq_ignore_ascii_case("utc")
        || zone == "Z"
        || zone.eq_ignore_ascii_case("gmt")
    {
        return Ok(UtcOffset::UTC);
    }
    let refused = || {
        Error::invalid(format!(
            "time zone {zone:?} is not supported: use \"UTC\" or a fixed offset such as \"+02:00\" (Ward has no time-zone database, so named zones and daylight saving are not applied)"
        ))
    };
    let (sign, rest) = match zone.as_bytes().first() {
        Some(b'+') => (1i8, &zone[1..]),
        Some(b'-') => (-1i8, &zone[1..]),
        _ => return Err(refused()),
    };
    let (hours, mins) = rest.split_once(':').ok_or_else(refused)?;
    let hours: i8 = hours.parse().map_err(|_| refused())?;
    let mins: i8 = mins.parse().map_err(|_| refused())?;
    if !(0..=14).contains(&hours) || !(0..60).contains(&mins) {
        return Err(refused());
    }
    UtcOffset::from_hms(sign * hours, sign * mins, 0).map_err(|_| refused())
}

fn minutes(text: &str) -> Result<u32, Error> {
    let invalid = || {
        Error::invalid(format!(
            "invalid time of day {text:?}: use HH:MM, 00:00 to 24:00"
        ))
    };
    let (h, m) = text.trim().split_once(':').ok_or_else(invalid)?;
    let h: u32 = h.parse().map_err(|_| invalid())?;
    let m: u32 = m.parse().map_err(|_| invalid())?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(invalid());
    }
    Ok(h * 60 + m)
}

fn weekday(day: &str) -> Result<Weekday, Error> {
    let lower = day.trim().to_ascii_lowercase();
    Ok(match lower.get(..3).unwrap_or("") {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => {
            return Err(Error::invalid(format!(
                "invalid day {day:?}: use mon, tue, wed, thu, fri, sat or sun"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(days: &[&str], start: &str, end: &str, zone: &str) -> TimeWindow {
        TimeWindow {
            days: days.iter().map(|d| (*d).to_string()).collect(),
            start: start.into(),
            end: end.into(),
            time_zone: zone.into(),
        }
    }

    #[test]
    fn windows_in_utc_and_offsets() {
        // 2026-11-27 is a Friday; 23:30 UTC is Saturday 01:30 at +02:00.
        let now = time::macros::datetime!(2026-11-27 23:30 UTC);
        let cases = [
            (window(&["fri"], "23:00", "24:00", "UTC"), true),
            (window(&["fri"], "09:00", "17:00", "UTC"), false),
            (window(&["sat"], "01:00", "02:00", "+02:00"), true),
            (window(&["fri"], "01:00", "02:00", "+02:00"), false),
            (window(&[], "19:00", "20:00", "-04:00"), true),
        ];
        for (w, expected) in cases {
            assert!(w.validate().is_ok(), "{w:?}");
            assert_eq!(w.contains(now).ok(), Some(expected), "{w:?}");
        }
    }

    #[test]
    fn named_zones_and_bad_times_are_refused() {
        let named = window(&["mon"], "09:00", "17:00", "Europe/Paris").validate();
        assert!(matches!(named, Err(Error::InvalidRequest(m)) if m.contains("fixed offset")));
        assert!(window(&["mon"], "17:00", "09:00", "UTC")
            .validate()
            .is_err());
        assert!(window(&["funday"], "09:00", "17:00", "UTC")
            .validate()
            .is_err());
        assert!(window(&[], "9", "17:00", "UTC").validate().is_err());
    }
}
