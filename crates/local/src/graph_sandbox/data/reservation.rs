//! A reservation purchase in a reconciliation file: a charge billed usage never details.

use serde_json::{json, Value};

use super::{draw_row, money, put_product, usd_rate, Customer, ExportFacts, Rng, PRODUCTS};

/// A one-year reservation bought for the first customer, when the export has one: a one-time
/// charge (blank `BillingFrequency`) on the VM product with a SKU of its own, so no usage row
/// matches it.
pub(super) fn purchase(
    facts: &ExportFacts,
    customers: &[Customer],
) -> Option<serde_json::Map<String, Value>> {
    if !facts.reservation_purchase {
        return None;
    }
    let mut rng = Rng::derived(facts.seed, &format!("{}#reservation", facts.export_key));
    let mut row = draw_row(facts, customers, &mut rng);
    let c = &customers[0];
    let p = &PRODUCTS[0];
    put_product(&mut row, p);
    let rate = usd_rate(&facts.currency);
    let subtotal = (730.0 * rate * 100.0).round() / 100.0;
    let tax = (subtotal * 0.19 * 100.0).round() / 100.0;
    let order = rng.uuid();
    for (k, v) in [
        ("CustomerId", json!(c.id.to_string())),
        ("CustomerName", json!(c.name)),
        ("CustomerDomainName", json!(c.domain)),
        ("CustomerCountry", json!(c.country)),
        ("SkuId", json!("02RX")),
        ("SkuName", json!("Reserved VM Instance, D2 v3, 1 Year")),
        ("ProductName", json!("Reserved VM Instance")),
        ("ChargeType", json!("New")),
        ("BillingFrequency", json!("")),
        ("TermAndBillingCycle", json!("One-Year commitment")),
        ("ReservationOrderId", json!(order.to_string())),
        ("UnitType", json!("1 Year")),
        ("UnitPrice", money(730.0, 6)),
        ("EffectiveUnitPrice", money(730.0, 6)),
        ("Quantity", json!(1)),
        ("BillableQuantity", money(1.0, 6)),
        ("PCToBCExchangeRate", money(rate, 4)),
        ("Subtotal", money(subtotal, 2)),
        ("TaxTotal", money(tax, 2)),
        ("Total", money(subtotal + tax, 2)),
        ("Currency", json!(facts.currency)),
    ] {
        row.insert(k.to_string(), v);
    }
    Some(row)
}
