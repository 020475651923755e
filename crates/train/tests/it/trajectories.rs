//! The `lr` column of full-batch f64 runs against independent host implementations of the
//! papers' equations (ALGORITHMS.md), on linear regression with zero init and CSV data as
//! CLI.md fixes it: loss = mean squared error over the rows, gradient 2/n·Xᵀr.
//!
//! Host and Burn sum in different orders, so values agree to rounding, not bit for bit; each
//! comparison's tolerance says how much rounding the method amplifies.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Rows of (features, target) from a fixed linear congruential generator.
fn data() -> Vec<([f64; 3], f64)> {
    let mut state: u64 = 987654321;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    };
    (0..50)
        .map(|_| {
            let x = [next(), 2.0 * next(), 0.5 * next()];
            let y = 1.5 * x[0] - 2.0 * x[1] + 0.5 * x[2] + 0.3 + 0.2 * next();
            (x, y)
        })
        .collect()
}

/// Writes the data and a config running `optimizer` for `steps` full-batch steps in f64.
fn run(dir: &Path, optimizer: &str, steps: usize) -> Vec<Vec<f64>> {
    let csv: String = std::iter::once("a,b,c,y\n".to_string())
        .chain(
            data()
                .iter()
                .map(|(x, y)| format!("{},{},{},{}\n", x[0], x[1], x[2], y)),
        )
        .collect();
    std::fs::write(dir.join("data.csv"), csv).unwrap();
    let config = format!(
        r#"
[run]
backend = "ndarray"
precision = "f64"
[data]
dataset = "csv"
path = "data.csv"
target = "y"
task = "regression"
batch_size = 50
shuffle = false
[model]
kind = "linear"
init = "zeros"
[optimizer]
{optimizer}
[training]
epochs = {steps}
evaluate = false
"#
    );
    let path: PathBuf = dir.join("exp.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["--config", "exp.toml", "--out", "run"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.join("run/steps.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .map(|c| c.parse().unwrap_or(f64::NAN))
                .collect()
        })
        .collect()
}

/// The regression problem on the host: weights (w_a, w_b, w_c, bias).
struct Problem {
    rows: Vec<([f64; 3], f64)>,
}

impl Problem {
    fn new() -> Self {
        Self { rows: data() }
    }
    fn residual(w: &[f64; 4], x: &[f64; 3], y: f64) -> f64 {
        w[0] * x[0] + w[1] * x[1] + w[2] * x[2] + w[3] - y
    }
    fn loss(&self, w: &[f64; 4]) -> f64 {
        let n = self.rows.len() as f64;
        self.rows
            .iter()
            .map(|(x, y)| Self::residual(w, x, *y).powi(2))
            .sum::<f64>()
            / n
    }
    fn grad(&self, w: &[f64; 4]) -> [f64; 4] {
        let n = self.rows.len() as f64;
        let mut g = [0.0; 4];
        for (x, y) in &self.rows {
            let r = Self::residual(w, x, *y);
            for k in 0..3 {
                g[k] += 2.0 * r * x[k] / n;
            }
            g[3] += 2.0 * r / n;
        }
        g
    }
}

