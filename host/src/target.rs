//! What a caller names: a function and, optionally, which of its versions
//! (`name`, `name:3`, `name:alias`, `name:$LATEST`). Every place that reads
//! such a string, in the host and in the CLI, parses it here.

/// `$LATEST`: the newest published version.
pub const LATEST: &str = fnhost_abi::LATEST;

/// Longest function name.
pub const MAX_NAME_LEN: usize = 64;

/// Whether `name` is a valid function name: 1 to 64 characters from
/// `A-Z`, `a-z`, `0-9`, `-` and `_` (Lambda's rule for names).
///
/// ```
/// assert!(fnhost::valid_name("resize-image_2"));
/// assert!(!fnhost::valid_name("a b"));
/// assert!(!fnhost::valid_name(""));
/// assert!(!fnhost::valid_name(&"x".repeat(65)));
/// ```
pub fn valid_name(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN && name_chars(name)
}

/// Whether `alias` may name an alias: 1 to 128 of the name characters,
/// and neither a number (that would read as a version) nor `$LATEST`
/// (Lambda's rule for alias names).
pub(crate) fn valid_alias(alias: &str) -> bool {
    alias.len() <= 128 && name_chars(alias) && alias.parse::<u32>().is_err()
}

/// Non-empty, and only `A-Z`, `a-z`, `0-9`, `-` and `_`.
fn name_chars(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Which version of a function a [`FunctionRef`] means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qualifier<'a> {
    /// No qualifier, or `$LATEST`: the newest version.
    Latest,
    /// A version number.
    Version(u32),
    /// An alias name.
    Alias(&'a str),
}

/// A function name with its qualifier, as in `name:qualifier`.
///
/// ```
/// use fnhost::{FunctionRef, Qualifier};
///
/// assert_eq!(FunctionRef::parse("resize"), FunctionRef { name: "resize", qualifier: Qualifier::Latest });
/// assert_eq!(FunctionRef::parse("resize:$LATEST").qualifier, Qualifier::Latest);
/// assert_eq!(FunctionRef::parse("resize:3").qualifier, Qualifier::Version(3));
/// assert_eq!(FunctionRef::parse("resize:prod").qualifier, Qualifier::Alias("prod"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionRef<'a> {
    /// The function's name.
    pub name: &'a str,
    /// Which version.
    pub qualifier: Qualifier<'a>,
}

impl<'a> FunctionRef<'a> {
    /// Splits `name`, `name:version`, `name:alias` or `name:$LATEST` at
    /// the first `:`. Nothing is checked here: an unknown name or alias is
    /// the registry's `NotFound`.
    pub fn parse(qualified: &'a str) -> FunctionRef<'a> {
        let (name, qualifier) = match qualified.split_once(':') {
            None => (qualified, Qualifier::Latest),
            Some((name, LATEST)) => (name, Qualifier::Latest),
            Some((name, q)) => (
                name,
                match q.parse::<u32>() {
                    // A plain decimal is a version; `03` or `+3` is not one.
                    Ok(v) if v.to_string() == q => Qualifier::Version(v),
                    _ => Qualifier::Alias(q),
                },
            ),
        };
        FunctionRef { name, qualifier }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualifiers_parse() {
        let p = FunctionRef::parse;
        assert_eq!(p("f").qualifier, Qualifier::Latest);
        assert_eq!(p("f:$LATEST").qualifier, Qualifier::Latest);
        assert_eq!(
            p("f:3"),
            FunctionRef {
                name: "f",
                qualifier: Qualifier::Version(3)
            }
        );
        assert_eq!(p("f:prod").qualifier, Qualifier::Alias("prod"));
        // Not plain decimals: aliases (which the alias rule then refuses).
        assert_eq!(p("f:03").qualifier, Qualifier::Alias("03"));
        assert_eq!(p("f:+3").qualifier, Qualifier::Alias("+3"));
        assert_eq!(
            p("f:99999999999").qualifier,
            Qualifier::Alias("99999999999")
        );
        // Only the first ':' splits.
        assert_eq!(
            p("f:a:b"),
            FunctionRef {
                name: "f",
                qualifier: Qualifier::Alias("a:b")
            }
        );
        assert_eq!(p("f:").qualifier, Qualifier::Alias(""));
    }

    #[test]
    fn names_follow_the_rule() {
        assert!(valid_name("a"));
        assert!(valid_name(&"a".repeat(64)));
        assert!(!valid_name(&"a".repeat(65)));
        for bad in ["", "a b", "a:b", "é", "a/b", "a.b"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
