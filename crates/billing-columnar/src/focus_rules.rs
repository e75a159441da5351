//! The FOCUS values that depend on several Partner Center columns of a row: charge
//! classification, commitments, units, services and periods. Each rule is a plain function
//! of the row's values ([`Val`]) and the export's context ([`RowCtx`]), used by the table in
//! `focus.rs`.

use crate::calendar::{civil_from_days, days_from_civil, MICROS_PER_DAY};
use crate::focus_lookup::unit;
use crate::schema::BillingStatus;
use crate::value::Decimal;

/// One source value of a row (empty strings and absent columns are `Null`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Val<'a> {
    /// The column is not in the export (`basic`).
    Absent,
    Null,
    Str(&'a [u8]),
    Dec(Decimal),
    Int(i64),
    /// Micros since the epoch (dates at midnight UTC).
    Time(i64),
}

impl<'a> Val<'a> {
    pub fn str(self) -> Option<&'a [u8]> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn dec(self) -> Option<Decimal> {
        match self {
            Val::Dec(d) => Some(d),
            Val::Int(i) => Some(Decimal::from_integer(i)),
            _ => None,
        }
    }

    pub fn time(self) -> Option<i64> {
        match self {
            Val::Time(t) => Some(t),
            _ => None,
        }
    }

    fn is_set(self) -> bool {
        !matches!(self, Val::Null | Val::Absent)
    }
}

