//! Runs that differ only in their seed, and their statistics over seeds.
//!
//! Two runs belong to one [`Group`] when their resolved configs are equal once `run.seed` and
//! `run.out_dir` are taken out: the same experiment repeated. Curves of a group are drawn as
//! their mean with a min-max band ([`seed_band`]), in log space for losses and step sizes as the
//! L4 paper plots them; tables report mean ± standard deviation ([`mean_std`]).

use crate::run::Run;

/// Runs of one experiment under several seeds.
#[derive(Debug, Clone)]
pub struct Group<'a> {
    /// The name to show: the run directories' name without its `-seed<K>` ending (a sweep's run
    /// names), else the config's `run.name`; made unique among the groups by the config keys
    /// that tell them apart.
    pub label: String,
    /// Its runs, in the order given.
    pub runs: Vec<&'a Run>,
}

/// The config keys that do not change what a run computes, or that differ between the seeds of
/// one experiment.
const SEED_KEYS: [&str; 2] = ["seed", "out_dir"];

/// Groups `runs` by their configs without `run.seed` and `run.out_dir`, in order of first
/// appearance.
pub fn group_by_seed(runs: &[Run]) -> Vec<Group<'_>> {
    let mut keys: Vec<toml::Table> = Vec::new();
    let mut groups: Vec<Group<'_>> = Vec::new();
    for run in runs {
        let key = seedless(&run.config);
        match keys.iter().position(|k| *k == key) {
            Some(i) => groups[i].runs.push(run),
            None => {
                keys.push(key);
                groups.push(Group {
                    label: String::new(),
                    runs: vec![run],
                });
            }
        }
    }
    for group in &mut groups {
        group.label = base_label(&group.runs);
    }
    disambiguate(&mut groups, &keys);
    groups
}

fn seedless(config: &toml::Table) -> toml::Table {
    let mut config = config.clone();
    if let Some(toml::Value::Table(run)) = config.get_mut("run") {
        for key in SEED_KEYS {
            run.remove(key);
        }
    }
    config
}

/// `name` without a trailing `-seed<digits>`.
pub fn strip_seed_suffix(name: &str) -> &str {
    match name.rfind("-seed") {
        Some(at) if at + 5 < name.len() && name[at + 5..].bytes().all(|b| b.is_ascii_digit()) => {
            &name[..at]
        }
        _ => name,
    }
}

fn base_label(runs: &[&Run]) -> String {
    let first = strip_seed_suffix(&runs[0].name);
    if runs.len() == 1 {
        return first.to_string();
    }
    if runs.iter().all(|r| strip_seed_suffix(&r.name) == first) {
        first.to_string()
    } else {
        runs[0].config_name()
    }
}

/// Appends ` (key=value, …)` to labels that several groups share: the dotted config keys whose
/// values differ among those groups.
fn disambiguate(groups: &mut [Group<'_>], keys: &[toml::Table]) {
    let flat: Vec<Vec<(String, String)>> = keys.iter().map(flatten).collect();
    let labels: Vec<String> = groups.iter().map(|g| g.label.clone()).collect();
    for (i, group) in groups.iter_mut().enumerate() {
        let same: Vec<usize> = (0..labels.len())
            .filter(|&j| labels[j] == labels[i])
            .collect();
        if same.len() < 2 {
            continue;
        }
        let value = |j: usize, key: &str| {
            flat[j]
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let mut differing: Vec<String> = Vec::new();
        for (key, _) in flat.iter().flat_map(|f| f.iter()) {
            if differing.iter().any(|d| d == key) {
                continue;
            }
            let mine = value(i, key);
            if same.iter().any(|&j| value(j, key) != mine) {
                differing.push(key.clone());
            }
        }
        let parts: Vec<String> = differing
            .iter()
            .map(|key| format!("{key}={}", value(i, key).unwrap_or_else(|| "-".into())))
            .collect();
        group.label = format!("{} ({})", group.label, parts.join(", "));
    }
}

/// Every leaf of a TOML table as (dotted key, value as TOML text), in key order.
fn flatten(table: &toml::Table) -> Vec<(String, String)> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut Vec<(String, String)>) {
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                toml::Value::Table(inner) => walk(&path, inner, out),
                other => out.push((path, other.to_string())),
            }
        }
    }
    let mut out = Vec::new();
    walk("", table, &mut out);
    out
}

/// How values of several seeds are averaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Averaging {
    /// The arithmetic mean.
    Arithmetic,
    /// The mean of the logarithms, exponentiated (the geometric mean): for positive quantities
    /// drawn on a log scale (losses, step sizes). Non-positive values are left out.
    Geometric,
}

