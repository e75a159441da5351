//! Calendar dates and instants as Partner Center writes them (ISO 8601, with or without a
//! time and an offset), in days and microseconds since 1970-01-01 UTC.

use crate::value::ValueError;

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's days-from-civil).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

fn num(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u32, |n, b| n * 10 + u32::from(b - b'0')))
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

pub(crate) const MICROS_PER_DAY: i64 = 86_400_000_000;

/// `YYYY-MM-DD[(T| )hh:mm[:ss[.fffffff]]][Z|±hh:mm]` as microseconds since the epoch, UTC.
/// No zone means UTC (Microsoft writes `Z`). Digits below a microsecond are truncated.
pub(crate) fn parse_timestamp(s: &[u8]) -> Result<i64, ValueError> {
    let bad = ValueError::NotADate;
    if s.len() < 10 || s[4] != b'-' || s[7] != b'-' {
        return Err(bad);
    }
    let y = i64::from(num(&s[0..4]).ok_or(bad.clone())?);
    let m = num(&s[5..7]).ok_or(bad.clone())?;
    let d = num(&s[8..10]).ok_or(bad.clone())?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return Err(bad);
    }
    let mut micros = days_from_civil(y, m, d) * MICROS_PER_DAY;
    let mut rest = &s[10..];
    if let Some((&(b'T' | b' '), r)) = rest.split_first() {
        if r.len() < 5 || r[2] != b':' {
            return Err(bad);
        }
        let hh = num(&r[0..2]).ok_or(bad.clone())?;
        let mm = num(&r[3..5]).ok_or(bad.clone())?;
        let mut ss = 0;
        rest = &r[5..];
        if let Some((b':', r)) = rest.split_first() {
            if r.len() < 2 {
                return Err(bad);
            }
            ss = num(&r[0..2]).ok_or(bad.clone())?;
            rest = &r[2..];
        }
        if hh > 23 || mm > 59 || ss > 60 {
            return Err(bad);
        }
        micros += (i64::from(hh) * 3600 + i64::from(mm) * 60 + i64::from(ss)) * 1_000_000;
        if let Some((b'.', r)) = rest.split_first() {
            let n = r.iter().take_while(|b| b.is_ascii_digit()).count();
            if n == 0 || n > 9 {
                return Err(bad);
            }
            let mut frac = 0i64;
            for (i, b) in r[..n].iter().enumerate() {
                if i < 6 {
                    frac = frac * 10 + i64::from(b - b'0');
                }
            }
            for _ in n..6 {
                frac *= 10;
            }
            micros += frac;
            rest = &r[n..];
        }
        match rest {
            [] | [b'Z'] | [b'z'] => {}
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let oh = num(&[*h1, *h2]).ok_or(bad.clone())?;
                let om = num(&[*m1, *m2]).ok_or(bad.clone())?;
                let off = (i64::from(oh) * 60 + i64::from(om)) * 60_000_000;
                micros -= if *sign == b'+' { off } else { -off };
            }
            _ => return Err(bad),
        }
    } else if !rest.is_empty() {
        return Err(bad);
    }
    Ok(micros)
}

/// A calendar day (days since the epoch); a time part must be midnight (UTC).
pub(crate) fn parse_date(s: &[u8]) -> Result<i32, ValueError> {
    let micros = parse_timestamp(s)?;
    if micros.rem_euclid(MICROS_PER_DAY) != 0 {
        return Err(ValueError::NotMidnight);
    }
    i32::try_from(micros.div_euclid(MICROS_PER_DAY)).map_err(|_| ValueError::OutOfRange)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_instants() {
        assert_eq!(parse_date(b"1970-01-01"), Ok(0));
        assert_eq!(parse_date(b"2026-01-31T00:00:00Z"), Ok(20484));
        assert_eq!(parse_date(b"2024-02-29T00:00:00.0000000Z"), Ok(19782));
        assert_eq!(parse_date(b"2024-02-30"), Err(ValueError::NotADate));
        assert_eq!(
            parse_date(b"2026-01-31T23:59:00Z"),
            Err(ValueError::NotMidnight)
        );
        assert_eq!(
            parse_timestamp(b"2019-09-18T07:52:32.9930816Z"),
            Ok(days_from_civil(2019, 9, 18) * MICROS_PER_DAY + 28_352_993_081)
        );
        assert_eq!(
            parse_timestamp(b"1970-01-01T01:00:00+01:00"),
            Ok(0),
            "offsets are normalised to UTC"
        );
        assert_eq!(parse_timestamp(b"2/1/2019 0:00"), Err(ValueError::NotADate));
        for z in [-800_000, -1, 0, 1, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }
}
