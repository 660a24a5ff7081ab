//! The results: one row per figure with its floor, ratio and budget, written as JSON and as a
//! Markdown table.

use serde::Serialize;

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// What was measured, e.g. "relay overhead p50, idle".
    pub figure: String,
    /// "SQLite", "PostgreSQL", or "-" when the backend does not matter.
    pub backend: String,
    pub value: f64,
    pub unit: &'static str,
    /// The floor it is compared with, measured in the same run, and its value in `floor_unit`.
    pub floor: Option<(String, f64)>,
    /// The floor's unit: the row's own unless set with [`Row::floor_in`].
    pub floor_unit: &'static str,
    /// `value / floor`.
    pub ratio: Option<f64>,
    /// The DESIGN §6 budget, e.g. "≤ 5 ms", and whether this value meets it.
    pub budget: Option<Budget>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Budget {
    pub text: String,
    pub met: bool,
}

impl Row {
    pub fn new(figure: impl Into<String>, backend: &str, value: f64, unit: &'static str) -> Row {
        Row {
            figure: figure.into(),
            backend: backend.to_owned(),
            value,
            unit,
            floor_unit: unit,
            floor: None,
            ratio: None,
            budget: None,
        }
    }

    /// Compared with `floor` (same unit): the ratio is `value / floor`.
    pub fn floor(mut self, name: &str, floor: f64) -> Row {
        self.ratio = (floor > 0.0).then(|| self.value / floor);
        self.floor = Some((name.to_owned(), floor));
        self
    }

    /// Compared with `floor`, a figure of another kind in `unit` (a throughput against commits per
    /// second): the ratio is still `value / floor`.
    pub fn floor_in(self, name: &str, floor: f64, unit: &'static str) -> Row {
        Row {
            floor_unit: unit,
            ..self.floor(name, floor)
        }
    }

    /// A budget the value must stay at or under.
    pub fn at_most(mut self, limit: f64) -> Row {
        self.budget = Some(Budget {
            text: format!("≤ {} {}", number(limit), self.unit),
            met: self.value <= limit,
        });
        self
    }

    /// A budget the value must reach.
    pub fn at_least(mut self, limit: f64) -> Row {
        self.budget = Some(Budget {
            text: format!("≥ {} {}", number(limit), self.unit),
            met: self.value >= limit,
        });
        self
    }
}

/// The rows as a Markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| figure | backend | value | floor (same run) | ratio | budget | met |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let floor = row.floor.as_ref().map_or("—".to_owned(), |(name, value)| {
            format!("{name}: {} {}", number(*value), row.floor_unit)
        });
        let ratio = row.ratio.map_or("—".to_owned(), |r| format!("{r:.2}×"));
        let (budget, met) = row.budget.as_ref().map_or(("—".to_owned(), "—"), |b| {
            (b.text.clone(), if b.met { "yes" } else { "**no**" })
        });
        let value = format!("{} {}", number(row.value), row.unit);
        out += &format!(
            "| {} | {} | {} | {floor} | {ratio} | {budget} | {met} |\n",
            row.figure,
            row.backend,
            value.trim_end()
        );
    }
    out
}

/// A number the way a person writes it: thousands separated, at most 3 significant decimals.
pub fn number(value: f64) -> String {
    let decimals = match value.abs() {
        v if v >= 100.0 => 0,
        v if v >= 10.0 => 1,
        _ => 3,
    };
    let text = crate::chart::format_number(value, decimals);
    if decimals == 0 {
        text
    } else {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_like_a_person_writes_them() {
        assert_eq!(number(5000.0), "5,000");
        assert_eq!(number(1234567.4), "1,234,567");
        assert_eq!(number(150.2), "150");
        assert_eq!(number(24.56), "24.6");
        assert_eq!(number(0.1234), "0.123");
        assert_eq!(number(5.0), "5");
        assert_eq!(number(0.5), "0.5");
    }

    #[test]
    fn rows_carry_ratio_and_budget() {
        let row = Row::new("relay overhead p50", "SQLite", 2.0, "ms")
            .floor("HTTP round trip p50", 0.5)
            .at_most(5.0);
        assert_eq!(row.ratio, Some(4.0));
        assert!(row.budget.as_ref().unwrap().met);
        let table = table(&[
            row,
            Row::new("throughput", "SQLite", 10.0, "msg/s")
                .floor_in("bare SQLite commits per second", 100.0, "/s")
                .at_least(5000.0),
            Row::new("answers per message", "SQLite", 2.5, ""),
        ]);
        assert!(
            table.contains("| answers per message | SQLite | 2.5 | — |"),
            "{table}"
        );
        assert!(
            table.contains("| bare SQLite commits per second: 100 /s | 0.10× | ≥ 5,000 msg/s |"),
            "{table}"
        );
        assert!(table.contains("| relay overhead p50 | SQLite | 2 ms | HTTP round trip p50: 0.5 ms | 4.00× | ≤ 5 ms | yes |"), "{table}");
        assert!(table.contains("| **no** |"), "{table}");
    }
}