/// What a rule returns for a row.
pub(crate) enum Out {
    Null,
    Str(&'static str),
    /// The string the rule wrote to its scratch buffer.
    Scratch,
    Dec(Decimal),
    Time(i64),
}

/// What the export says about all its rows.
pub(crate) struct RowCtx {
    pub status: BillingStatus,
    /// The billing period (first day, day after the last day) from the invoice (billed) or
    /// the export period (unbilled); `None` when the caller did not give it.
    pub period: Option<(i64, i64)>,
}

/// A rule: the row's values (in the order the table lists the columns), the context and a
/// scratch buffer for computed strings.
pub(crate) type RowFn = fn(&RowCtx, &[Val], &mut Vec<u8>) -> Out;

/// Whether `needle` occurs in `hay`, ASCII case ignored.
pub(crate) fn contains(hay: &[u8], needle: &str) -> bool {
    find(hay, needle, |_| true).is_some()
}

/// The first position where `needle` occurs in `hay`, ASCII case ignored, and `accept` holds.
/// Only where the first byte matches (either case, found 16 bytes at a time) is the rest
/// compared: trying every window was most of a pricing category's cost, and `memchr2`'s setup
/// cost more than these short searches (profiled).
pub(crate) fn find(hay: &[u8], needle: &str, accept: impl Fn(usize) -> bool) -> Option<usize> {
    let Some((&first, rest)) = needle.as_bytes().split_first() else {
        return Some(0);
    };
    let last = hay.len().checked_sub(rest.len() + 1)?;
    let (lower, upper) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
    let at = |k: usize| hay[k + 1..k + 1 + rest.len()].eq_ignore_ascii_case(rest) && accept(k);
    let mut i = 0;
    while i + 16 <= hay.len() {
        let w = hay[i..i + 16].try_into().expect("16 bytes");
        let mut m = crate::bytes16::either(w, lower, upper);
        while m != 0 {
            let k = i + m.trailing_zeros() as usize;
            if k > last {
                return None;
            }
            if at(k) {
                return Some(k);
            }
            m &= m - 1;
        }
        i += 16;
    }
    (i..=last).find(|&k| (hay[k] == lower || hay[k] == upper) && at(k))
}

fn month_start(days: i64, months_after: i64) -> i64 {
    let (y, m, _) = civil_from_days(days);
    let total = y * 12 + i64::from(m) - 1 + months_after;
    days_from_civil(total.div_euclid(12), (total.rem_euclid(12) + 1) as u32, 1)
}

fn day(t: i64) -> i64 {
    t.div_euclid(MICROS_PER_DAY)
}

// --- periods -------------------------------------------------------------------------------

/// Usage: the export's billing period, else the row's billing cycle (`ChargeStartDate`).
pub(crate) fn usage_period_start(ctx: &RowCtx, v: &[Val], _: &mut Vec<u8>) -> Out {
    match (ctx.period, v[0].time()) {
        (Some((s, _)), _) => Out::Time(s * MICROS_PER_DAY),
        (None, Some(t)) => Out::Time(day(t) * MICROS_PER_DAY),
        _ => Out::Null,
    }
}

/// Usage: the export's billing period end, else the day after `ChargeEndDate`.
pub(crate) fn usage_period_end(ctx: &RowCtx, v: &[Val], _: &mut Vec<u8>) -> Out {
    match (ctx.period, v[0].time()) {
        (Some((_, e)), _) => Out::Time(e * MICROS_PER_DAY),
        (None, Some(t)) => Out::Time((day(t) + 1) * MICROS_PER_DAY),
        _ => Out::Null,
    }
}

/// Reconciliation: the export's billing period, else the month of `ChargeStartDate`.
pub(crate) fn recon_period_start(ctx: &RowCtx, v: &[Val], _: &mut Vec<u8>) -> Out {
    match (ctx.period, v[0].time()) {
        (Some((s, _)), _) => Out::Time(s * MICROS_PER_DAY),
        (None, Some(t)) => Out::Time(month_start(day(t), 0) * MICROS_PER_DAY),
        _ => Out::Null,
    }
}

pub(crate) fn recon_period_end(ctx: &RowCtx, v: &[Val], _: &mut Vec<u8>) -> Out {
    match (ctx.period, v[0].time()) {
        (Some((_, e)), _) => Out::Time(e * MICROS_PER_DAY),
        (None, Some(t)) => Out::Time(month_start(day(t), 1) * MICROS_PER_DAY),
        _ => Out::Null,
    }
}

// --- charge classification -----------------------------------------------------------------

/// Whether `ChargeType` names a refund, cancellation or removal.
fn reverses(charge_type: Option<&[u8]>) -> bool {
    charge_type.is_some_and(|t| {
        ["refund", "cancel", "remove"]
            .iter()
            .any(|w| contains(t, w))
    })
}

/// A correction: a refund, cancellation or removal of a charge of an earlier billing period
/// (`ChargeType`, charge start). Same-period reversals are ordinary rows (FOCUS ChargeClass).
fn is_correction(ctx: &RowCtx, charge_type: Val, start: Val) -> bool {
    let earlier = match (ctx.period, start.time()) {
        (Some((s, _)), Some(t)) => day(t) < s,
        _ => false,
    };
    earlier && reverses(charge_type.str())
}

/// `ChargeType`, charge start.
pub(crate) fn charge_class(ctx: &RowCtx, v: &[Val], _: &mut Vec<u8>) -> Out {
    if is_correction(ctx, v[0], v[1]) {
        Out::Str("Correction")
    } else {
        Out::Null
    }
}

/// An invoice's Azure consumption line in a reconciliation file: an Azure plan product
/// (`ProductId` of the `DZH318Z0` family, which Azure consumption meters use) that is not a
/// reservation or savings-plan order (`ReservationOrderId`).
fn is_azure_line(product_id: Val, reservation: Val) -> bool {
    product_id.str().is_some_and(|p| p.starts_with(b"DZH318Z0")) && !reservation.is_set()
}

/// Reconciliation `ChargeCategory`: `ProductId`, `ReservationOrderId`.
pub(crate) fn recon_category(_: &RowCtx, v: &[Val], _: &mut Vec<u8>) -> Out {
    Out::Str(if is_azure_line(v[0], v[1]) {
        "Usage"
    } else {
        "Purchase"
    })
}

/// Reconciliation `ChargeFrequency`: `ProductId`, `ReservationOrderId`, `BillingFrequency`,
/// `TermAndBillingCycle`. Microsoft leaves BillingFrequency blank for one-time charges and
/// for every unbilled row; there, and in `basic` files (no BillingFrequency), the term's
/// billing cycle decides.
pub(crate) fn recon_frequency(ctx: &RowCtx, v: &[Val], _: &mut Vec<u8>) -> Out {
    if is_azure_line(v[0], v[1]) {
        return Out::Str("Usage-Based");
    }
    // Unbilled rows leave BillingFrequency blank whatever the charge: the term decides there.
    let frequency = match (v[2], ctx.status) {
        (Val::Null, BillingStatus::Unbilled) => Val::Absent,
        (f, _) => f,
    };
    let recurring = match (frequency, v[3].str()) {
        (Val::Str(f), _) => !contains(f, "one"),
        (Val::Absent, Some(term)) => {
            contains(term, "monthly billing")
                || contains(term, "annual billing")
                || contains(term, "subscription")
        }
        _ => false,
    };
    Out::Str(if recurring { "Recurring" } else { "One-Time" })
}

// --- commitments ---------------------------------------------------------------------------

fn savings_plan(kind: Option<&[u8]>) -> bool {
    kind.is_some_and(|k| contains(k, "saving"))
}

/// `CommitmentDiscountCategory`: commitment id, its type or product name.
pub(crate) fn commitment_category(_: &RowCtx, v: &[Val], _: &mut Vec<u8>) -> Out {
    match (v[0].is_set(), savings_plan(v[1].str())) {
        (false, _) => Out::Null,
        (true, true) => Out::Str("Spend"),
        (true, false) => Out::Str("Usage"),
    }
}

/// Reconciliation `CommitmentDiscountType`: `ReservationOrderId`, `ProductName`.
pub(crate) fn recon_commitment_type(_: &RowCtx, v: &[Val], _: &mut Vec<u8>) -> Out {
    match (v[0].is_set(), savings_plan(v[1].str())) {
        (false, _) => Out::Null,
        (true, true) => Out::Str("Savings Plan"),
        (true, false) => Out::Str("Reservation"),
    }
}

/// Usage `CommitmentDiscountStatus`: `BenefitOrderID` (usage rows a benefit covers).
pub(crate) fn commitment_status(_: &RowCtx, v: &[Val], _: &mut Vec<u8>) -> Out {
    if v[0].is_set() {
        Out::Str("Used")
    } else {
        Out::Null
    }
}

/// `CommitmentDiscountQuantity`: commitment id, `ChargeType`, charge start, quantity. The
/// pricing quantity of rows with a commitment, except corrections.
pub(crate) fn commitment_quantity(ctx: &RowCtx, v: &[Val], _: &mut Vec<u8>) -> Out {
    match (v[0].is_set(), v[3].dec()) {
        (true, Some(q)) if !is_correction(ctx, v[1], v[2]) => Out::Dec(q),
        _ => Out::Null,
    }
}

/// `CommitmentDiscountUnit`: as `commitment_quantity`, then the unit's text.
pub(crate) fn commitment_unit(ctx: &RowCtx, v: &[Val], s: &mut Vec<u8>) -> Out {
    match commitment_quantity(ctx, v, s) {
        Out::Null => Out::Null,
        _ => unit(ctx, &v[4..], s),
    }
}

/// Usage `PricingCategory`: `BenefitOrderID`, `MeterName`, `MeterSubCategory`, `SkuName`.
/// Committed when a reservation or savings plan covers the row, Dynamic for spot meters.
pub(crate) fn usage_pricing_category(_: &RowCtx, v: &[Val], _: &mut Vec<u8>) -> Out {
    if v[0].is_set() {
        Out::Str("Committed")
    } else if v[1..]
        .iter()
        .any(|x| x.str().is_some_and(|s| contains(s, "spot")))
    {
        Out::Str("Dynamic")
    } else {
        Out::Str("Standard")
    }
}

/// Reconciliation `EffectiveCost`: `ProductId`, `ReservationOrderId`, `Subtotal`. A
/// reservation or savings-plan purchase pays for future usage, so its effective cost is 0
/// (FOCUS); everything else costs what it bills.
pub(crate) fn recon_effective_cost(_: &RowCtx, v: &[Val], _: &mut Vec<u8>) -> Out {
    if v[1].is_set() && !is_azure_line(v[0], v[1]) {
        return Out::Dec(Decimal::ZERO);
    }
    v[2].dec().map_or(Out::Null, Out::Dec)
}

/// Reconciliation `PricingCurrencyEffectiveCost`: `ProductId`, `ReservationOrderId`,
/// `EffectiveUnitPrice`, `BillableQuantity`.
pub(crate) fn recon_pricing_effective_cost(_: &RowCtx, v: &[Val], _: &mut Vec<u8>) -> Out {
    if v[1].is_set() && !is_azure_line(v[0], v[1]) {
        return Out::Dec(Decimal::ZERO);
    }
    product(&v[2..4])
}

// --- prices and costs ----------------------------------------------------------------------

fn product(v: &[Val]) -> Out {
    Decimal::product(v.iter().map(|x| x.dec())).map_or(Out::Null, Out::Dec)
}

/// Contracted unit price in the pricing currency: `EffectiveUnitPrice`, `UnitPrice`,
/// commitment id. A row a commitment covers has an effective price of 0; its contracted
/// price (before commitment discounts) is then the unit price.
pub(crate) fn pricing_contracted_price(_: &RowCtx, v: &[Val], _: &mut Vec<u8>) -> Out {
    if v[2].is_set() {
        v[1].dec().map_or(Out::Null, Out::Dec)
    } else {
        v[0].dec().map_or(Out::Null, Out::Dec)
    }
}

/// Contracted unit price in the billing currency: as above, then `PCToBCExchangeRate`.
pub(crate) fn contracted_price(ctx: &RowCtx, v: &[Val], s: &mut Vec<u8>) -> Out {
    match pricing_contracted_price(ctx, v, s) {
        Out::Dec(p) => product(&[Val::Dec(p), v[3]]),
        o => o,
    }
}

/// `ContractedCost`: as `contracted_price` × quantity (`v[4]`), else the billed cost
/// (`v[5]`) when a factor is missing (FOCUS: charges without a unit price cost what they bill).
pub(crate) fn contracted_cost(ctx: &RowCtx, v: &[Val], s: &mut Vec<u8>) -> Out {
    match contracted_price(ctx, v, s) {
        Out::Dec(p) => match product(&[Val::Dec(p), v[4]]) {
            Out::Null => v[5].dec().map_or(Out::Null, Out::Dec),
            o => o,
        },
        _ => v[5].dec().map_or(Out::Null, Out::Dec),
    }
}

/// `ListCost`: `UnitPrice` × quantity × `PCToBCExchangeRate`, else the billed cost (`v[3]`).
pub(crate) fn list_cost(_: &RowCtx, v: &[Val], _: &mut Vec<u8>) -> Out {
    match product(&v[..3]) {
        Out::Null => v[3].dec().map_or(Out::Null, Out::Dec),
        o => o,
    }
}

// --- regions, resources, tags --------------------------------------------------------------

/// `RegionId`: the resource location in lower case without spaces ("West Europe" →
/// "westeurope"), as Azure's region names are.
pub(crate) fn region_id(_: &RowCtx, v: &[Val], s: &mut Vec<u8>) -> Out {
    let Some(l) = v[0].str() else {
        return Out::Null;
    };
    s.extend(
        l.iter()
            .filter(|b| !b.is_ascii_whitespace())
            .map(u8::to_ascii_lowercase),
    );
    Out::Scratch
}

/// `ResourceName`: the last segment of the resource id.
pub(crate) fn resource_name(_: &RowCtx, v: &[Val], s: &mut Vec<u8>) -> Out {
    let Some(r) = v[0].str() else {
        return Out::Null;
    };
    let r = r.strip_suffix(b"/").unwrap_or(r);
    let last = memchr::memrchr(b'/', r).map_or(r, |i| &r[i + 1..]);
    s.extend_from_slice(last);
    Out::Scratch
}

/// `ResourceType`: the Azure resource type of the resource id (`Microsoft.Compute/
/// virtualMachines`), else "Resource" for an id without a provider segment.
pub(crate) fn resource_type(_: &RowCtx, v: &[Val], s: &mut Vec<u8>) -> Out {
    let Some(r) = v[0].str() else {
        return Out::Null;
    };
    if let Some(mut parts) = after_providers(r) {
        if let (Some(ns), Some(ty)) = (parts.next(), parts.next()) {
            s.extend_from_slice(ns);
            s.push(b'/');
            s.extend_from_slice(ty);
            return Out::Scratch;
        }
    }
    Out::Str("Resource")
}

/// The `/`-separated segments of a resource id, as `split` yields them, found 16 bytes at a
/// time (a closure call per byte was most of deriving a resource type, profiled).
pub(crate) struct Segments<'a>(Option<&'a [u8]>);