fn dot(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy(w: &[f64; 4], g: &[f64; 4], scale: f64) -> [f64; 4] {
    std::array::from_fn(|k| w[k] + scale * g[k])
}

/// Compares the `lr` column (and the loss column) with the reference, relative `tol`.
fn check(name: &str, rows: &[Vec<f64>], lrs: &[f64], losses: &[f64], tol: f64) {
    assert_eq!(rows.len(), lrs.len(), "{name}: steps");
    for (i, row) in rows.iter().enumerate() {
        let (lr, loss) = (row[3], row[2]);
        assert!(
            (lr - lrs[i]).abs() <= tol * lrs[i].abs(),
            "{name} step {}: lr {lr} vs reference {}",
            i + 1,
            lrs[i]
        );
        assert!(
            (loss - losses[i]).abs() <= tol * losses[i].abs(),
            "{name} step {}: loss {loss} vs reference {}",
            i + 1,
            losses[i]
        );
    }
    // The step size must actually move, or the check says little.
    let (lo, hi) = lrs
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    assert!(hi > lo * 1.01, "{name}: lr stayed at {lo}");
}

#[test]
fn wngrad_follows_its_recursion_with_the_new_b() {
    let dir = tempfile::tempdir().unwrap();
    let rows = run(dir.path(), "kind = \"wngrad\"\nlr = 0.5", 40);
    let p = Problem::new();
    let (mut w, mut b) = ([0.0; 4], 1.0f64);
    let (mut lrs, mut losses) = (vec![], vec![]);
    for _ in 0..40 {
        let g = p.grad(&w);
        losses.push(p.loss(&w));
        b += 0.25 * dot(&g, &g) / b;
        lrs.push(0.5 / b);
        w = axpy(&w, &g, -0.5 / b);
    }
    check("wngrad", &rows, &lrs, &losses, 1e-11);
}

#[test]
fn sps_follows_the_capped_polyak_step() {
    let dir = tempfile::tempdir().unwrap();
    let rows = run(dir.path(), "kind = \"sps\"\nlr = 0.05\nc = 0.5", 40);
    let p = Problem::new();
    let (mut w, mut gamma) = ([0.0; 4], 0.05f64);
    let (mut lrs, mut losses) = (vec![], vec![]);
    for _ in 0..40 {
        let g = p.grad(&w);
        let loss = p.loss(&w);
        losses.push(loss);
        // n_b = 1 batch per epoch: the cap grows by 2^(1/1) per step.
        gamma = (loss / (0.5 * dot(&g, &g))).min(2.0 * gamma);
        lrs.push(gamma);
        w = axpy(&w, &g, -gamma);
    }
    check("sps", &rows, &lrs, &losses, 1e-11);
}

#[test]
fn sgd_hd_follows_the_hypergradient_recursion() {
    let dir = tempfile::tempdir().unwrap();
    let rows = run(dir.path(), "kind = \"sgd_hd\"\nlr = 0.01\nbeta = 0.01", 40);
    let p = Problem::new();
    let (mut w, mut alpha, mut prev) = ([0.0; 4], 0.01f64, [0.0; 4]);
    let (mut lrs, mut losses) = (vec![], vec![]);
    for _ in 0..40 {
        let g = p.grad(&w);
        losses.push(p.loss(&w));
        alpha += 0.01 * dot(&g, &prev);
        lrs.push(alpha);
        w = axpy(&w, &g, -alpha);
        prev = g;
    }
    check("sgd_hd", &rows, &lrs, &losses, 1e-10);
}

#[test]
fn l4mom_follows_equations_3_to_7() {
    let dir = tempfile::tempdir().unwrap();
    let rows = run(dir.path(), "kind = \"l4mom\"\nlr = 0.15", 40);
    let p = Problem::new();
    let (mut w, mut m, mut l_min) = ([0.0; 4], [0.0f64; 4], 0.0f64);
    let (mut lrs, mut losses) = (vec![], vec![]);
    for t in 1..=40 {
        let g = p.grad(&w);
        let loss = p.loss(&w);
        losses.push(loss);
        l_min = if t == 1 { 0.75 * loss } else { l_min.min(loss) };
        m = std::array::from_fn(|k| 0.9 * m[k] + 0.1 * g[k]);
        let m_hat: [f64; 4] = std::array::from_fn(|k| m[k] / (1.0 - 0.9f64.powi(t)));
        let eta = 0.15 * (loss - 0.9 * l_min) / (dot(&m_hat, &m_hat) + 1e-12);
        lrs.push(eta);
        w = axpy(&w, &m_hat, -eta);
        l_min *= 1.0 + 1.0 / 1000.0;
    }
    // η divides by the loss gap L − γ·Lmin: near the minimum that gap carries the loss's
    // rounding relative to itself, hence a wider tolerance than the other methods.
    check("l4mom", &rows, &lrs, &losses, 1e-8);
}

#[test]
fn efficient_gd_tlr_follows_algorithm_2() {
    let dir = tempfile::tempdir().unwrap();
    let rows = run(dir.path(), "kind = \"gd_tlr\"\nlr = 0.01\nc = 0.25", 40);
    let p = Problem::new();
    let ratio = |p: f64, q: f64| {
        if p > 0.0 {
            if q > 0.0 {
                (p / (4.0 * q)).min(0.25)
            } else {
                0.25
            }
        } else if p < 0.0 {
            p / (4.0 * q)
        } else {
            0.0
        }
    };
    let (mut w, mut alpha, mut prev) = ([0.0; 4], 0.01f64, [0.0; 4]);
    let (mut lrs, mut losses) = (vec![], vec![]);
    for _ in 0..40 {
        let g = p.grad(&w);
        losses.push(p.loss(&w));
        let pp = dot(&g, &prev);
        alpha *= 1.0 + ratio(pp, dot(&g, &g) - pp);
        lrs.push(alpha);
        w = axpy(&w, &g, -alpha);
        prev = g;
    }
    check("gd_tlr", &rows, &lrs, &losses, 1e-10);
}

#[test]
fn gorti_ravaut_second_order_follows_equations_10_to_13() {
    let dir = tempfile::tempdir().unwrap();
    let rows = run(
        dir.path(),
        "kind = \"gorti_ravaut\"\norder = \"second\"\nlr = 0.01\neps = 1e-3",
        25,
    );
    let p = Problem::new();
    let (eps, delta) = (1e-3, 1e-6);
    let (mut w, mut eta) = ([0.0; 4], 0.01f64);
    let (mut lrs, mut losses, mut amplification) = (vec![], vec![], vec![]);
    for _ in 0..25 {
        let g = p.grad(&w);
        losses.push(p.loss(&w));
        let f = |e: f64| p.loss(&axpy(&w, &g, -e));
        let (f1p, f1m, f2p, f2m, f0) = (
            f(eta + eps),
            f(eta - eps),
            f(eta + 2.0 * eps),
            f(eta - 2.0 * eps),
            f(eta),
        );
        lrs.push(eta);
        w = axpy(&w, &g, -eta);
        let num = f1p - f1m;
        let mut den = f2p + f2m - 2.0 * f0;
        // How much a rounding error of the losses moves the new η, relative to η.
        amplification.push(f0 / den.abs() * 2.0 * eps * (num / den).abs().max(1.0) / eta);
        if den == 0.0 {
            den += delta;
        }
        eta = (eta - 2.0 * eps * num / den).max(delta);
    }
    // The central differences cancel: a rounding error of the losses (~1e-16 of them) moves
    // the next η by about `amplification` × 1e-16 relative, and η and the weights carry it on.
    // As the gradient shrinks, f″ = gᵀHg shrinks with it and the amplification grows without
    // bound, in any implementation. So each step is compared within the rounding accumulated so
    // far (times 10 for safety), while that bound is still below 1e-6.
    let mut bound = 1e-12;
    let mut compared = 0;
    for (i, row) in rows.iter().enumerate() {
        if bound > 1e-6 {
            break;
        }
        let (lr, loss) = (row[3], row[2]);
        assert!(
            (lr - lrs[i]).abs() <= bound * lrs[i],
            "step {}: lr {lr} vs reference {} (bound {bound:e})",
            i + 1,
            lrs[i]
        );
        assert!(
            (loss - losses[i]).abs() <= bound.max(1e-12) * losses[i],
            "step {}: loss {loss} vs reference {}",
            i + 1,
            losses[i]
        );
        bound += 10.0 * 1e-16 * amplification[i];
        compared += 1;
    }
    assert!(compared >= 10, "only {compared} steps compared");
    // η moved a lot over the compared steps (from 0.01 towards the line-search step).
    assert!(lrs[compared - 1] > 10.0 * lrs[0]);
}

/// A 3-class problem: two features, labels from the larger of three linear scores plus noise.
fn classification_rows() -> Vec<([f64; 2], usize)> {
    let mut state: u64 = 424242;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    };
    (0..60)
        .map(|_| {
            let x = [next(), next()];
            let scores = [x[0] + 0.3 * next(), x[1] + 0.3 * next(), -x[0] - x[1]];
            let label = (0..3)
                .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
                .unwrap();
            (x, label)
        })
        .collect()
}

