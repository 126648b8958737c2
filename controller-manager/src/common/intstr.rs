//! Int-or-percent fields (`maxSurge`, `maxUnavailable`, ...): client-go's
//! `GetScaledValueFromIntOrPercent`.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// `value` as an absolute number: an int as is, `"N%"` as N percent of `total`, rounded
/// up or down. Any other string is an error.
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> anyhow::Result<i32> {
    match value {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("invalid value for IntOrString: {s:?}"))?;
            let scaled = percent as f64 * total as f64 / 100.0;
            Ok(if round_up {
                scaled.ceil()
            } else {
                scaled.floor()
            } as i32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_as_asked() {
        let p = IntOrString::String("25%".into());
        assert_eq!(scaled_value(&p, 3, true).unwrap(), 1);
        assert_eq!(scaled_value(&p, 3, false).unwrap(), 0);
        assert_eq!(scaled_value(&p, 10, true).unwrap(), 3);
        assert_eq!(scaled_value(&IntOrString::Int(2), 10, false).unwrap(), 2);
        assert!(scaled_value(&IntOrString::String("two".into()), 10, false).is_err());
    }
}