impl<'a> Iterator for Segments<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let r = self.0?;
        match crate::bytes16::position(r, b'/') {
            Some(i) => {
                self.0 = Some(&r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                self.0 = None;
                Some(r)
            }
        }
    }
}

/// The segments of resource id `r` after its first `providers` segment (any case), if any.
pub(crate) fn after_providers(r: &[u8]) -> Option<Segments<'_>> {
    // The first whole segment "providers" (any case), found as a word rather than segment by
    // segment (a `memchr` call per segment, profiled).
    const P: &str = "providers";
    let k = find(r, P, |k| {
        (k == 0 || r[k - 1] == b'/') && r.get(k + P.len()).is_none_or(|&b| b == b'/')
    })?;
    let end = k + P.len();
    Some(Segments((end < r.len()).then(|| &r[end + 1..])))
}

/// `Tags` as a JSON object: Azure usage often writes the pairs without braces, which FOCUS's
/// key-value format (a JSON object) needs.
pub(crate) fn tags(_: &RowCtx, v: &[Val], s: &mut Vec<u8>) -> Out {
    let Some(t) = v[0].str() else {
        return Out::Null;
    };
    let t = t.trim_ascii();
    if t.starts_with(b"{") {
        s.extend_from_slice(t);
    } else {
        s.push(b'{');
        s.extend_from_slice(t);
        s.push(b'}');
    }
    Out::Scratch
}