impl Averaging {
    /// The mean of `values` (finite ones; for [`Averaging::Geometric`] positive ones); `None`
    /// when none qualify.
    pub fn mean(self, values: impl IntoIterator<Item = f64>) -> Option<f64> {
        let (mut sum, mut n) = (0.0f64, 0usize);
        for v in values {
            let ok = v.is_finite() && (self == Self::Arithmetic || v > 0.0);
            if ok {
                sum += match self {
                    Self::Arithmetic => v,
                    Self::Geometric => v.ln(),
                };
                n += 1;
            }
        }
        (n > 0).then(|| {
            let m = sum / n as f64;
            match self {
                Self::Arithmetic => m,
                Self::Geometric => m.exp(),
            }
        })
    }
}

/// One curve of a group: the seeds' mean at each x with the seeds' minimum and maximum.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    /// The x values (steps or epochs) where at least one seed has a value, increasing.
    pub x: Vec<f64>,
    /// The seeds' mean there.
    pub mean: Vec<f64>,
    /// The smallest seed's value there.
    pub min: Vec<f64>,
    /// The largest seed's value there.
    pub max: Vec<f64>,
    /// How many seeds have a value there (fewer after a seed diverged or stopped early).
    pub count: Vec<usize>,
}

/// The band of several curves `(x, y)`, aligned by equal x: at every x that some curve has, the
/// mean (by `averaging`), minimum and maximum of the curves' values there. Non-finite values
/// (and, for geometric averaging, non-positive ones) are left out; an x where no value is left
/// is dropped.
pub fn seed_band(curves: &[(&[f64], &[f64])], averaging: Averaging) -> Band {
    let mut points: Vec<(f64, f64)> = curves
        .iter()
        .flat_map(|(x, y)| x.iter().copied().zip(y.iter().copied()))
        .filter(|(x, y)| {
            x.is_finite() && y.is_finite() && (averaging == Averaging::Arithmetic || *y > 0.0)
        })
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut band = Band {
        x: Vec::new(),
        mean: Vec::new(),
        min: Vec::new(),
        max: Vec::new(),
        count: Vec::new(),
    };
    for chunk in points.chunk_by(|a, b| a.0 == b.0) {
        let values = chunk.iter().map(|p| p.1);
        let Some(mean) = averaging.mean(values.clone()) else {
            continue;
        };
        band.x.push(chunk[0].0);
        band.mean.push(mean);
        band.min.push(values.clone().fold(f64::INFINITY, f64::min));
        band.max.push(values.fold(f64::NEG_INFINITY, f64::max));
        band.count.push(chunk.len());
    }
    band
}

/// Averages a curve over windows of `width` consecutive x values: window k holds the x in
/// `[first + k·width, first + (k+1)·width)` where `first` is `origin`; its point is the window's
/// mean x and the mean y (by `averaging`). With the same `origin` and `width` for every run the
/// windows line up across runs, so a band over their windows compares like with like.
pub fn window_means(
    x: &[f64],
    y: &[f64],
    origin: f64,
    width: f64,
    averaging: Averaging,
) -> (Vec<f64>, Vec<f64>) {
    let mut out_x = Vec::new();
    let mut out_y = Vec::new();
    let mut current: Option<i64> = None;
    let mut xs: Vec<f64> = Vec::new();
    let mut ys: Vec<f64> = Vec::new();
    let mut flush = |xs: &mut Vec<f64>, ys: &mut Vec<f64>| {
        if let Some(mean) = averaging.mean(ys.iter().copied()) {
            out_x.push(xs.iter().sum::<f64>() / xs.len() as f64);
            out_y.push(mean);
        }
        xs.clear();
        ys.clear();
    };
    for (&xi, &yi) in x.iter().zip(y) {
        if !xi.is_finite() {
            continue;
        }
        let k = ((xi - origin) / width).floor() as i64;
        if current != Some(k) {
            if current.is_some() {
                flush(&mut xs, &mut ys);
            }
            current = Some(k);
        }
        xs.push(xi);
        ys.push(yi);
    }
    if current.is_some() {
        flush(&mut xs, &mut ys);
    }
    (out_x, out_y)
}

