//! What the plugin prints: aligned tables like kubectl's by default, YAML or JSON with
//! `-o` for scripts, and durations in human terms.

use std::io::{ErrorKind, Write};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use super::error::PluginError;

/// The machine-readable formats of `-o`. Without `-o`, a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Yaml,
    Json,
}

/// Columns separated by three spaces, as kubectl prints them.
const GAP: &str = "   ";

/// A table: an upper-case header and rows of cells, each column as wide as its widest
/// cell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Self {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells print empty, extra cells are dropped.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, each ending in a newline. The last column is
    /// not padded, so a long description does not push trailing spaces.
    pub fn render(&self) -> String {
        let columns = self.header.len();
        fn cell(row: &[String], i: usize) -> &str {
            row.get(i).map(String::as_str).unwrap_or("")
        }
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, width) in widths.iter_mut().enumerate() {
                *width = (*width).max(cell(row, i).chars().count());
            }
        }
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        let mut text = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let value = cell(row, i);
                line.push_str(value);
                if i + 1 < columns {
                    let pad = width - value.chars().count();
                    line.push_str(&" ".repeat(pad));
                    line.push_str(GAP);
                }
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

/// `value` as YAML or JSON, or `table` rendered; an empty table prints nothing on
/// standard output and `empty` on standard error, as kubectl does.
pub fn show<T: Serialize>(
    format: Option<Format>,
    value: &T,
    table: &Table,
    empty: &str,
) -> Result<(), PluginError> {
    match format {
        Some(format) => emit(&serialize(format, value)?),
        None if table.is_empty() => {
            note(empty);
            Ok(())
        }
        None => emit(&table.render()),
    }
}

/// `value` as YAML or JSON text, ending in a newline.
pub fn serialize<T: Serialize>(format: Format, value: &T) -> Result<String, PluginError> {
    let render = |e: &dyn std::fmt::Display| PluginError::Render(e.to_string());
    match format {
        Format::Json => serde_json::to_string_pretty(value)
            .map(|text| text + "\n")
            .map_err(|e| render(&e)),
        Format::Yaml => serde_yaml::to_string(value).map_err(|e| render(&e)),
    }
}

/// Writes to standard output. A closed pipe (`kubectl org members | head -1`) is not an
/// error.
pub fn emit(text: &str) -> Result<(), PluginError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(error) if error.kind() != ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(()),
    }
}

/// A line for the person on standard error (notes and per-item errors), never mixed into
/// what scripts parse.
pub fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// The status of condition `type_` (`True`, `False`, `Unknown`), or `-` when absent.
pub fn condition_status(conditions: &[Condition], type_: &str) -> String {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
        .unwrap_or_else(|| "-".to_string())
}

/// A role and where it applies, as one cell: `viewer on deployment/*`, with
/// ` (console)` for console-only access.
pub fn role_label(role: &str, scope: &str, access: crate::api::Access) -> String {
    match access {
        crate::api::Access::Full => format!("{role} on {scope}"),
        crate::api::Access::Console => format!("{role} on {scope} (console)"),
    }
}

/// Cells joined for a table, or `-` for none.
pub fn joined<I: IntoIterator<Item = S>, S: AsRef<str>>(cells: I, separator: &str) -> String {
    let text: Vec<String> = cells.into_iter().map(|c| c.as_ref().to_string()).collect();
    if text.is_empty() {
        "-".to_string()
    } else {
        text.join(separator)
    }
}

/// A duration the way kubectl prints ages: `45s`, `12m`, `23h`, `3d`.
pub fn human_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..120 => format!("{secs}s"),
        120..7_200 => format!("{}m", secs / 60),
        7_200..172_800 => format!("{}h", secs / 3_600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// When `at` is, seen from `now`: `in 23h` or `5m ago`.
pub fn relative(now: Timestamp, at: &Time) -> String {
    let seconds = at.0.as_second() - now.as_second();
    let human = human_duration(Duration::from_secs(seconds.unsigned_abs()));
    if seconds >= 0 {
        format!("in {human}")
    } else {
        format!("{human} ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).expect("a timestamp"))
    }

    #[test]
    fn tables_align_columns_and_do_not_pad_the_last() {
        let mut table = Table::new(&["NAME", "LEVEL", "DESCRIPTION"]);
        table.row(vec![
            "organization-owner".into(),
            "organization".into(),
            "Runs it.".into(),
        ]);
        table.row(vec!["viewer".into(), "resource".into(), "Looks.".into()]);
        assert_eq!(
            table.render(),
            "NAME                 LEVEL          DESCRIPTION\n\
             organization-owner   organization   Runs it.\n\
             viewer               resource       Looks.\n"
        );
    }

    #[test]
    fn tables_tolerate_short_rows_and_wide_characters() {
        let mut table = Table::new(&["A", "B", "C"]);
        table.row(vec!["ü".into()]);
        table.row(vec!["xx".into(), "y".into(), "z".into()]);
        assert_eq!(table.render(), "A    B   C\nü\nxx   y   z\n");
    }

    #[test]
    fn durations_read_like_kubectl_ages() {
        assert_eq!(human_duration(Duration::from_secs(45)), "45s");
        assert_eq!(human_duration(Duration::from_secs(119)), "119s");
        assert_eq!(human_duration(Duration::from_secs(12 * 60)), "12m");
        assert_eq!(human_duration(Duration::from_secs(23 * 3600 + 59)), "23h");
        assert_eq!(human_duration(Duration::from_secs(72 * 3600)), "3d");
    }

    #[test]
    fn relative_times_say_in_or_ago() {
        let now = Timestamp::from_second(1_000_000).expect("now");
        assert_eq!(relative(now, &at(1_000_000 + 24 * 3600)), "in 24h");
        assert_eq!(relative(now, &at(1_000_000 - 300)), "5m ago");
        assert_eq!(relative(now, &at(1_000_000)), "in 0s");
    }

    #[test]
    fn serializes_yaml_and_json() {
        let value = serde_json::json!([{"email": "bob@example.com"}]);
        assert_eq!(
            serialize(Format::Yaml, &value).unwrap(),
            "- email: bob@example.com\n"
        );
        let json = serialize(Format::Json, &value).unwrap();
        assert!(json.ends_with("]\n"));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&json).unwrap(),
            value
        );
    }

    #[test]
    fn labels_and_joins() {
        use crate::api::Access;
        assert_eq!(
            role_label("viewer", "deployment/*", Access::Full),
            "viewer on deployment/*"
        );
        assert_eq!(
            role_label("admin", "organization", Access::Console),
            "admin on organization (console)"
        );
        assert_eq!(joined(Vec::<String>::new(), ", "), "-");
        assert_eq!(joined(["a", "b"], ", "), "a, b");
        assert_eq!(condition_status(&[], "Ready"), "-");
    }
}