/// Whether [`tags`] gives `v` back as it is: an object already, nothing to trim.
pub(crate) fn tags_unchanged(v: &[u8]) -> bool {
    v.first() == Some(&b'{') && !v.last().is_some_and(u8::is_ascii_whitespace)
}

/// `SkuId`: `ProductId/SkuId`, unique across products (Partner Center's SkuId alone, such as
/// "0001", is an index within its product).
pub(crate) fn sku_id(_: &RowCtx, v: &[Val], s: &mut Vec<u8>) -> Out {
    match (v[0].str(), v[1].str()) {
        (Some(p), Some(k)) => {
            s.extend_from_slice(p);
            s.push(b'/');
            s.extend_from_slice(k);
            Out::Scratch
        }
        (Some(p), None) => {
            s.extend_from_slice(p);
            Out::Scratch
        }
        _ => Out::Null,
    }
}

/// The first present string, else "Microsoft" (`PublisherName`).
pub(crate) fn or_microsoft(_: &RowCtx, v: &[Val], s: &mut Vec<u8>) -> Out {
    match v.iter().find_map(|x| x.str()) {
        Some(n) => {
            s.extend_from_slice(n);
            Out::Scratch
        }
        None => Out::Str("Microsoft"),
    }
}

/// Reconciliation `ConsumedQuantity`: `ProductId`, `ReservationOrderId`, `BillableQuantity`
/// on the invoice's Azure lines; purchases consume nothing.
pub(crate) fn recon_consumed_quantity(_: &RowCtx, v: &[Val], _: &mut Vec<u8>) -> Out {
    match (is_azure_line(v[0], v[1]), v[2].dec()) {
        (true, Some(q)) => Out::Dec(q),
        _ => Out::Null,
    }
}

