//! `resource.Quantity`: parsing, comparison and the canonical form Kubernetes writes back.
//!
//! Kubernetes re-serialises every quantity it stores in a canonical form (`0.5` becomes
//! `500m`, `1.5Gi` becomes `1536Mi`, `1000` becomes `1k`), and core/v1 rounds resource
//! lists up to milli precision. [`Quantity::parse`] accepts what Kubernetes accepts
//! (`<sign><digits>[.<digits>]<suffix>`, with SI, binary-SI or `e<exp>` suffixes);
//! [`Quantity::canonical`] renders the form `kubectl get -o yaml` shows.
//!
//! Values are exact decimals (`num / 10^scale`) held in an `i128`, limited to nano
//! precision as Kubernetes limits them; that covers every quantity that fits the
//! int64-backed fast path of the Go implementation and then some.

use serde_json::Value;
use std::cmp::Ordering;

/// The message Kubernetes gives for a malformed quantity.
pub const FORMAT_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
/// The message for a well-formed number with an unknown suffix.
pub const SUFFIX_ERROR: &str = "unable to parse quantity's suffix";

/// How a quantity is written back, chosen by the suffix it was parsed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `k`, `M`, `m`, `n` ... or no suffix.
    DecimalSI,
    /// `Ki`, `Mi`, `Gi` ...
    BinarySI,
    /// `e3`, `E-2`.
    DecimalExponent,
}

/// An exact decimal quantity: `num / 10^scale`.
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    num: i128,
    scale: u32,
    pub format: Format,
}

/// Kubernetes keeps at most nano precision.
const MAX_SCALE: u32 = 9;

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

/// Divide rounding away from zero (Kubernetes' `RoundUp`).
fn div_away(num: i128, d: i128) -> i128 {
    let q = num / d;
    if num % d == 0 {
        q
    } else if num < 0 {
        q - 1
    } else {
        q + 1
    }
}

