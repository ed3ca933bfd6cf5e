//! A tiny aligned-column table printer, kubectl-style: upper-case headers, two spaces between columns,
//! no borders, and no trailing spaces. Widths count characters, not bytes, so "8080→30001" lines up.

use std::fmt;

/// Rows of cells under a header row.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new<I, S>(headers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Table {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells print empty, extra cells are ignored.
    pub fn row<I, S>(&mut self, cells: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(cells.into_iter().map(Into::into).collect());
        self
    }

    /// Whether no rows were added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cols = self.headers.len();
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().take(cols).enumerate() {
                widths[i] = widths[i].max(width(cell));
            }
        }
        let empty = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let mut out = String::new();
            for (i, w) in widths.iter().enumerate() {
                let cell = line.get(i).unwrap_or(&empty);
                // Newlines would break the columns; a table cell is one line.
                let cell = cell.replace('\n', " ");
                out.push_str(&cell);
                if i + 1 < cols {
                    out.push_str(&" ".repeat(w - width(&cell) + 2));
                }
            }
            writeln!(f, "{}", out.trim_end())?;
        }
        Ok(())
    }
}

/// Key/value lines for `show` commands: keys padded to the same width.
#[derive(Debug, Default)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one `Key: value` line.
    pub fn add(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.0.push((key.to_string(), value.into()));
        self
    }
}

impl fmt::Display for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self
            .0
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0)
            + 1;
        for (k, v) in &self.0 {
            let key = format!("{k}:");
            writeln!(f, "{}", format!("{key:<w$} {v}").trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns_by_characters() {
        let mut t = Table::new(["NAME", "PORTS", "STATE"]);
        t.row(["demo-0", "http 8080→30001", "running"]);
        t.row(["x", "", "pending"]);
        assert_eq!(
            t.to_string(),
            "NAME    PORTS            STATE\n\
             demo-0  http 8080→30001  running\n\
             x                        pending\n"
        );
    }

    #[test]
    fn no_trailing_spaces_and_short_rows() {
        let mut t = Table::new(["A", "B"]);
        t.row(["long value"]);
        assert_eq!(t.to_string(), "A           B\nlong value\n");
        assert!(!t.is_empty());
    }

    #[test]
    fn fields_align_keys() {
        let mut f = Fields::new();
        f.add("Name", "demo")
            .add("Lease left", "6d23h")
            .add("Empty", "");
        assert_eq!(
            f.to_string(),
            "Name:       demo\nLease left: 6d23h\nEmpty:\n"
        );
    }
}
