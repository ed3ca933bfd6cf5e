//! HTML text: escaping and the page shell.
//!
//! Site names, slice descriptions, node messages and event details come from users and
//! nodes. Every such value reaches a page only through `esc` (or `Text`), which also makes
//! control and bidirectional-override characters visible (`untrusted::printable`), so a
//! message cannot add markup or read differently from what it is. Nothing here may write a
//! `<script>` element or an inline event handler: the page's Content-Security-Policy forbids
//! inline scripts, and the scripts it runs are the embedded `/static/app.js` only.

use std::fmt;

/// `s` made safe as HTML text and as a double- or single-quoted attribute value.
pub fn esc(s: &str) -> String {
    let shown = crate::untrusted::printable(s);
    let mut out = String::with_capacity(shown.len() + 8);
    for c in shown.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Untrusted text for `format!`: `{}` writes it escaped.
pub struct Text<'a>(pub &'a str);

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&esc(self.0))
    }
}

/// The whole page around `body` (already HTML). Styles and scripts are the embedded assets.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{}</title><link rel=\"icon\" href=\"/static/favicon.svg\">\
         <link rel=\"stylesheet\" href=\"/static/style.css\">\
         <script src=\"/static/app.js\" defer></script></head>\n<body>{body}</body></html>\n",
        Text(title)
    )
}

/// Bytes as people read them (`1.5 GiB`).
pub fn bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n.max(0) as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 || v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// CPU thousandths as cores (`1.5`).
pub fn cores(millis: i64) -> String {
    let c = millis.max(0) as f64 / 1000.0;
    if c.fract() == 0.0 {
        format!("{c:.0}")
    } else {
        format!("{c:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// `part` of `whole` as a whole percentage (0 when there is no whole).
pub fn percent(part: i64, whole: i64) -> i64 {
    if whole <= 0 {
        return 0;
    }
    ((part.max(0) as f64 / whole as f64) * 100.0).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_controls_are_escaped() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(esc("a\u{202e}b\nc"), "a\\u{202e}b\\nc");
        assert_eq!(format!("<b>{}</b>", Text("<i>")), "<b>&lt;i&gt;</b>");
        assert_eq!(esc("São Paulo"), "São Paulo");
    }

    #[test]
    fn quantities_read_as_people_write_them() {
        assert_eq!(bytes(64 << 20), "64 MiB");
        assert_eq!(bytes(3 << 29), "1.5 GiB");
        assert_eq!(bytes(0), "0 B");
        assert_eq!(cores(1500), "1.5");
        assert_eq!(cores(2000), "2");
        assert_eq!(cores(250), "0.25");
        assert_eq!(percent(1, 3), 33);
        assert_eq!(percent(5, 0), 0);
    }

    #[test]
    fn the_page_loads_only_embedded_assets() {
        let p = page("<t>", "<p>x</p>");
        assert!(p.contains("<title>&lt;t&gt;</title>"));
        assert!(p.contains("src=\"/static/app.js\""));
        assert_eq!(p.matches("<script").count(), 1);
    }
}
