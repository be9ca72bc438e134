//! `rules_hash`, as Santa computes it (northpolesec/santa `Source/santad/DataLayer/SNTRuleTable.mm`,
//! `executionRulesHashSerialized:`; the hasher is `Source/common/SNTXxhash.h`).
//!
//! Santa streams one XXH3-128 over its execution rules, skipping transitive rules
//! (`state != SNTRuleStateAllowTransitive`), and for each rule feeds: the identifier's UTF-8
//! bytes, the CEL expression's bytes, the seatbelt policy's bytes (empty for every rule santad
//! holds, so it adds nothing), then the state and the type as native 4-byte ints (little-endian on
//! every Mac Santa runs on). The digest is printed as the canonical (big-endian) 16 bytes in
//! lower-case hex: 32 characters. An empty rule set hashes to XXH3-128 of no bytes.
//!
//! Santa feeds rules in the order its SQLite table returns them (no `ORDER BY`), so the hash is
//! order-dependent; callers pass their rules in their own stable order. A server compares the
//! hash with the one the same host reported before (in postflight), so the order only has to be
//! stable on one host.

use xxhash_rust::xxh3::Xxh3;

/// Santa's `SNTRuleStateAllowTransitive`: rules in this state are left out of the hash.
pub const SANTA_STATE_ALLOW_TRANSITIVE: i32 = 6;

/// One rule as the hash sees it: Santa's database values (`SNTRuleState`, `SNTRuleType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashedRule<'a> {
    /// The identifier as stored (Santa normalizes case before storing).
    pub identifier: &'a str,
    /// `SNTRuleState`: 1 allow, 2 block, 3 silent block, 5 allow compiler, 6 transitive, ...
    pub state: i32,
    /// `SNTRuleType`: 500 CDHash, 1000 Binary, 2000 Signing ID, 3000 Certificate, 4000 Team ID.
    pub rule_type: i32,
    /// The CEL expression, empty for other rules.
    pub cel_expr: &'a str,
}

/// Santa's `rules_hash` over `rules`, in the order given: 32 lower-case hex characters.
pub fn rules_hash<'a>(rules: impl IntoIterator<Item = HashedRule<'a>>) -> String {
    let mut hasher = Xxh3::new();
    for rule in rules {
        if rule.state == SANTA_STATE_ALLOW_TRANSITIVE {
            continue;
        }
        hasher.update(rule.identifier.as_bytes());
        hasher.update(rule.cel_expr.as_bytes());
        hasher.update(&rule.state.to_le_bytes());
        hasher.update(&rule.rule_type.to_le_bytes());
    }
    format!("{:032x}", hasher.digest128())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule<'a>(identifier: &'a str, state: i32, rule_type: i32, cel: &'a str) -> HashedRule<'a> {
        HashedRule {
            identifier,
            state,
            rule_type,
            cel_expr: cel,
        }
    }

    // Golden values from the reference implementation (`xxhsum -H2`, xxHash 0.8) over the byte
    // stream Santa feeds, not from this code.
    #[test]
    fn matches_the_reference_xxh3_128() {
        assert_eq!(rules_hash([]), "99aa06d3014798d86001c324468d497f");
        let rules = [
            rule(
                "ee382e199f7eda58863a93a7854b930ade35798bc6856ee8e6ab6ce9277f0eab",
                2,
                1000,
                "",
            ),
            rule("EQHXZ8M8AV", 1, 4000, ""),
            rule("platform:com.apple.yes", 9, 2000, "true"),
        ];
        assert_eq!(rules_hash(rules), "d880d19e33f6b06c7c9d4157f601fbbe");
    }

    #[test]
    fn transitive_rules_are_left_out() {
        let base = [rule("EQHXZ8M8AV", 1, 4000, "")];
        let sha = "a".repeat(64);
        let with_transitive = [
            rule("EQHXZ8M8AV", 1, 4000, ""),
            rule(&sha, SANTA_STATE_ALLOW_TRANSITIVE, 1000, ""),
        ];
        assert_eq!(rules_hash(base), rules_hash(with_transitive));
    }
}
