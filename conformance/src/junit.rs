//! The JUnit XML report CI systems read: one `<testcase>` per test, `<failure>` with
//! the message for the ones that failed.

use crate::runner::Outcome;
use std::path::Path;

pub fn write(path: &Path, outcomes: &[Outcome]) -> std::io::Result<()> {
    std::fs::write(path, render(outcomes))
}

pub fn render(outcomes: &[Outcome]) -> String {
    let failures = outcomes.iter().filter(|o| o.failure.is_some()).count();
    let total: f64 = outcomes.iter().map(|o| o.duration.as_secs_f64()).sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x += &format!(
        "<testsuites tests=\"{n}\" failures=\"{failures}\" time=\"{total:.3}\">\n  <testsuite name=\"keelson-conformance\" tests=\"{n}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{total:.3}\">\n",
        n = outcomes.len()
    );
    for o in outcomes {
        x += &format!(
            "    <testcase name=\"{}\" classname=\"keelson-conformance\" time=\"{:.3}\"",
            escape(o.codename),
            o.duration.as_secs_f64()
        );
        match &o.failure {
            None => x += "/>\n",
            Some(msg) => {
                let first = msg.lines().next().unwrap_or("");
                x += &format!(
                    ">\n      <failure message=\"{}\" type=\"Failure\">{}</failure>\n    </testcase>\n",
                    escape(first),
                    escape(msg)
                );
            }
        }
    }
    x += "  </testsuite>\n</testsuites>\n";
    x
}

/// XML character escaping; characters XML 1.0 cannot carry at all become U+FFFD.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn passes_and_failures_are_reported_escaped() {
        let x = render(&[
            Outcome {
                codename: "[sig-node] Pods should <pass> & \"work\"",
                duration: Duration::from_millis(1500),
                failure: None,
            },
            Outcome {
                codename: "[sig-node] Probing b",
                duration: Duration::from_secs(2),
                failure: Some("left != right\x07\nsecond line".into()),
            },
        ]);
        assert!(x.contains("tests=\"2\" failures=\"1\""), "{x}");
        assert!(
            x.contains("name=\"[sig-node] Pods should &lt;pass&gt; &amp; &quot;work&quot;\" classname=\"keelson-conformance\" time=\"1.500\"/>"),
            "{x}"
        );
        assert!(x.contains("<failure message=\"left != right\u{FFFD}\" type=\"Failure\">left != right\u{FFFD}\nsecond line</failure>"), "{x}");
    }
}
