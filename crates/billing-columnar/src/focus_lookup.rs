//! Lookups of the FOCUS view: Partner Center's unit texts in FOCUS unit format, and Azure
//! resource providers and product names as FOCUS services (ServiceName, ServiceCategory,
//! ServiceSubcategory). Our own tables, after the FinOps toolkit's PricingUnits and Services
//! lists.

use crate::focus_rules::{after_providers, contains, Out, RowCtx, Val};

// --- units ---------------------------------------------------------------------------------

/// Partner Center's unit texts in FOCUS unit format (our own table of the units its exports
/// use, after the FinOps toolkit's PricingUnits list): (text, FOCUS unit).
#[rustfmt::skip]
const UNITS: &[(&str, &str)] = &[
    ("1 Hour", "Hours"),
    ("1 Hours", "Hours"),
    ("1/Hour", "Units/Hour"),
    ("1 Day", "Days"),
    ("1/Day", "Units/Day"),
    ("1 Month", "Months"),
    ("1/Month", "Units/Month"),
    ("1 Year", "Years"),
    ("1 GB", "GB"),
    ("1 GB/Month", "GB-Months"),
    ("1 GB/Hour", "GB-Hours"),
    ("1 GB/Day", "GB-Days"),
    ("1 GiB/Hour", "GiB-Hours"),
    ("1 GiB/Month", "GiB-Months"),
    ("1 TB", "TB"),
    ("1 TB/Month", "TB-Months"),
    ("1 MB", "MB"),
    ("10 GB", "10 GB"),
    ("100 GB", "100 GB"),
    ("1 Count", "Count"),
    ("10K", "10000 Units"),
    ("100K", "100000 Units"),
    ("1K", "1000 Units"),
    ("1M", "1000000 Units"),
    ("10K Transactions", "10000 Transactions"),
    ("1M Transactions", "1000000 Transactions"),
    ("1 Licenses", "Licenses"),
    ("1 License", "Licenses"),
    ("Each", "Units"),
];

/// A unit in FOCUS form: the table's unit, else Microsoft's text when it already fits the
/// format (letters and digits, at most a number before), else `Units`. The first present of
/// the row's values is the unit text.
pub(crate) fn unit(_: &RowCtx, v: &[Val], s: &mut Vec<u8>) -> Out {
    let Some(text) = v.iter().find_map(|x| x.str()) else {
        return Out::Str("Units");
    };
    let text = text.trim_ascii();
    if let Some((_, u)) = UNITS
        .iter()
        .find(|(k, _)| k.as_bytes().eq_ignore_ascii_case(text))
    {
        return Out::Str(u);
    }
    let words: Vec<&[u8]> = text
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
        .collect();
    let word_ok = |w: &[u8]| {
        w.first().is_some_and(u8::is_ascii_alphabetic) && w.iter().all(u8::is_ascii_alphanumeric)
    };
    let fits = match words.as_slice() {
        [] => false,
        [n, rest @ ..] if n.iter().all(u8::is_ascii_digit) => {
            !rest.is_empty() && rest.iter().all(|w| word_ok(w))
        }
        all => all.iter().all(|w| word_ok(w)),
    };
    if !fits {
        return Out::Str("Units");
    }
    // "1 Widget" is a Widget; other counts stay ("100 Widgets").
    let words = match words.as_slice() {
        [one, rest @ ..] if *one == b"1" => rest,
        all => all,
    };
    s.extend_from_slice(&words.join(&b' '));
    Out::Scratch
}