/// Reconciliation `ConsumedUnit`: as `recon_consumed_quantity`, then the unit.
pub(crate) fn recon_consumed_unit(ctx: &RowCtx, v: &[Val], s: &mut Vec<u8>) -> Out {
    match recon_consumed_quantity(ctx, v, s) {
        Out::Null => Out::Null,
        _ => unit(ctx, &v[3..], s),
    }
}

/// `x_PartnerCreditApplied`: `PartnerEarnedCreditPercentage` above 0.
pub(crate) fn credit_applied(_: &RowCtx, v: &[Val], _: &mut Vec<u8>) -> Out {
    match v[0].dec() {
        Some(p) => Out::Str(if p.scaled() > 0 { "true" } else { "false" }),
        None => Out::Null,
    }
}

/// `x_PartnerCreditRate`: `PartnerEarnedCreditPercentage` as a fraction ("0.15").
pub(crate) fn credit_rate(_: &RowCtx, v: &[Val], s: &mut Vec<u8>) -> Out {
    let Val::Int(p) = v[0] else {
        return Out::Null;
    };
    let sign = if p < 0 { "-" } else { "" };
    let p = p.unsigned_abs();
    let frac = format!("{:02}", p % 100);
    let frac = frac.trim_end_matches('0');
    let text = if frac.is_empty() {
        format!("{sign}{}", p / 100)
    } else {
        format!("{sign}{}.{frac}", p / 100)
    };
    s.extend_from_slice(text.as_bytes());
    Out::Scratch
}

