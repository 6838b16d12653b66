//! Container names: Docker's rule for valid ones, and generated `adjective_name` ones.

use crate::error::{Error, Result};

const ADJECTIVES: [&str; 24] = [
    "admiring",
    "brave",
    "clever",
    "dazzling",
    "eager",
    "festive",
    "gallant",
    "happy",
    "jolly",
    "keen",
    "loving",
    "modest",
    "nifty",
    "optimistic",
    "peaceful",
    "quirky",
    "relaxed",
    "sharp",
    "tender",
    "upbeat",
    "vibrant",
    "wizardly",
    "xenodochial",
    "zealous",
];

const NAMES: [&str; 24] = [
    "albattani",
    "babbage",
    "curie",
    "darwin",
    "einstein",
    "faraday",
    "galileo",
    "hopper",
    "jennings",
    "kepler",
    "lovelace",
    "meitner",
    "newton",
    "noether",
    "pasteur",
    "ramanujan",
    "shannon",
    "turing",
    "volta",
    "wozniak",
    "yalow",
    "zhukovsky",
    "hypatia",
    "lamarr",
];

/// A valid name without its leading slash, or Docker's 400.
pub fn validate(name: &str) -> Result<String> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let mut chars = bare.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && bare.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid {
        return Err(Error::InvalidParameter(format!(
            "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    Ok(bare.to_string())
}

/// A fresh `adjective_name` nobody uses (`taken` says who does), with a number appended
/// when the plain ones run out, as Docker's generator retries.
pub fn generate(taken: impl Fn(&str) -> bool) -> String {
    let mut seed = crate::time::now_nanos() as u64 ^ u64::from(std::process::id());
    let mut next = || {
        // xorshift: names need spread, not cryptographic randomness.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed as usize
    };
    for attempt in 0.. {
        let mut name = format!(
            "{}_{}",
            ADJECTIVES[next() % ADJECTIVES.len()],
            NAMES[next() % NAMES.len()]
        );
        if attempt >= 10 {
            name.push_str(&(next() % 10).to_string());
        }
        if !taken(&name) {
            return name;
        }
    }
    unreachable!("the loop above only ends by returning")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_name_rules() {
        assert_eq!(validate("/web-1").unwrap(), "web-1");
        assert_eq!(validate("a.b_c").unwrap(), "a.b_c");
        for bad in ["", "a", "-x", "_x", "a b", "a/b", "ä"] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_names_avoid_taken_ones() {
        let name = generate(|n| !n.chars().last().unwrap().is_ascii_digit());
        assert!(name.chars().last().unwrap().is_ascii_digit(), "{name}");
        assert!(validate(&generate(|_| false)).is_ok());
    }
}
