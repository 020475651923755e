//! Tabular data from a CSV file, exactly as the `train` contract (`spec/CLI.md`) fixes it for `dataset = "csv"`.
//!
//! The first row names the columns; the `target` column is what is predicted and every other
//! column is an input feature, in file order. Values are parsed as `f64` and kept as `f64`, so
//! f64 training sees exactly the numbers written in the file.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{DataError, Dataset, Features, Targets};

/// What the target column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CsvTask {
    /// A real number per row; the targets become [`Targets::Values`] with one column.
    Regression,
    /// A class `0..K-1` per row, `K` being the largest label plus one; the targets become
    /// [`Targets::Classes`].
    Classification,
}

/// Loads a CSV file with a header row; see [`parse_csv`].
pub fn load_csv(
    path: &Path,
    target: &str,
    task: CsvTask,
    classes: Option<u32>,
) -> Result<Dataset, DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    parse_csv(file, &path.display().to_string(), target, task, classes)
}

/// Parses CSV text with a header row: the column named `target` is the target, every other
/// column an input feature, in file order.
///
/// Cells may be surrounded by spaces. Errors name the file (`name`), and for a bad cell the line
/// and the column: an empty file or one without data rows, a missing target column (listing the
/// columns found), a row with a different number of fields than the header, a cell that is not a
/// finite number, and for classification a target that is not a whole number `>= 0`, or, when
/// `classes` is given, not below it. For classification the number of classes is `classes`, or
/// else the largest label plus one.
pub fn parse_csv(
    reader: impl Read,
    name: &str,
    target: &str,
    task: CsvTask,
    classes: Option<u32>,
) -> Result<Dataset, DataError> {
    let file = || name.to_owned();
    let syntax = |e: ::csv::Error| DataError::Csv {
        file: file(),
        problem: e.to_string(),
    };
    let mut rdr = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true) // ragged rows are reported below, with their line number
        .trim(::csv::Trim::All)
        .from_reader(reader);

    let header: Vec<String> = rdr
        .headers()
        .map_err(syntax)?
        .iter()
        .map(str::to_owned)
        .collect();
    if header.is_empty() || header.iter().all(String::is_empty) {
        return Err(DataError::Csv {
            file: file(),
            problem: "empty file: no header row".into(),
        });
    }
    if let Some(dup) = header
        .iter()
        .enumerate()
        .find_map(|(i, h)| header[..i].contains(h).then_some(h))
    {
        return Err(DataError::Csv {
            file: file(),
            problem: format!("column \"{dup}\" appears twice"),
        });
    }
    let Some(target_col) = header.iter().position(|h| h == target) else {
        return Err(DataError::CsvMissingTarget {
            file: file(),
            target: target.to_owned(),
            found: header,
        });
    };
    if header.len() < 2 {
        return Err(DataError::Csv {
            file: file(),
            problem: format!("no input columns: \"{target}\" is the only column"),
        });
    }

    let mut features = Vec::new();
    let mut targets = Vec::new();
    let mut record = ::csv::StringRecord::new();
    while rdr.read_record(&mut record).map_err(syntax)? {
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != header.len() {
            return Err(DataError::CsvRaggedRow {
                file: file(),
                line,
                expected: header.len(),
                found: record.len(),
            });
        }
        for (col, cell) in record.iter().enumerate() {
            let bad = |problem| DataError::CsvBadValue {
                file: file(),
                line,
                column: header[col].clone(),
                value: cell.to_owned(),
                problem,
            };
            let value: f64 = cell.parse().map_err(|_| bad("not a number".into()))?;
            if !value.is_finite() {
                return Err(bad("not a finite number".into()));
            }
            if col != target_col {
                features.push(value);
            } else if task == CsvTask::Classification
                && (value < 0.0 || value.fract() != 0.0 || value > f64::from(u32::MAX - 1))
            {
                return Err(bad("not a class (a whole number 0, 1, 2, ...)".into()));
            } else if task == CsvTask::Classification
                && let Some(k) = classes
                && value >= f64::from(k)
            {
                return Err(bad(format!(
                    "outside the {k} classes 0..{} that data.classes sets",
                    k.saturating_sub(1)
                )));
            } else {
                targets.push(value);
            }
        }
    }
    let rows = targets.len();
    if rows == 0 {
        return Err(DataError::Csv {
            file: file(),
            problem: "no data rows after the header".into(),
        });
    }

    let features = Features::from_f64(rows, header.len() - 1, features)?;
    let targets = match task {
        CsvTask::Regression => Targets::Values(Features::from_f64(rows, 1, targets)?),
        CsvTask::Classification => {
            // Checked above: whole numbers in 0..u32::MAX, so the casts are exact.
            let labels: Vec<u32> = targets.iter().map(|&t| t as u32).collect();
            let num_classes = match classes {
                Some(k) => k as usize,
                None => labels.iter().max().map_or(0, |&m| m as usize + 1),
            };
            Targets::Classes {
                labels,
                num_classes,
            }
        }
    };
    Dataset::new(features, targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, target: &str, task: CsvTask) -> Result<Dataset, DataError> {
        parse_csv(text.as_bytes(), "data.csv", target, task, None)
    }

    #[test]
    fn a_class_count_bounds_the_labels_and_names_the_line() {
        let text = "y,x\n0,0.5\n1,1.5\n";
        let d = parse_csv(
            text.as_bytes(),
            "t.csv",
            "y",
            CsvTask::Classification,
            Some(3),
        );
        assert!(matches!(
            d.unwrap().targets,
            Targets::Classes { num_classes: 3, .. }
        ));
        let err = parse_csv(
            text.as_bytes(),
            "t.csv",
            "y",
            CsvTask::Classification,
            Some(1),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("t.csv") && err.contains("line 3"), "{err}");
        assert!(err.contains("data.classes"), "{err}");
    }

    #[test]
    fn regression_uses_every_other_column_as_features_in_file_order() {
        let d = parse("a,y,b\n1,10.5,2\n3,-1e-3,4\n", "y", CsvTask::Regression).unwrap();
        assert_eq!((d.len(), d.features.cols()), (2, 2));
        assert_eq!(d.features.gather_f64(&[0, 1]), vec![1.0, 2.0, 3.0, 4.0]);
        let Targets::Values(y) = &d.targets else {
            panic!("values expected")
        };
        assert_eq!(y.gather_f64(&[0, 1]), vec![10.5, -1e-3]);
    }

    #[test]
    fn features_keep_every_digit_of_the_file() {
        let d = parse(
            "x,y\n0.1000000000000000055511151231257827,0.3\n",
            "y",
            CsvTask::Regression,
        )
        .unwrap();
        assert_eq!(d.features.gather_f64(&[0]), vec![0.1]);
    }

    #[test]
    fn classification_counts_classes_from_the_largest_label() {
        let d = parse("y,x\n2,0.5\n0, 1.5 \n2.0,3\n", "y", CsvTask::Classification).unwrap();
        assert_eq!(
            d.targets,
            Targets::Classes {
                labels: vec![2, 0, 2],
                num_classes: 3
            }
        );
        assert_eq!(d.features.gather_f64(&[0, 1, 2]), vec![0.5, 1.5, 3.0]);
    }

    #[test]
    fn a_missing_file_is_an_io_error_naming_it() {
        let err = load_csv(
            Path::new("/nonexistent/data.csv"),
            "y",
            CsvTask::Regression,
            None,
        )
        .unwrap_err();
        assert!(matches!(err, DataError::Io { .. }));
        assert!(
            err.to_string().starts_with("/nonexistent/data.csv: "),
            "{err}"
        );
    }

    #[test]
    fn a_missing_target_column_lists_the_columns_found() {
        let err = parse("a,b\n1,2\n", "y", CsvTask::Regression).unwrap_err();
        assert!(matches!(err, DataError::CsvMissingTarget { .. }));
        assert_eq!(
            err.to_string(),
            "data.csv: no column named \"y\" (columns found: a, b)"
        );
    }

    #[test]
    fn a_ragged_row_names_its_line() {
        let err = parse("a,y\n1,2\n3\n", "y", CsvTask::Regression).unwrap_err();
        assert!(matches!(
            err,
            DataError::CsvRaggedRow {
                line: 3,
                expected: 2,
                found: 1,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "data.csv: line 3: 1 fields, but the header has 2"
        );
    }

    #[test]
    fn an_unparsable_number_names_file_line_and_column() {
        let err = parse("a,y\n1,2\n3,4\nx1,5\n", "y", CsvTask::Regression).unwrap_err();
        assert!(matches!(err, DataError::CsvBadValue { line: 4, .. }));
        assert_eq!(
            err.to_string(),
            "data.csv: line 4, column \"a\": not a number: \"x1\""
        );
        let err = parse("a,y\n1,\n", "y", CsvTask::Regression).unwrap_err();
        assert!(
            matches!(err, DataError::CsvBadValue { line: 2, .. }),
            "{err}"
        );
        let err = parse("a,y\nnan,1\n", "y", CsvTask::Regression).unwrap_err();
        assert!(err.to_string().contains("not a finite number"), "{err}");
    }

    #[test]
    fn a_non_integer_or_negative_class_is_an_error() {
        for bad in ["1.5", "-1", "abc"] {
            let err = parse(
                &format!("x,y\n0,1\n1,{bad}\n"),
                "y",
                CsvTask::Classification,
            )
            .unwrap_err();
            assert!(
                matches!(err, DataError::CsvBadValue { line: 3, .. }),
                "{err}"
            );
            assert!(
                err.to_string()
                    .starts_with("data.csv: line 3, column \"y\""),
                "{err}"
            );
        }
    }

    #[test]
    fn an_empty_file_or_one_without_rows_is_an_error() {
        let err = parse("", "y", CsvTask::Regression).unwrap_err();
        assert_eq!(err.to_string(), "data.csv: empty file: no header row");
        let err = parse("x,y\n", "y", CsvTask::Regression).unwrap_err();
        assert_eq!(err.to_string(), "data.csv: no data rows after the header");
    }

    #[test]
    fn duplicate_columns_and_a_lone_target_are_errors() {
        let err = parse("x,x,y\n1,2,3\n", "y", CsvTask::Regression).unwrap_err();
        assert!(err.to_string().contains("\"x\" appears twice"), "{err}");
        let err = parse("y\n1\n", "y", CsvTask::Regression).unwrap_err();
        assert!(err.to_string().contains("no input columns"), "{err}");
    }
}
