//! BM25 ranking over a small in-memory corpus built once at start.

use async_trait::async_trait;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use storefront_app::ports::{Fulfiller, FulfillmentError};
use storefront_domain::catalog::{Catalog, Product};

/// The documentation shipped inside the binary: (path, Markdown).
const DOCS: &[(&str, &str)] = &[
    ("README.md", include_str!("../../../README.md")),
    ("ARCHITECTURE.md", include_str!("../../../ARCHITECTURE.md")),
    (
        "docs/configuration.md",
        include_str!("../../../docs/configuration.md"),
    ),
    ("docs/catalog.md", include_str!("../../../docs/catalog.md")),
    ("docs/agents.md", include_str!("../../../docs/agents.md")),
    (
        "docs/payments.md",
        include_str!("../../../docs/payments.md"),
    ),
    (
        "docs/api-notes.md",
        include_str!("../../../docs/api-notes.md"),
    ),
];

struct Document {
    title: String,
    url: String,
    /// The text's non-empty lines, each as a snippet shows it and with the terms it holds
    /// (sorted), worked out once: a snippet is the first line naming a query term.
    lines: Vec<Line>,
    /// Term frequencies of title (counted twice: a title match matters more) and body.
    terms: HashMap<String, u32>,
    length: u32,
}

struct Line {
    /// Trimmed, and cut to about 200 characters.
    shown: String,
    terms: Vec<String>,
}

impl Line {
    fn of(line: &str) -> Self {
        let shown = if line.chars().count() > 200 {
            format!("{}…", line.chars().take(200).collect::<String>())
        } else {
            line.to_owned()
        };
        let mut terms: Vec<String> = tokens(line).collect();
        terms.sort();
        terms.dedup();
        Self { shown, terms }
    }
}

pub struct OfflineSearch {
    documents: Vec<Document>,
    document_frequency: HashMap<String, u32>,
    average_length: f64,
}

fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| t.chars().count() >= 2)
        .map(str::to_lowercase)
}

/// Splits a Markdown file into one document per `##` section.
fn sections(path: &str, markdown: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut title = path.to_owned();
    let mut anchor = String::new();
    let mut body = String::new();
    let mut flush = |title: &str, anchor: &str, body: &mut String| {
        if !body.trim().is_empty() {
            let url = if anchor.is_empty() {
                path.to_owned()
            } else {
                format!("{path}#{anchor}")
            };
            out.push((title.to_owned(), url, std::mem::take(body)));
        }
        body.clear();
    };
    for line in markdown.lines() {
        if let Some(heading) = line.strip_prefix("## ").or_else(|| line.strip_prefix("# ")) {
            flush(&title, &anchor, &mut body);
            title = heading.trim().to_owned();
            anchor = heading
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    c if c.is_alphanumeric() => Some(c),
                    ' ' | '-' => Some('-'),
                    _ => None,
                })
                .collect();
        } else {
            body.push_str(line);
            body.push('\n');
        }
    }
    flush(&title, &anchor, &mut body);
    out
}

impl OfflineSearch {
    /// Indexes the catalog's products and the bundled documentation.
    pub fn new(catalog: &Catalog) -> Self {
        let mut raw: Vec<(String, String, String)> = catalog
            .products()
            .iter()
            .map(|p: &Product| {
                (
                    p.name.clone(),
                    format!("/api/v1/products/{}", p.id),
                    format!("{} ({}, {}). {}", p.id, p.category, p.sku, p.description),
                )
            })
            .collect();
        for (path, markdown) in DOCS {
            raw.extend(sections(path, markdown));
        }
        let mut document_frequency: HashMap<String, u32> = HashMap::new();
        let documents: Vec<Document> = raw
            .into_iter()
            .map(|(title, url, text)| {
                let mut terms: HashMap<String, u32> = HashMap::new();
                for t in tokens(&title).chain(tokens(&title)).chain(tokens(&text)) {
                    *terms.entry(t).or_default() += 1;
                }
                for t in terms.keys() {
                    *document_frequency.entry(t.clone()).or_default() += 1;
                }
                let length = terms.values().sum();
                let lines = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(Line::of)
                    .collect();
                Document {
                    title,
                    url,
                    lines,
                    terms,
                    length,
                }
            })
            .collect();
        let average_length = documents.iter().map(|d| f64::from(d.length)).sum::<f64>()
            / documents.len().max(1) as f64;
        Self {
            documents,
            document_frequency,
            average_length,
        }
    }

    /// The best `limit` documents for the query, best first (ties keep corpus order).
    pub fn search(&self, query: &str, limit: usize) -> Vec<Value> {
        const K1: f64 = 1.2;
        const B: f64 = 0.75;
        let n = self.documents.len() as f64;
        let mut query_terms: Vec<String> = tokens(query).collect();
        query_terms.sort();
        query_terms.dedup();
        let mut scored: Vec<(f64, usize)> = self
            .documents
            .iter()
            .enumerate()
            .filter_map(|(i, d)| {
                let score: f64 = query_terms
                    .iter()
                    .filter_map(|t| {
                        let tf = f64::from(*d.terms.get(t)?);
                        let df = f64::from(self.document_frequency[t]);
                        let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
                        let norm = K1 * (1.0 - B + B * f64::from(d.length) / self.average_length);
                        Some(idf * tf * (K1 + 1.0) / (tf + norm))
                    })
                    .sum();
                (score > 0.0).then_some((score, i))
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored
            .into_iter()
            .take(limit)
            .map(|(score, i)| {
                let d = &self.documents[i];
                json!({
                    "title": d.title,
                    "url": d.url,
                    "snippet": d.snippet(&query_terms),
                    "score": (score * 1000.0).round() / 1000.0,
                })
            })
            .collect()
    }
}

impl Document {
    /// The first line of the text that mentions a query term (else its first line), trimmed to
    /// about 200 characters.
    fn snippet(&self, query_terms: &[String]) -> &str {
        self.lines
            .iter()
            .find(|l| query_terms.iter().any(|t| l.terms.binary_search(t).is_ok()))
            .or_else(|| self.lines.first())
            .map_or("", |l| l.shown.as_str())
    }
}

#[async_trait]
impl Fulfiller for OfflineSearch {
    /// A search of an index held in memory.
    fn computes_in_process(&self) -> bool {
        true
    }

    async fn fulfill(
        &self,
        _product: &Product,
        configuration: &Map<String, Value>,
        _quantity: i64,
    ) -> Result<Value, FulfillmentError> {
        let query = configuration
            .get("query")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let limit = configuration
            .get("max_results")
            .and_then(Value::as_u64)
            .unwrap_or(10) as usize;
        let results = self.search(query, limit);
        Ok(json!({ "query": query, "source": "offline-index", "results": results }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storefront_domain::catalog::{Availability, CatalogSpec, DEFAULT_CATALOG_TOML};

    #[test]
    fn ranks_the_matching_product_first() {
        let spec: CatalogSpec = toml::from_str(DEFAULT_CATALOG_TOML).unwrap();
        let catalog = Catalog::build(spec, |_| Availability::Available).unwrap();
        let search = OfflineSearch::new(&catalog);
        let results = search.search("H100 GPU", 5);
        assert!(!results.is_empty());
        assert_eq!(results[0]["url"], "/api/v1/products/gpu-h100-machine");
        assert!(search.search("zzzxqv", 5).is_empty());
    }
}