/// The mean and the sample standard deviation (n − 1; 0 for one value) of the finite values;
/// `None` when there are none.
pub fn mean_std(values: &[f64]) -> Option<(f64, f64)> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let n = finite.len();
    if n == 0 {
        return None;
    }
    let mean = finite.iter().sum::<f64>() / n as f64;
    let std = if n > 1 {
        (finite.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    Some((mean, std))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Status;
    use std::path::PathBuf;

    fn run(name: &str, config: &str) -> Run {
        Run {
            dir: PathBuf::from(name),
            name: name.into(),
            config: config.parse().unwrap(),
            steps: None,
            epochs: None,
            layers: None,
            status: Status::Completed,
            status_text: "completed".into(),
        }
    }

    #[test]
    fn runs_that_differ_only_in_seed_form_one_group() {
        let runs = vec![
            run(
                "ae_sgd-seed0",
                "[run]\nname='ae_sgd'\nseed=0\n[optimizer]\nlr=2.0",
            ),
            run(
                "ae_lg-seed0",
                "[run]\nname='ae_lg'\nseed=0\n[optimizer]\nlr=1e-4",
            ),
            run(
                "ae_sgd-seed1",
                "[run]\nname='ae_sgd'\nseed=1\nout_dir='x'\n[optimizer]\nlr=2.0",
            ),
        ];
        let groups = group_by_seed(&runs);
        let shape: Vec<(&str, Vec<&str>)> = groups
            .iter()
            .map(|g| {
                (
                    g.label.as_str(),
                    g.runs.iter().map(|r| r.name.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                ("ae_sgd", vec!["ae_sgd-seed0", "ae_sgd-seed1"]),
                ("ae_lg", vec!["ae_lg-seed0"])
            ]
        );
    }

    #[test]
    fn groups_with_one_name_are_told_apart_by_their_differing_keys() {
        let runs = vec![
            run(
                "q-seed0",
                "[run]\nname='q'\nseed=0\n[optimizer]\nlr=0.1\nc=1.05",
            ),
            run(
                "q-seed1",
                "[run]\nname='q'\nseed=1\n[optimizer]\nlr=0.1\nc=1.05",
            ),
            run(
                "q-seed0",
                "[run]\nname='q'\nseed=0\n[optimizer]\nlr=0.5\nc=1.05",
            ),
            run("a", "[run]\nname='r'\nseed=0"),
            run("b", "[run]\nname='r'\nseed=1"),
        ];
        // Two experiments both named `q` by their seedless run names; a and b are one
        // experiment under two seeds without seed names: labelled by run.name.
        let labels: Vec<String> = group_by_seed(&runs).into_iter().map(|g| g.label).collect();
        assert_eq!(
            labels,
            ["q (optimizer.lr=0.1)", "q (optimizer.lr=0.5)", "r"]
        );
    }

    #[test]
    fn seed_suffixes_come_off_only_when_they_are_one() {
        assert_eq!(strip_seed_suffix("x-lr=0.1-seed12"), "x-lr=0.1");
        assert_eq!(strip_seed_suffix("x-seed"), "x-seed");
        assert_eq!(strip_seed_suffix("x-seedy"), "x-seedy");
        assert_eq!(strip_seed_suffix("plain"), "plain");
    }

    #[test]
    fn the_band_matches_a_direct_computation() {
        let x1 = [1.0, 2.0, 3.0];
        let y1 = [1.0, 10.0, 100.0];
        let x2 = [1.0, 2.0];
        let y2 = [4.0, f64::NAN];
        let band = seed_band(&[(&x1, &y1), (&x2, &y2)], Averaging::Geometric);
        assert_eq!(band.x, [1.0, 2.0, 3.0]);
        // Geometric mean of 1 and 4 is 2; the NaN of seed 2 at x = 2 is left out.
        assert!((band.mean[0] - 2.0).abs() < 1e-12);
        assert!((band.mean[1] - 10.0).abs() < 1e-12);
        assert!((band.mean[2] - 100.0).abs() < 1e-12);
        assert_eq!(band.min, [1.0, 10.0, 100.0]);
        assert_eq!(band.max, [4.0, 10.0, 100.0]);
        assert_eq!(band.count, [2, 1, 1]);
        let arithmetic = seed_band(&[(&x1, &y1), (&x2, &y2)], Averaging::Arithmetic);
        assert_eq!(arithmetic.mean[0], 2.5);
        // Geometric averaging leaves out values ≤ 0; arithmetic keeps them.
        let y3 = [0.0, 5.0, 1.0];
        let band = seed_band(&[(&x1, &y3)], Averaging::Geometric);
        assert_eq!(band.x, [2.0, 3.0]);
        assert_eq!(seed_band(&[(&x1, &y3)], Averaging::Arithmetic).x.len(), 3);
    }

    #[test]
    fn window_means_line_up_on_the_origin() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [1.0, 3.0, 5.0, 7.0, 9.0];
        let (wx, wy) = window_means(&x, &y, 1.0, 2.0, Averaging::Arithmetic);
        assert_eq!(wx, [1.5, 3.5, 5.0]);
        assert_eq!(wy, [2.0, 6.0, 9.0]);
        let (_, gy) = window_means(&x[..2], &[1.0, 100.0], 1.0, 2.0, Averaging::Geometric);
        assert!((gy[0] - 10.0).abs() < 1e-12);
    }

    #[test]
    fn mean_and_sample_std() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, f64::NAN]).unwrap();
        assert_eq!(m, 2.0);
        assert!((s - 1.0).abs() < 1e-15);
        assert_eq!(mean_std(&[5.0]), Some((5.0, 0.0)));
        assert_eq!(mean_std(&[f64::NAN]), None);
    }
}
