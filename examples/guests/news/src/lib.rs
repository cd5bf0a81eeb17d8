//! `news`: the seed's content use case. Takes an article (JSON with an
//! HTML body), extracts its title, links and word counts, and categorises
//! it by keywords. The keyword index is built once per instance in
//! `#[init]`.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use fnhost_guest::Error;
use serde::{Deserialize, Serialize};

/// The event.
#[derive(Deserialize, Debug)]
pub struct Article {
    /// Optional explicit title; else `<title>` or the first `<h1>`.
    #[serde(default)]
    pub title: Option<String>,
    /// The article's HTML (or plain text).
    pub html: String,
}

/// The answer.
#[derive(Serialize, Debug, PartialEq)]
pub struct Analysis {
    /// The title found.
    pub title: Option<String>,
    /// `href` targets, in order of appearance.
    pub links: Vec<String>,
    /// Words in the visible text.
    pub word_count: usize,
    /// Up to 5 most frequent words of 4+ letters: (word, count).
    pub top_words: Vec<(String, usize)>,
    /// Best category, or `"general"` when no keyword matched.
    pub category: String,
    /// Keyword hits per category.
    pub scores: BTreeMap<String, u32>,
}

const CATEGORIES: &[(&str, &[&str])] = &[
    (
        "sports",
        &[
            "match",
            "goal",
            "league",
            "team",
            "coach",
            "season",
            "score",
            "player",
            "tournament",
            "cup",
        ],
    ),
    (
        "technology",
        &[
            "software", "computer", "chip", "startup", "internet", "cloud", "data", "robot",
            "code", "server",
        ],
    ),
    (
        "business",
        &[
            "market", "shares", "profit", "revenue", "bank", "economy", "investor", "company",
            "stock", "trade",
        ],
    ),
    (
        "politics",
        &[
            "election",
            "minister",
            "parliament",
            "vote",
            "government",
            "policy",
            "senate",
            "president",
            "law",
            "party",
        ],
    ),
    (
        "science",
        &[
            "research",
            "study",
            "scientists",
            "planet",
            "species",
            "climate",
            "experiment",
            "physics",
            "space",
            "cells",
        ],
    ),
];

static INDEX: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();

/// Builds the keyword → category index (once per instance).
#[fnhost_guest::init]
pub fn build_index() -> Result<(), Error> {
    index();
    Ok(())
}

fn index() -> &'static HashMap<&'static str, &'static str> {
    INDEX.get_or_init(|| {
        CATEGORIES
            .iter()
            .flat_map(|(cat, words)| words.iter().map(move |w| (*w, *cat)))
            .collect()
    })
}

fn between<'a>(html: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let lower = html.to_ascii_lowercase();
    let start = lower.find(open)? + open.len();
    let start = start + lower[start..].find('>')? + 1;
    let end = start + lower[start..].find(close)?;
    Some(html[start..end].trim())
}

fn links(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find("href=") {
        rest = &rest[i + 5..];
        let Some(q) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            continue;
        };
        rest = &rest[1..];
        if let Some(end) = rest.find(q) {
            out.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    out
}

fn visible_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// Analyses one article (plain Rust: also callable natively).
pub fn analyse(article: &Article) -> Analysis {
    let html = &article.html;
    let title = article
        .title
        .clone()
        .or_else(|| between(html, "<title", "</title>").map(str::to_string))
        .or_else(|| between(html, "<h1", "</h1>").map(str::to_string));
    let text = visible_text(html);
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let mut scores: BTreeMap<String, u32> = BTreeMap::new();
    let idx = index();
    for w in &words {
        if w.chars().count() >= 4 {
            *counts.entry(w).or_default() += 1;
        }
        if let Some(cat) = idx.get(w.as_str()) {
            *scores.entry(cat.to_string()).or_default() += 1;
        }
    }
    let mut top: Vec<(String, usize)> = counts
        .into_iter()
        .map(|(w, n)| (w.to_string(), n))
        .collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(5);
    let category = scores
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map_or_else(|| "general".to_string(), |(c, _)| c.clone());
    Analysis {
        title,
        links: links(html),
        word_count: words.len(),
        top_words: top,
        category,
        scores,
    }
}

/// Typed JSON handler.
#[fnhost_guest::handler]
pub fn news(article: Article) -> Result<Analysis, Error> {
    if article.html.trim().is_empty() {
        return Err(Error::new("EmptyArticle", "html must not be empty"));
    }
    Ok(analyse(&article))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_and_categorises() {
        let a = Article {
            title: None,
            html: r#"<html><title>Cup final</title><body><h1>Big match</h1>
                <p>The team scored a late goal; the coach praised the team.</p>
                <a href="https://example.com/a">a</a> <a href='/b'>b</a></body></html>"#
                .into(),
        };
        let r = analyse(&a);
        assert_eq!(r.title.as_deref(), Some("Cup final"));
        assert_eq!(r.links, vec!["https://example.com/a", "/b"]);
        assert_eq!(r.category, "sports");
        assert_eq!(r.scores.get("sports"), Some(&6));
        assert_eq!(r.top_words[0], ("team".to_string(), 2));
    }
}