impl Quantity {
    /// Parse a quantity string, with Kubernetes' error messages.
    pub fn parse(s: &str) -> Result<Quantity, &'static str> {
        let s = s.trim();
        if s.is_empty() {
            return Err(FORMAT_ERROR);
        }
        let bytes = s.as_bytes();
        let mut i = 0;
        let mut negative = false;
        if bytes[0] == b'+' || bytes[0] == b'-' {
            negative = bytes[0] == b'-';
            i = 1;
        }
        // Digits with at most one decimal point.
        let mut int_digits = String::new();
        let mut frac_digits = String::new();
        let mut seen_dot = false;
        while i < bytes.len() {
            let c = bytes[i];
            if c.is_ascii_digit() {
                if seen_dot {
                    frac_digits.push(c as char);
                } else {
                    int_digits.push(c as char);
                }
            } else if c == b'.' && !seen_dot {
                seen_dot = true;
            } else {
                break;
            }
            i += 1;
        }
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(FORMAT_ERROR);
        }
        let suffix = &s[i..];
        if !suffix
            .bytes()
            .all(|c| b"eEinumkKMGTP+-0123456789".contains(&c))
        {
            return Err(FORMAT_ERROR);
        }
        // base^exp multiplier from the suffix.
        let (format, dec_exp, bin_exp): (Format, i32, u32) = match suffix {
            "" => (Format::DecimalSI, 0, 0),
            "n" => (Format::DecimalSI, -9, 0),
            "u" => (Format::DecimalSI, -6, 0),
            "m" => (Format::DecimalSI, -3, 0),
            "k" => (Format::DecimalSI, 3, 0),
            "M" => (Format::DecimalSI, 6, 0),
            "G" => (Format::DecimalSI, 9, 0),
            "T" => (Format::DecimalSI, 12, 0),
            "P" => (Format::DecimalSI, 15, 0),
            "E" => (Format::DecimalSI, 18, 0),
            "Ki" => (Format::BinarySI, 0, 10),
            "Mi" => (Format::BinarySI, 0, 20),
            "Gi" => (Format::BinarySI, 0, 30),
            "Ti" => (Format::BinarySI, 0, 40),
            "Pi" => (Format::BinarySI, 0, 50),
            "Ei" => (Format::BinarySI, 0, 60),
            other => {
                let rest = other
                    .strip_prefix('e')
                    .or_else(|| other.strip_prefix('E'))
                    .ok_or(SUFFIX_ERROR)?;
                let exp: i32 = rest.parse().map_err(|_| SUFFIX_ERROR)?;
                if rest.starts_with('+') || !(-1000..=1000).contains(&exp) {
                    return Err(SUFFIX_ERROR);
                }
                (Format::DecimalExponent, exp, 0)
            }
        };
        let digits = format!("{int_digits}{frac_digits}");
        let digits = digits.trim_start_matches('0');
        let mut num: i128 = if digits.is_empty() {
            0
        } else {
            if digits.len() > 36 {
                return Err(FORMAT_ERROR);
            }
            digits.parse().map_err(|_| FORMAT_ERROR)?
        };
        let mut scale = frac_digits.len() as i64 - dec_exp as i64;
        if num != 0 && bin_exp > 0 {
            num = num.checked_mul(1i128 << bin_exp).ok_or(FORMAT_ERROR)?;
        }
        // Normalise the scale to 0..=MAX_SCALE.
        if scale < 0 {
            if num != 0 {
                let m = pow10((-scale) as u32).ok_or(FORMAT_ERROR)?;
                num = num.checked_mul(m).ok_or(FORMAT_ERROR)?;
            }
            scale = 0;
        } else if scale > MAX_SCALE as i64 {
            let drop = (scale - MAX_SCALE as i64) as u32;
            num = match pow10(drop) {
                Some(d) => div_away(num, d),
                None => i128::from(num != 0),
            };
            scale = MAX_SCALE as i64;
        }
        if negative {
            num = -num;
        }
        Ok(Quantity {
            num,
            scale: scale as u32,
            format,
        }
        .reduced())
    }

    /// Parse a JSON value: quantities may be strings or plain numbers.
    pub fn from_json(v: &Value) -> Result<Quantity, &'static str> {
        match v {
            Value::String(s) => Quantity::parse(s),
            Value::Number(n) => Quantity::parse(&n.to_string()),
            _ => Err(FORMAT_ERROR),
        }
    }

    /// Remove trailing zero decimals so equal values have equal representations.
    fn reduced(mut self) -> Quantity {
        while self.scale > 0 && self.num % 10 == 0 {
            self.num /= 10;
            self.scale -= 1;
        }
        self
    }

    pub fn zero() -> Quantity {
        Quantity {
            num: 0,
            scale: 0,
            format: Format::DecimalSI,
        }
    }

    pub fn is_zero(&self) -> bool {
        self.num == 0
    }

    pub fn is_negative(&self) -> bool {
        self.num < 0
    }

    /// Whether the value has no fractional part.
    pub fn is_integer(&self) -> bool {
        self.scale == 0
    }

    /// The value in thousandths, rounded away from zero (Go's `MilliValue`).
    pub fn milli_value(&self) -> i128 {
        if self.scale <= 3 {
            self.num.saturating_mul(pow10(3 - self.scale).unwrap_or(1))
        } else {
            div_away(self.num, pow10(self.scale - 3).unwrap_or(1))
        }
    }

    /// The value rounded away from zero to a whole number (Go's `Value`).
    pub fn value(&self) -> i128 {
        div_away(self.num, pow10(self.scale).unwrap_or(1))
    }

    /// Approximate value as a float, for ratios.
    pub fn as_f64(&self) -> f64 {
        self.num as f64 / 10f64.powi(self.scale as i32)
    }

    /// Round up (away from zero) to milli precision, as core/v1 defaulting does for
    /// every resource list.
    pub fn round_up_milli(mut self) -> Quantity {
        if self.scale > 3 {
            self.num = div_away(self.num, pow10(self.scale - 3).unwrap_or(1));
            self.scale = 3;
        }
        self.reduced()
    }

    /// The canonical string, as Kubernetes serialises it.
    pub fn canonical(&self) -> String {
        if self.num == 0 {
            return "0".to_string();
        }
        let sign = if self.num < 0 { "-" } else { "" };
        let abs = self.num.unsigned_abs();
        let mut format = self.format;
        if format == Format::BinarySI
            && (abs < 1024 * pow10(self.scale).unwrap_or(1) as u128 || self.scale > 0)
        {
            format = Format::DecimalSI;
        }
        if format == Format::BinarySI {
            let mut v = abs;
            let mut exp = 0;
            while exp < 6 && v.is_multiple_of(1024) {
                v /= 1024;
                exp += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][exp];
            return format!("{sign}{v}{suffix}");
        }
        let mut mantissa = abs;
        let mut exponent = -(self.scale as i32);
        while mantissa.is_multiple_of(10) {
            mantissa /= 10;
            exponent += 1;
        }
        match exponent.rem_euclid(3) {
            1 => {
                mantissa *= 10;
                exponent -= 1;
            }
            2 => {
                mantissa *= 100;
                exponent -= 2;
            }
            _ => {}
        }
        let suffix = if format == Format::DecimalExponent {
            if exponent == 0 {
                String::new()
            } else {
                format!("e{exponent}")
            }
        } else {
            match exponent {
                -9 => "n".into(),
                -6 => "u".into(),
                -3 => "m".into(),
                0 => String::new(),
                3 => "k".into(),
                6 => "M".into(),
                9 => "G".into(),
                12 => "T".into(),
                15 => "P".into(),
                18 => "E".into(),
                e => format!("e{e}"),
            }
        };
        format!("{sign}{mantissa}{suffix}")
    }
}