/// `x_BillingProfileId`: `PartnerId`/currency. A partner is invoiced per billing currency,
/// so that is its billing profile; the id differs from `x_BillingAccountId`, which FinOps
/// hubs needs to tell a CSP partner from an EA enrolment.
pub(crate) fn billing_profile(_: &RowCtx, v: &[Val], s: &mut Vec<u8>) -> Out {
    match (v[0].str(), v[1].str()) {
        (Some(p), Some(c)) => {
            s.extend_from_slice(p);
            s.push(b'/');
            s.extend_from_slice(c);
            Out::Scratch
        }
        _ => Out::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::focus_lookup::{service_category, service_subcategory};

    #[test]
    fn after_providers_finds_the_first_whole_providers_segment() {
        let ids = [
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm",
            "/subscriptions/s/resourceGroups/providersx/PROVIDERS/Microsoft.Web/sites/a",
            "/subscriptions/s/resourcegroups/rg/Providers/",
            "/subscriptions/s/resourcegroups/rg/providers",
            "providers/Microsoft.Sql/servers/x/providers/Microsoft.Insights/y",
            "/subscriptions/s/xproviders/Microsoft.Web",
            "/subscriptions/s/resourceGroups/rg",
            "providers",
            "",
        ];
        for id in ids {
            // The definition: split into segments, skip to the first `providers`.
            let mut parts = id.as_bytes().split(|&b| b == b'/');
            let want = parts
                .by_ref()
                .find(|p| p.eq_ignore_ascii_case(b"providers"))
                .map(|_| parts.collect::<Vec<_>>());
            let got = after_providers(id.as_bytes()).map(|s| s.collect::<Vec<_>>());
            assert_eq!(got, want, "{id}");
        }
    }

    #[test]
    fn contains_ignores_case_and_agrees_with_every_window() {
        let hays = [
            "",
            "s",
            "spot",
            "Spot",
            "xSPOT",
            "sspot",
            "spo",
            "D2s v3 Spot",
            "ssss",
            "ÉSpot",
            // Past 16 bytes, where candidates come from the SIMD masks.
            "Standard D2s v3 Low Priority sSpOt",
            "Standard D2s v3 Low Priority sSpO",
            "tandard D2s v3 Low Priority sSpOt",
            "Standard D2s v3 ",
            "Standard D2s v3 Spot",
        ];
        for hay in hays {
            for needle in ["spot", "s", "Spot", "one", "ssp"] {
                let n = needle.as_bytes();
                let want = hay.len() >= n.len()
                    && hay
                        .as_bytes()
                        .windows(n.len())
                        .any(|w| w.eq_ignore_ascii_case(n));
                assert_eq!(contains(hay.as_bytes(), needle), want, "{hay:?} {needle:?}");
            }
        }
        assert!(contains(b"Low Priority SPOT", "spot"));
        assert!(!contains(b"spo", "spot"));
    }

    fn run(f: RowFn, ctx: &RowCtx, v: &[Val]) -> String {
        let mut s = Vec::new();
        match f(ctx, v, &mut s) {
            Out::Null => "null".into(),
            Out::Str(x) => x.into(),
            Out::Scratch => String::from_utf8(s).unwrap(),
            Out::Dec(d) => format!("{}", d.scaled()),
            Out::Time(t) => format!("t{t}"),
        }
    }

    #[test]
    fn resource_id_segments_split_as_split_does() {
        for id in [
            "",
            "/",
            "a",
            "//x//",
            "/subscriptions/x/resourceGroups/rg/PROVIDERS/Microsoft.Web/sites/app/",
            "/subscriptions/x/providers",
            "/subscriptions/x/providers/",
            "providers/ns",
        ] {
            let ours: Vec<&[u8]> = Segments(Some(id.as_bytes())).collect();
            let std: Vec<&[u8]> = id.as_bytes().split(|&b| b == b'/').collect();
            assert_eq!(ours, std, "{id}");
        }
        let ctx = RowCtx {
            status: BillingStatus::Billed,
            period: None,
        };
        let s = |x: &'static str| Val::Str(x.as_bytes());
        let web = s("/subscriptions/x/resourceGroups/rg/PROVIDERS/Microsoft.Web/sites/app/");
        assert_eq!(run(resource_type, &ctx, &[web]), "Microsoft.Web/sites");
        assert_eq!(run(resource_name, &ctx, &[web]), "app");
        assert_eq!(
            run(resource_type, &ctx, &[s("/subscriptions/x/providers/ns")]),
            "Resource"
        );
        assert_eq!(run(resource_name, &ctx, &[s("plain")]), "plain");
    }

    #[test]
    fn rules() {
        let ctx = RowCtx {
            status: BillingStatus::Billed,
            period: Some((days_from_civil(2026, 9, 1), days_from_civil(2026, 10, 1))),
        };
        let s = |x: &'static str| Val::Str(x.as_bytes());
        assert_eq!(run(unit, &ctx, &[s("1 Hour")]), "Hours");
        assert_eq!(run(unit, &ctx, &[s("1 GB/Month")]), "GB-Months");
        assert_eq!(run(unit, &ctx, &[s("100 Widgets")]), "100 Widgets");
        assert_eq!(run(unit, &ctx, &[s("1 Widget")]), "Widget");
        assert_eq!(run(unit, &ctx, &[s("a/b c-d")]), "Units");
        assert_eq!(run(unit, &ctx, &[Val::Null]), "Units");
        assert_eq!(run(tags, &ctx, &[s("\"a\":\"b\"")]), "{\"a\":\"b\"}");
        assert_eq!(run(region_id, &ctx, &[s("West Europe")]), "westeurope");
        let uri = s(
            "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1",
        );
        assert_eq!(run(resource_name, &ctx, &[uri]), "vm1");
        assert_eq!(
            run(resource_type, &ctx, &[uri]),
            "Microsoft.Compute/virtualMachines"
        );
        assert_eq!(
            run(service_subcategory, &ctx, &[Val::Null, uri]),
            "Virtual Machines"
        );
        assert_eq!(
            run(
                service_category,
                &ctx,
                &[Val::Null, Val::Null, s("Microsoft 365 E3")]
            ),
            "Business Applications"
        );
        assert_eq!(
            run(sku_id, &ctx, &[s("DZH318Z0BQ3Q"), s("0007")]),
            "DZH318Z0BQ3Q/0007"
        );
        // A refund of an earlier period is a correction; one of this period is not.
        let aug = Val::Time(days_from_civil(2026, 8, 3) * MICROS_PER_DAY);
        let sep = Val::Time(days_from_civil(2026, 9, 3) * MICROS_PER_DAY);
        assert_eq!(run(charge_class, &ctx, &[s("Refund"), aug]), "Correction");
        assert_eq!(run(charge_class, &ctx, &[s("Refund"), sep]), "null");
        assert_eq!(run(charge_class, &ctx, &[s("new"), aug]), "null");
        // Blank BillingFrequency is a one-time charge.
        let lic = [s("CFQ7TTC0LF8R"), Val::Null];
        assert_eq!(
            run(
                recon_frequency,
                &ctx,
                &[lic[0], lic[1], Val::Null, s("1 Month Subscription")]
            ),
            "One-Time"
        );
        assert_eq!(
            run(
                recon_frequency,
                &ctx,
                &[lic[0], lic[1], Val::Absent, s("1 Month Subscription")]
            ),
            "Recurring"
        );
        assert_eq!(
            run(
                recon_frequency,
                &ctx,
                &[lic[0], lic[1], s("Monthly"), Val::Null]
            ),
            "Recurring"
        );
        // Unbilled rows leave BillingFrequency blank: the term decides.
        let unbilled = RowCtx {
            status: BillingStatus::Unbilled,
            period: None,
        };
        let monthly = s("One-Year commitment for monthly billing");
        let row = [lic[0], lic[1], Val::Null, monthly];
        assert_eq!(run(recon_frequency, &unbilled, &row), "Recurring");
        assert_eq!(run(recon_frequency, &ctx, &row), "One-Time");
        assert_eq!(
            run(recon_category, &ctx, &[s("DZH318Z0BQ3Q"), Val::Null]),
            "Usage"
        );
        assert_eq!(
            run(recon_category, &ctx, &[s("DZH318Z0BQ3Q"), s("ro-1")]),
            "Purchase"
        );
        assert_eq!(run(credit_rate, &ctx, &[Val::Int(15)]), "0.15");
        assert_eq!(run(credit_rate, &ctx, &[Val::Int(0)]), "0");
        assert_eq!(
            run(usage_pricing_category, &ctx, &[Val::Null, s("D2 v3 Spot")]),
            "Dynamic"
        );
    }
}