#[test]
fn sps_on_softmax_cross_entropy_follows_the_polyak_step() {
    // Classification as CLI.md fixes it: softmax cross-entropy averaged over the batch, a
    // linear layer with bias, zero init; SPS uses both the loss value and ‖g‖².
    let dir = tempfile::tempdir().unwrap();
    let rows = classification_rows();
    let mut csv = String::from("u,v,label\n");
    for (x, l) in &rows {
        csv += &format!("{},{},{}\n", x[0], x[1], l);
    }
    std::fs::write(dir.path().join("cls.csv"), csv).unwrap();
    let config = r#"
[run]
backend = "ndarray"
precision = "f64"
[data]
dataset = "csv"
path = "cls.csv"
target = "label"
task = "classification"
batch_size = 60
shuffle = false
[model]
kind = "linear"
init = "zeros"
[optimizer]
kind = "sps"
lr = 0.5
c = 0.5
[training]
epochs = 30
evaluate = false
"#;
    std::fs::write(dir.path().join("cls.toml"), config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["--config", "cls.toml", "--out", "run"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.path().join("run/steps.csv")).unwrap();
    let logged: Vec<Vec<f64>> = text
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .map(|c| c.parse().unwrap_or(f64::NAN))
                .collect()
        })
        .collect();

    // Host reference: W is 2×3 (inputs × classes), b has 3 entries; θ = (W, b).
    let n = rows.len() as f64;
    let loss_and_grad = |w: &[[f64; 3]; 2], b: &[f64; 3]| {
        let (mut loss, mut gw, mut gb) = (0.0, [[0.0; 3]; 2], [0.0; 3]);
        for (x, label) in &rows {
            let z: [f64; 3] = std::array::from_fn(|k| x[0] * w[0][k] + x[1] * w[1][k] + b[k]);
            let max = z.iter().cloned().fold(f64::MIN, f64::max);
            let sum: f64 = z.iter().map(|v| (v - max).exp()).sum();
            loss -= z[*label] - max - sum.ln();
            for k in 0..3 {
                let p = (z[k] - max).exp() / sum - if k == *label { 1.0 } else { 0.0 };
                gw[0][k] += x[0] * p / n;
                gw[1][k] += x[1] * p / n;
                gb[k] += p / n;
            }
        }
        (loss / n, gw, gb)
    };
    let (mut w, mut b, mut gamma) = ([[0.0f64; 3]; 2], [0.0f64; 3], 0.5f64);
    let (mut lrs, mut losses) = (vec![], vec![]);
    for _ in 0..30 {
        let (loss, gw, gb) = loss_and_grad(&w, &b);
        let s: f64 = gw.iter().flatten().chain(&gb).map(|v| v * v).sum();
        losses.push(loss);
        gamma = (loss / (0.5 * s)).min(2.0 * gamma);
        lrs.push(gamma);
        for i in 0..2 {
            for k in 0..3 {
                w[i][k] -= gamma * gw[i][k];
            }
        }
        for k in 0..3 {
            b[k] -= gamma * gb[k];
        }
    }
    assert_eq!(logged.len(), 30);
    // Host and Burn round differently (~1e-16 per operation); the weights carry that from step
    // to step, growing it by about one part in 1e11 over these 30 steps: 1e-9 leaves a margin
    // while a wrong loss scale, reduction or cap would be off by far more.
    for (i, row) in logged.iter().enumerate() {
        assert!(
            (row[2] - losses[i]).abs() <= 1e-9 * losses[i],
            "step {}: loss {} vs {}",
            i + 1,
            row[2],
            losses[i]
        );
        assert!(
            (row[3] - lrs[i]).abs() <= 1e-9 * lrs[i],
            "step {}: lr {} vs {}",
            i + 1,
            row[3],
            lrs[i]
        );
    }
    // Zero init: the first loss is ln 3, and the cap binds at first, the Polyak step later.
    assert!((losses[0] - 3f64.ln()).abs() < 1e-14);
    assert!(
        lrs.windows(2).any(|w| w[1] == 2.0 * w[0]) && lrs.windows(2).any(|w| w[1] < 2.0 * w[0])
    );
}
