//! `news`: the seed's content use case. Takes an article (JSON with an
//! HTML body), extracts its title, links and word counts, and categorises
//! it by keywords, tolerating one typo in longer keywords. The index (every
//! keyword, its plural, and every spelling one edit away from the longer
//! ones and their inflections: about 100,000 entries) is built once per instance in
//! `#[init]`: a genuinely heavy init, and the example for snapshots
//! (`FunctionConfig::snapshot`), which build it once at register time.

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

/// Word (as its 64-bit FNV-1a hash) → category. Keying by the hash keeps
/// the table compact (no per-word heap strings), so a lookup touches few
/// memory pages: this matters when instances start from a snapshot.
static INDEX: OnceLock<HashMap<u64, &'static str>> = OnceLock::new();

fn word_key(w: &str) -> u64 {
    w.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Keywords at least this long also match with one typo.
const TYPO_MIN_LEN: usize = 5;

/// Builds the keyword → category index (once per instance).
#[fnhost_guest::init]
pub fn build_index() -> Result<(), Error> {
    index();
    Ok(())
}

/// Every spelling one edit (delete, substitute, insert, swap) from `w`.
fn one_edit(w: &str) -> Vec<String> {
    let b = w.as_bytes();
    let mut out = Vec::new();
    for i in 0..=b.len() {
        for c in b'a'..=b'z' {
            let mut v = b.to_vec();
            v.insert(i, c);
            out.push(v);
            if i < b.len() && b[i] != c {
                let mut v = b.to_vec();
                v[i] = c;
                out.push(v);
            }
        }
        if i < b.len() {
            let mut v = b.to_vec();
            v.remove(i);
            out.push(v);
        }
        if i + 1 < b.len() {
            let mut v = b.to_vec();
            v.swap(i, i + 1);
            out.push(v);
        }
    }
    out.into_iter()
        .filter_map(|v| String::from_utf8(v).ok())
        .collect()
}

fn index() -> &'static HashMap<u64, &'static str> {
    INDEX.get_or_init(|| {
        let mut idx = HashMap::new();
        // Exact keywords and plurals first: they win over typo spellings.
        for (cat, words) in CATEGORIES {
            for w in *words {
                idx.insert(word_key(w), *cat);
                idx.entry(word_key(&format!("{w}s"))).or_insert(*cat);
            }
        }
        for (cat, words) in CATEGORIES {
            for w in words.iter().filter(|w| w.len() >= TYPO_MIN_LEN) {
                // The word and its common inflections, each with one typo.
                for form in [
                    w.to_string(),
                    format!("{w}s"),
                    format!("{w}ed"),
                    format!("{w}ing"),
                    format!("{w}er"),
                    format!("{w}ers"),
                ] {
                    for v in one_edit(&form) {
                        idx.entry(word_key(&v)).or_insert(*cat);
                    }
                }
            }
        }
        idx
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
        if let Some(cat) = idx.get(&word_key(w)) {
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
        // cup, match, team, goal, coach, team, and "scored" (score + d).
        assert_eq!(r.scores.get("sports"), Some(&7));
        assert_eq!(r.top_words[0], ("team".to_string(), 2));
    }

    #[test]
    fn one_typo_in_a_long_keyword_still_matches() {
        let a = Article {
            title: None,
            html: "The goverment asked parliment; the ministre agreed. A cpu and a lwa.".into(),
        };
        let r = analyse(&a);
        // Three typos in long keywords match; short ones (law, cup) need
        // the exact spelling.
        assert_eq!(r.scores, BTreeMap::from([("politics".to_string(), 3)]));
        assert!(index().len() > 80_000, "{}", index().len());
    }
}
