//! A column's last parsed text and its value, so that a repeated text is not parsed again.

/// Longest text [`Recent`] keeps.
const RECENT_TEXT: usize = 32;

/// The last text parsed in a column and its value. Billing rows repeat dates, timestamps and
/// exchange rates from one row to the next, and comparing a text costs less than parsing it
/// again (perf: timestamp parsing was 2% of the parser's thread). Texts shorter than a word
/// parse about as fast as they compare, so only longer ones are kept.
#[derive(Clone, Copy)]
pub(super) struct Recent<T> {
    text: [u8; RECENT_TEXT],
    /// 0 while nothing is kept.
    len: u8,
    value: T,
}

impl<T: Copy + Default> Default for Recent<T> {
    fn default() -> Self {
        Self {
            text: [0; RECENT_TEXT],
            len: 0,
            value: T::default(),
        }
    }
}

impl<T: Copy> Recent<T> {
    /// The value of `text` if it is the last text kept (never while none is).
    #[inline]
    fn get(&self, text: &[u8]) -> Option<T> {
        let kept = &self.text[..usize::from(self.len)];
        (!kept.is_empty() && crate::dict::same(text, kept)).then_some(self.value)
    }

    /// `text`'s value, parsed by `parse` unless it repeats the last text kept.
    #[inline]
    pub(super) fn parse<E>(
        &mut self,
        text: &[u8],
        parse: impl FnOnce(&[u8]) -> Result<T, E>,
    ) -> Result<T, E> {
        if let Some(v) = self.get(text) {
            return Ok(v);
        }
        let v = parse(text)?;
        if (8..=RECENT_TEXT).contains(&text.len()) {
            self.text[..text.len()].copy_from_slice(text);
            self.len = text.len() as u8;
            self.value = v;
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::parse_timestamp;
    use crate::value::Decimal;

    #[test]
    fn recent_reuses_only_the_same_text() {
        let mut r = Recent::<i64>::default();
        let calls = std::cell::Cell::new(0);
        let parse = |t: &[u8]| {
            calls.set(calls.get() + 1);
            parse_timestamp(t)
        };
        let a = b"2026-09-01T00:00:00Z";
        let b = b"2026-09-01T00:00:01Z";
        let first = r.parse(a, parse).unwrap();
        assert_eq!(r.parse(a, parse).unwrap(), first);
        // One byte differs, or the text is a prefix: parsed again.
        assert_eq!(r.parse(b, parse).unwrap(), first + 1_000_000);
        assert_eq!(r.parse(&a[..10], parse).unwrap(), first);
        assert_eq!(r.parse(&a[..10], parse).unwrap(), first);
        // An error is returned each time and leaves the kept text as it was.
        assert!(r.parse(b"2026-02-30", parse).is_err());
        assert!(r.parse(b"2026-02-30", parse).is_err());
        assert_eq!(r.parse(&a[..10], parse).unwrap(), first);
        assert_eq!(calls.get(), 5);
    }

    #[test]
    fn recent_keeps_neither_short_nor_long_texts() {
        let mut r = Recent::<(Decimal, bool)>::default();
        let calls = std::cell::Cell::new(0);
        let parse = |t: &[u8]| {
            calls.set(calls.get() + 1);
            Decimal::parse(t)
        };
        let long = b"0.123456789012345678901234567890123";
        for text in [&b"1.5"[..], long, b"1.5", long] {
            r.parse(text, parse).unwrap();
        }
        assert_eq!(calls.get(), 4);
        // The rounding flag comes back with the value.
        let e = b"3.5999999999999998E-06";
        assert!(r.parse(e, parse).unwrap().1);
        assert!(r.parse(e, parse).unwrap().1);
        assert_eq!(calls.get(), 5);
    }
}