/// Azure resource providers as FinOps services (after the FinOps toolkit's Services list, in
/// our own table): lower-case namespace, ServiceName, ServiceCategory, ServiceSubcategory.
#[rustfmt::skip]
const SERVICES: &[(&str, &str, &str, &str)] = &[
    ("microsoft.apimanagement", "API Management", "Integration", "API Management"),
    ("microsoft.cache", "Azure Cache for Redis", "Databases", "Caching"),
    ("microsoft.cdn", "Content Delivery Network", "Networking", "Content Delivery"),
    ("microsoft.cognitiveservices", "Azure AI services", "AI and Machine Learning", "AI Platforms"),
    ("microsoft.compute", "Virtual Machines", "Compute", "Virtual Machines"),
    ("microsoft.containerinstance", "Container Instances", "Compute", "Containers"),
    ("microsoft.containerregistry", "Container Registry", "Compute", "Containers"),
    ("microsoft.containerservice", "Azure Kubernetes Service", "Compute", "Containers"),
    ("microsoft.dbformysql", "Azure Database for MySQL", "Databases", "Relational Databases"),
    ("microsoft.dbforpostgresql", "Azure Database for PostgreSQL", "Databases", "Relational Databases"),
    ("microsoft.documentdb", "Azure Cosmos DB", "Databases", "NoSQL Databases"),
    ("microsoft.eventhub", "Event Hubs", "Analytics", "Streaming Analytics"),
    ("microsoft.insights", "Azure Monitor", "Management and Governance", "Observability"),
    ("microsoft.keyvault", "Key Vault", "Security", "Secret Management"),
    ("microsoft.logic", "Logic Apps", "Integration", "Workflow Orchestration"),
    ("microsoft.network", "Virtual Network", "Networking", "Network Infrastructure"),
    ("microsoft.operationalinsights", "Log Analytics", "Management and Governance", "Observability"),
    ("microsoft.recoveryservices", "Azure Backup", "Storage", "Backup Storage"),
    ("microsoft.security", "Microsoft Defender for Cloud", "Security", "Security Posture Management"),
    ("microsoft.servicebus", "Service Bus", "Integration", "Messaging"),
    ("microsoft.sql", "Azure SQL Database", "Databases", "Relational Databases"),
    ("microsoft.storage", "Storage Accounts", "Storage", "Storage Platforms"),
    ("microsoft.web", "App Service", "Web", "Application Platforms"),
];

/// Products and meter categories without a resource provider (licences, reconciliation
/// lines): a word of the name, ServiceCategory, ServiceSubcategory.
#[rustfmt::skip]
const PRODUCT_WORDS: &[(&str, &str, &str)] = &[
    ("Microsoft 365", "Business Applications", "Productivity and Collaboration"),
    ("Office 365", "Business Applications", "Productivity and Collaboration"),
    ("Exchange", "Business Applications", "Productivity and Collaboration"),
    ("Teams", "Business Applications", "Productivity and Collaboration"),
    ("SharePoint", "Business Applications", "Productivity and Collaboration"),
    ("Dynamics 365", "Business Applications", "Other (Business Applications)"),
    ("Power BI", "Analytics", "Business Intelligence"),
    ("Entra", "Identity", "Identity and Access Management"),
    ("Defender", "Security", "Threat Detection and Response"),
    ("Virtual Machines", "Compute", "Virtual Machines"),
    ("Storage", "Storage", "Storage Platforms"),
    ("Bandwidth", "Networking", "Network Connectivity"),
    ("Virtual Network", "Networking", "Network Infrastructure"),
    ("SQL Database", "Databases", "Relational Databases"),
    ("Cosmos DB", "Databases", "NoSQL Databases"),
    ("Log Analytics", "Management and Governance", "Observability"),
    ("Azure Monitor", "Management and Governance", "Observability"),
    ("App Service", "Web", "Application Platforms"),
    ("Functions", "Compute", "Serverless Compute"),
];

/// The provider namespace of a row: `ConsumedService`, else the `/providers/{ns}/` segment of
/// the resource id.
fn namespace<'a>(consumed: Val<'a>, resource: Val<'a>) -> Option<&'a [u8]> {
    if let Some(c) = consumed.str() {
        return Some(c);
    }
    after_providers(resource.str()?)?.next()
}

/// A namespace's length, 11th byte and last byte, lower-cased: different for every entry of
/// [`SERVICES`] (a unit test holds it), so one comparison of integers finds the only entry a
/// namespace can be.
const fn signature(k: &[u8]) -> u32 {
    if k.len() <= 10 {
        return 0;
    }
    (k.len() as u32) << 16
        | (k[10].to_ascii_lowercase() as u32) << 8
        | k[k.len() - 1].to_ascii_lowercase() as u32
}