impl std::fmt::Display for Quantity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.canonical())
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        let scale = self.scale.max(other.scale);
        let a = pow10(scale - self.scale).and_then(|m| self.num.checked_mul(m));
        let b = pow10(scale - other.scale).and_then(|m| other.num.checked_mul(m));
        match (a, b) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => self.as_f64().total_cmp(&other.as_f64()),
        }
    }
}

/// Rewrite every quantity of a resource list (`{cpu: "0.5"}`) in canonical form,
/// rounded up to milli precision as core/v1 defaulting does. Values that do not parse
/// are left for validation to report.
pub fn canonicalize_list(list: Option<&mut Value>) {
    let Some(map) = list.and_then(Value::as_object_mut) else {
        return;
    };
    for v in map.values_mut() {
        if let Ok(q) = Quantity::from_json(v) {
            *v = Value::String(q.round_up_milli().canonical());
        }
    }
}

/// Resources whose quantities must be whole numbers (`helper.IsIntegerResourceName`):
/// object counts and extended resources (`example.com/gpu`, `count/pods`).
pub fn is_integer_resource(name: &str) -> bool {
    const INTEGER: &[&str] = &[
        "pods",
        "resourcequotas",
        "services",
        "replicationcontrollers",
        "secrets",
        "configmaps",
        "persistentvolumeclaims",
        "services.nodeports",
        "services.loadbalancers",
    ];
    if INTEGER.contains(&name) {
        return true;
    }
    // Extended resources: fully qualified, outside kubernetes.io, not a request.
    let native = !name.contains('/') || name.contains("kubernetes.io/");
    !native
        && !name.starts_with("requests.")
        && crate::validation::qualified_name(&format!("requests.{name}")).is_empty()
}

