//! Six-field NCRONTAB (`{second} {minute} {hour} {day} {month} {day-of-week}`, UTC), enough to
//! validate a timer schedule and compute its next occurrence as the Functions host does.

use time::{Duration, OffsetDateTime};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    fields: [Vec<bool>; 6],
}

const RANGES: [(u32, u32); 6] = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6)];

fn month_or_day_name(s: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let l = s.to_ascii_lowercase();
    MONTHS
        .iter()
        .position(|m| *m == l)
        .map(|i| i as u32 + 1)
        .or_else(|| DAYS.iter().position(|d| *d == l).map(|i| i as u32))
}

fn parse_field(s: &str, (lo, hi): (u32, u32)) -> Result<Vec<bool>, String> {
    let mut set = vec![false; hi as usize + 1];
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => (
                r,
                st.parse::<u32>()
                    .map_err(|_| format!("bad step in {part:?}"))?,
            ),
            None => (part, 1),
        };
        if step == 0 {
            return Err(format!("zero step in {part:?}"));
        }
        let num = |x: &str| {
            x.parse::<u32>()
                .ok()
                .or_else(|| month_or_day_name(x))
                .ok_or_else(|| format!("bad value {x:?}"))
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (num(a)?, num(b)?)
        } else {
            let a = num(range)?;
            (a, if part.contains('/') { hi } else { a })
        };
        if a < lo || b > hi || a > b {
            return Err(format!("{part:?} is outside {lo}-{hi}"));
        }
        for v in (a..=b).step_by(step as usize) {
            set[v as usize] = true;
        }
    }
    Ok(set)
}

impl std::str::FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split_whitespace().collect();
        if parts.len() != 6 {
            return Err(format!(
                "{s:?}: NCRONTAB needs six fields (second minute hour day month day-of-week)"
            ));
        }
        let mut fields: [Vec<bool>; 6] = Default::default();
        for (i, p) in parts.iter().enumerate() {
            fields[i] = parse_field(p, RANGES[i]).map_err(|e| format!("{s:?}: {e}"))?;
        }
        Ok(Self { fields })
    }
}

impl Schedule {
    fn matches(&self, t: OffsetDateTime) -> bool {
        let f = &self.fields;
        f[0][t.second() as usize]
            && f[1][t.minute() as usize]
            && f[2][t.hour() as usize]
            && f[3][t.day() as usize]
            && f[4][u8::from(t.month()) as usize]
            && f[5][t.weekday().number_days_from_sunday() as usize]
    }

    /// The first occurrence strictly after `after`, searching at most ~5 years ahead.
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let mut t = after.replace_nanosecond(0).ok()? + Duration::seconds(1);
        let end = after + Duration::days(366 * 5);
        while t < end {
            let f = &self.fields;
            if !(f[4][u8::from(t.month()) as usize]
                && f[3][t.day() as usize]
                && f[5][t.weekday().number_days_from_sunday() as usize])
            {
                t = t.replace_time(time::Time::MIDNIGHT) + Duration::days(1);
                continue;
            }
            if !f[2][t.hour() as usize] {
                t = t.replace_time(time::Time::from_hms(t.hour(), 0, 0).ok()?) + Duration::hours(1);
                continue;
            }
            if !f[1][t.minute() as usize] {
                t = t.replace_time(time::Time::from_hms(t.hour(), t.minute(), 0).ok()?)
                    + Duration::minutes(1);
                continue;
            }
            if self.matches(t) {
                return Some(t);
            }
            t += Duration::seconds(1);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn monthly_default_schedule() {
        let s: Schedule = "0 0 6 5 * *".parse().unwrap();
        assert_eq!(
            s.next_after(datetime!(2026-11-25 09:00:00 UTC)),
            Some(datetime!(2026-12-05 06:00:00 UTC))
        );
        assert_eq!(
            s.next_after(datetime!(2026-12-05 06:00:00 UTC)),
            Some(datetime!(2027-01-05 06:00:00 UTC))
        );
    }

    #[test]
    fn steps_ranges_and_names() {
        let s: Schedule = "0 */5 * * * *".parse().unwrap();
        assert_eq!(
            s.next_after(datetime!(2026-11-25 09:01:30 UTC)),
            Some(datetime!(2026-11-25 09:05:00 UTC))
        );
        let s: Schedule = "0 30 9 * * mon-fri".parse().unwrap();
        // 2026-11-28 is a Saturday.
        assert_eq!(
            s.next_after(datetime!(2026-11-27 10:00:00 UTC)),
            Some(datetime!(2026-11-30 09:30:00 UTC))
        );
        assert!("0 0 6 5 *".parse::<Schedule>().is_err());
        assert!("0 61 * * * *".parse::<Schedule>().is_err());
        assert!("0 */0 * * * *".parse::<Schedule>().is_err());
        let never: Schedule = "0 0 0 31 2 *".parse().unwrap();
        assert_eq!(never.next_after(datetime!(2026-01-01 00:00:00 UTC)), None);
    }
}