/// [`signature`] of each entry of [`SERVICES`], in its order.
const SIGNATURES: [u32; SERVICES.len()] = {
    let mut all = [0; SERVICES.len()];
    let mut i = 0;
    while i < SERVICES.len() {
        all[i] = signature(SERVICES[i].0.as_bytes());
        i += 1;
    }
    all
};

/// The entry of [`SERVICES`] for a namespace, compared case-blind. Three rules look each
/// row's namespace up; a scan of the table, a case-blind compare per entry of the same
/// length, was 4% of the FOCUS encoder's instructions (callgrind).
fn service_of(
    ns: &[u8],
) -> Option<&'static (&'static str, &'static str, &'static str, &'static str)> {
    let sig = signature(ns);
    let i = SIGNATURES.iter().position(|&s| s == sig)?;
    let entry = &SERVICES[i];
    entry.0.as_bytes().eq_ignore_ascii_case(ns).then_some(entry)
}

/// (ServiceName or `None` for "the row's own name", ServiceCategory, ServiceSubcategory) from
/// `ConsumedService`, `ResourceURI` and the names that follow.
fn service<'a>(v: &[Val<'a>]) -> (Option<&'static str>, &'static str, &'static str) {
    if let Some(ns) = namespace(v[0], v[1]) {
        if let Some((_, n, c, s)) = service_of(ns) {
            return (Some(n), c, s);
        }
    }
    for name in v[2..].iter().filter_map(|x| x.str()) {
        if let Some((_, c, s)) = PRODUCT_WORDS.iter().find(|e| contains(name, e.0)) {
            return (None, c, s);
        }
    }
    (None, "Other", "Other (Other)")
}

/// `ServiceName`: the service of the provider namespace, else the first name of the row
/// (`MeterCategory`, `ProductName`, `SkuName`), else "Microsoft".
pub(crate) fn service_name(_: &RowCtx, v: &[Val], s: &mut Vec<u8>) -> Out {
    match service(v) {
        (Some(n), ..) => Out::Str(n),
        _ => match v[2..].iter().find_map(|x| x.str()) {
            Some(n) => {
                s.extend_from_slice(n);
                Out::Scratch
            }
            None => Out::Str("Microsoft"),
        },
    }
}

pub(crate) fn service_category(_: &RowCtx, v: &[Val], _: &mut Vec<u8>) -> Out {
    Out::Str(service(v).1)
}

pub(crate) fn service_subcategory(_: &RowCtx, v: &[Val], _: &mut Vec<u8>) -> Out {
    Out::Str(service(v).2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_namespace_finds_its_own_service_whatever_its_case() {
        for (ns, name, category, subcategory) in SERVICES {
            assert_eq!(*ns, ns.to_ascii_lowercase(), "the table is lower-case");
            // As Partner Center writes it (`Microsoft.Compute`) and shouted.
            let written = format!("M{}{}", &ns[1..10], ns[10..].to_ascii_uppercase());
            for text in [written.clone(), ns.to_ascii_uppercase()] {
                let v = [Val::Str(text.as_bytes()), Val::Null, Val::Null];
                assert_eq!(
                    service(&v),
                    (Some(*name), *category, *subcategory),
                    "{text}"
                );
            }
        }
        let mut signatures = SIGNATURES.to_vec();
        signatures.sort_unstable();
        signatures.dedup();
        assert_eq!(
            signatures.len(),
            SERVICES.len(),
            "signatures tell entries apart"
        );
        assert!(
            !signatures.contains(&0),
            "every namespace is longer than `microsoft.`"
        );
        // A different last letter, or the same signature as an entry but other letters.
        for near in [
            &b"Microsoft.Computf"[..],
            b"Microsoft.Cxxxxxe",
            b"Microsoft.",
        ] {
            let unknown = [Val::Str(near), Val::Null, Val::Null];
            assert_eq!(service(&unknown), (None, "Other", "Other (Other)"));
        }
    }
}