/// `ValidateResourceQuantityValue` for one entry of a resource list: the quantity
/// parses, is not negative, and is whole for integer resources. Returns the parsed
/// quantity.
pub fn validate_quantity_value(
    name: &str,
    v: &Value,
    path: &str,
    out: &mut Vec<crate::Cause>,
) -> Option<Quantity> {
    use crate::Cause;
    let q = match Quantity::from_json(v) {
        Ok(q) => q,
        Err(e) => {
            out.push(Cause::invalid(path, v, e));
            return None;
        }
    };
    let shown = Value::String(q.canonical());
    if q.is_negative() {
        out.push(Cause::invalid(
            path,
            &shown,
            "must be greater than or equal to 0",
        ));
    }
    if is_integer_resource(name) && q.milli_value() % 1000 != 0 {
        out.push(Cause::invalid(path, &shown, "must be an integer"));
    }
    Some(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        Quantity::parse(s).unwrap().canonical()
    }

    #[test]
    fn canonical_forms_match_kubernetes() {
        assert_eq!(canon("0.5"), "500m");
        assert_eq!(canon("1000"), "1k");
        assert_eq!(canon("1500"), "1500");
        assert_eq!(canon("1.5k"), "1500");
        assert_eq!(canon("100m"), "100m");
        assert_eq!(canon("1Gi"), "1Gi");
        assert_eq!(canon("1.5Gi"), "1536Mi");
        assert_eq!(canon("2048Mi"), "2Gi");
        assert_eq!(canon("512Ki"), "512Ki");
        assert_eq!(canon("0.5Ki"), "512");
        assert_eq!(canon("12e6"), "12e6");
        assert_eq!(canon("1E3"), "1e3");
        assert_eq!(canon("0"), "0");
        assert_eq!(canon("-0.5"), "-500m");
        assert_eq!(canon("10G"), "10G");
        assert_eq!(canon("1n"), "1n");
        assert_eq!(canon(".5"), "500m");
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(Quantity::parse("abc").unwrap_err(), FORMAT_ERROR);
        assert_eq!(Quantity::parse("").unwrap_err(), FORMAT_ERROR);
        assert_eq!(Quantity::parse("1 Gi").unwrap_err(), FORMAT_ERROR);
        assert_eq!(Quantity::parse("1Ki2").unwrap_err(), SUFFIX_ERROR);
        assert_eq!(Quantity::parse("1K").unwrap_err(), SUFFIX_ERROR);
        assert_eq!(Quantity::parse("1.2.3").unwrap_err(), FORMAT_ERROR);
    }

    #[test]
    fn compares_and_rounds() {
        let a = Quantity::parse("1Gi").unwrap();
        let b = Quantity::parse("1000Mi").unwrap();
        assert!(a > b);
        assert_eq!(
            Quantity::parse("1k").unwrap(),
            Quantity::parse("1000").unwrap()
        );
        assert_eq!(
            Quantity::parse("0.0001")
                .unwrap()
                .round_up_milli()
                .canonical(),
            "1m"
        );
        assert_eq!(Quantity::parse("1500m").unwrap().milli_value(), 1500);
        assert!(!Quantity::parse("1500m").unwrap().is_integer());
        assert!(Quantity::parse("-1").unwrap().is_negative());
        assert_eq!(
            Quantity::from_json(&serde_json::json!(2))
                .unwrap()
                .canonical(),
            "2"
        );
    }

    #[test]
    fn integer_resources() {
        assert!(is_integer_resource("pods"));
        assert!(is_integer_resource("nvidia.com/gpu"));
        assert!(is_integer_resource("count/deployments.apps"));
        assert!(!is_integer_resource("cpu"));
        assert!(!is_integer_resource("requests.cpu"));
        let mut out = Vec::new();
        assert!(
            validate_quantity_value("pods", &serde_json::json!("1500m"), "x", &mut out).is_some()
        );
        assert!(validate_quantity_value("cpu", &serde_json::json!("-1"), "y", &mut out).is_some());
        assert!(validate_quantity_value("cpu", &serde_json::json!("1K"), "z", &mut out).is_none());
        let shown: Vec<String> = out.iter().map(|c| c.display()).collect();
        assert_eq!(
            shown,
            vec![
                "x: Invalid value: \"1500m\": must be an integer",
                "y: Invalid value: \"-1\": must be greater than or equal to 0",
                "z: Invalid value: \"1K\": unable to parse quantity's suffix",
            ]
        );
    }

    #[test]
    fn canonicalizes_lists() {
        let mut v = serde_json::json!({"cpu": "0.5", "memory": 1024, "bad": "x"});
        canonicalize_list(Some(&mut v));
        assert_eq!(
            v,
            serde_json::json!({"cpu": "500m", "memory": "1024", "bad": "x"})
        );
    }
}
