//! One direction of an LSTM layer over a padded batch, written from its equations with
//! PyTorch's gate layout, returning each sequence's state at its real length.
//!
//! ```text
//! gates = x_t·W_ihᵀ + b_ih + h·W_hhᵀ + b_hh        (rows: input i, forget f, cell g, output o)
//! i = σ(gates_i)  f = σ(gates_f)  g = tanh(gates_g)  o = σ(gates_o)
//! c' = f ⊙ c + i ⊙ g        h' = o ⊙ tanh(c')
//! c ← c + m_t ⊙ (c' − c)    h ← h + m_t ⊙ (h' − h)  (m_t = 1 at a real token, 0 at padding)
//! ```
//!
//! Weights as PyTorch's `nn.LSTM` stores them (`weight_ih_l0` `[4H, E]`, `weight_hh_l0`
//! `[4H, H]`, two bias vectors `[4H]`, the `_reverse` suffix for the backward direction), all
//! initialised U(±1/√H) as PyTorch does, so the parameter count is PyTorch's. The gates use
//! [`sigmoid`](crate::sigmoid), exact in f64 (Burn's own computes in f32). Each step's four
//! gates are one product (`[B, E + H] × [E + H, 4H]`). The mask freezes a sequence's state at padding: the
//! forward direction stops at the last real token, and the backward direction, run from the
//! last step down, stays at zero until it reaches it, so padding never leaks into either final
//! state (the state a PyTorch `pack_padded_sequence` run returns).

use burn::tensor::Tensor;

use super::{Builder, ParamId, Pass};
use crate::{Init, sigmoid};

/// One direction of a one-layer LSTM (see the module docs).
#[derive(Debug, Clone)]
pub struct LstmDirection {
    w_ih: ParamId,
    w_hh: ParamId,
    b_ih: ParamId,
    b_hh: ParamId,
    input: usize,
    hidden: usize,
    reverse: bool,
}

impl LstmDirection {
    /// Registers `{name}.weight_ih_l0{suffix}`, `weight_hh`, `bias_ih`, `bias_hh` (suffix
    /// `_reverse` when `reverse`) for inputs of `input` values and `hidden` units.
    pub fn new(b: &mut Builder, name: &str, input: usize, hidden: usize, reverse: bool) -> Self {
        let suffix = if reverse { "_l0_reverse" } else { "_l0" };
        let init = Init::torch_default(hidden);
        let gates = 4 * hidden;
        Self {
            w_ih: b.param(
                format!("{name}.weight_ih{suffix}"),
                vec![gates, input],
                init.clone(),
            ),
            w_hh: b.param(
                format!("{name}.weight_hh{suffix}"),
                vec![gates, hidden],
                init.clone(),
            ),
            b_ih: b.param(format!("{name}.bias_ih{suffix}"), vec![gates], init.clone()),
            b_hh: b.param(format!("{name}.bias_hh{suffix}"), vec![gates], init),
            input,
            hidden,
            reverse,
        }
    }

    /// The state `h` `[batch, hidden]` of each sequence of `x` `[batch, steps, input]` after its
    /// last real step (the first, for the backward direction), with `mask` `[batch, steps]`.
    ///
    /// Each step takes its input with one slice of `x` and computes all four gates with one
    /// product, `[x_t, h]·[W_ih; W_hh]ᵀ`. The input is sliced rather than projected for all
    /// steps at once because Burn's autodiff turns the gradient of every slice into a tensor the
    /// size of the sliced one: slicing a tracked `[batch, steps, 4H]` projection per step would
    /// cost O(steps²) in the backward pass. A frozen embedding's `x` is not tracked, so its
    /// slices cost nothing in the backward pass; a trained embedding pays O(steps² · batch ·
    /// input) there.
    pub fn final_state(&self, pass: &Pass<'_>, x: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
        let [batch, steps, input] = x.dims();
        debug_assert_eq!(input, self.input, "LSTM input width");
        let h = self.hidden;
        let bias = self.bias(pass);
        let weights = self.weights(pass);
        let options = (&x.device(), x.dtype());
        let mut state = Tensor::<2>::zeros([batch, h], options);
        let mut cell = Tensor::<2>::zeros([batch, h], options);
        let order: Box<dyn Iterator<Item = usize>> = if self.reverse {
            Box::new((0..steps).rev())
        } else {
            Box::new(0..steps)
        };
        for t in order {
            let x_t = x.clone().narrow(1, t, 1).reshape([batch, input]);
            let g = Tensor::cat(vec![x_t, state.clone()], 1)
                .matmul(weights.clone())
                .add(bias.clone());
            let m = mask.clone().narrow(1, t, 1);
            (state, cell) = cell_step(g, state, cell, m, 1);
        }
        state
    }

    /// `[W_ih | W_hh]ᵀ`: `[input + hidden, 4H]`.
    fn weights(&self, pass: &Pass<'_>) -> Tensor<2> {
        let gates = 4 * self.hidden;
        Tensor::cat(
            vec![
                pass.param(self.w_ih).reshape([gates, self.input]),
                pass.param(self.w_hh).reshape([gates, self.hidden]),
            ],
            1,
        )
        .transpose()
    }

    /// `b_ih + b_hh`: `[1, 4H]`.
    fn bias(&self, pass: &Pass<'_>) -> Tensor<2> {
        pass.param(self.b_ih)
            .add(pass.param(self.b_hh))
            .reshape([1, 4 * self.hidden])
    }
}

/// One masked LSTM cell update from the pre-activation `gates` (`[.., 4H]` along `dim`): the new
/// `(state, cell)`.
fn cell_step<const D: usize>(
    gates: Tensor<D>,
    state: Tensor<D>,
    cell: Tensor<D>,
    mask: Tensor<D>,
    dim: usize,
) -> (Tensor<D>, Tensor<D>) {
    let mut parts = gates.chunk(4, dim).into_iter();
    let (Some(i), Some(f), Some(c), Some(o)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        unreachable!("four gate blocks");
    };
    let new_cell = sigmoid(f).mul(cell.clone()).add(sigmoid(i).mul(c.tanh()));
    let new_state = sigmoid(o).mul(new_cell.clone().tanh());
    let cell = cell.clone().add(new_cell.sub(cell).mul(mask.clone()));
    let state = state.clone().add(new_state.sub(state).mul(mask));
    (state, cell)
}

/// A bidirectional one-layer LSTM: both directions run in lockstep, as one batched product and
/// one set of element-wise operations over `[2, batch, ..]` per step (half the operations of
/// running them one after the other; the arithmetic is the same).
#[derive(Debug, Clone)]
pub struct BiLstm {
    forward: LstmDirection,
    backward: LstmDirection,
}

impl BiLstm {
    /// Registers both directions' tensors under `name` (PyTorch's names, see
    /// [`LstmDirection::new`]): the forward one first.
    pub fn new(b: &mut Builder, name: &str, input: usize, hidden: usize) -> Self {
        Self {
            forward: LstmDirection::new(b, name, input, hidden, false),
            backward: LstmDirection::new(b, name, input, hidden, true),
        }
    }

    /// The final states of both directions, concatenated: `[batch, 2·hidden]` (forward first),
    /// each what [`LstmDirection::final_state`] returns.
    pub fn final_states(&self, pass: &Pass<'_>, x: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
        let [batch, steps, input] = x.dims();
        let h = self.forward.hidden;
        let weights: Tensor<3> = Tensor::stack(
            vec![self.forward.weights(pass), self.backward.weights(pass)],
            0,
        );
        let bias: Tensor<3> =
            Tensor::stack(vec![self.forward.bias(pass), self.backward.bias(pass)], 0);
        let options = (&x.device(), x.dtype());
        let mut state = Tensor::<3>::zeros([2, batch, h], options);
        let mut cell = Tensor::<3>::zeros([2, batch, h], options);
        let at = |t: usize| x.clone().narrow(1, t, 1).reshape([1, batch, input]);
        let mask_at = |t: usize| mask.clone().narrow(1, t, 1).reshape([1, batch, 1]);
        for t in 0..steps {
            let back = steps - 1 - t;
            let x_t = Tensor::cat(vec![at(t), at(back)], 0);
            let g = Tensor::cat(vec![x_t, state.clone()], 2)
                .matmul(weights.clone())
                .add(bias.clone());
            let m = Tensor::cat(vec![mask_at(t), mask_at(back)], 0);
            (state, cell) = cell_step(g, state, cell, m, 2);
        }
        Tensor::cat(
            vec![
                state.clone().narrow(0, 0, 1).reshape([batch, h]),
                state.narrow(0, 1, 1).reshape([batch, h]),
            ],
            1,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mode;
    use crate::layers::Specs;
    use crate::layers::gradcheck::{
        assert_gradients_match, data, tensor, values, weigh, with_pass,
    };

    const E: usize = 3;
    const H: usize = 2;

    fn layer(reverse: bool) -> (LstmDirection, Specs) {
        let mut b = Builder::new();
        let l = LstmDirection::new(&mut b, "lstm", E, H, reverse);
        (l, b.finish())
    }

    fn mask(lengths: &[usize], steps: usize) -> Tensor<2> {
        let m: Vec<f64> = lengths
            .iter()
            .flat_map(|&n| (0..steps).map(move |t| if t < n { 1.0 } else { 0.0 }))
            .collect();
        tensor(&m).reshape([lengths.len(), steps])
    }

    /// A scalar LSTM step by step on the host, for one sequence (the equations above).
    fn reference(p: &[Vec<f64>], x: &[f64], len: usize, reverse: bool) -> Vec<f64> {
        let (w_ih, w_hh, b_ih, b_hh) = (&p[0], &p[1], &p[2], &p[3]);
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let (mut h, mut c) = (vec![0.0; H], vec![0.0; H]);
        let order: Vec<usize> = if reverse {
            (0..len).rev().collect()
        } else {
            (0..len).collect()
        };
        for t in order {
            let xt = &x[t * E..(t + 1) * E];
            let gate = |row: usize| {
                b_ih[row]
                    + b_hh[row]
                    + (0..E).map(|j| w_ih[row * E + j] * xt[j]).sum::<f64>()
                    + (0..H).map(|j| w_hh[row * H + j] * h[j]).sum::<f64>()
            };
            let mut nh = vec![0.0; H];
            for u in 0..H {
                let (i, f) = (sig(gate(u)), sig(gate(H + u)));
                let (g, o) = (gate(2 * H + u).tanh(), sig(gate(3 * H + u)));
                c[u] = f * c[u] + i * g;
                nh[u] = o * c[u].tanh();
            }
            h = nh;
        }
        h
    }

    fn params() -> Vec<Vec<f64>> {
        vec![
            data(1, 4 * H * E),
            data(2, 4 * H * H),
            data(3, 4 * H),
            data(4, 4 * H),
        ]
    }

    #[test]
    fn final_states_match_the_equations_at_each_real_length() {
        let p = params();
        let t: Vec<Tensor<1>> = p.iter().map(|v| tensor(v)).collect();
        let (steps, lengths) = (4, [4, 2, 1, 0]);
        let x = data(5, lengths.len() * steps * E);
        for reverse in [false, true] {
            let (lstm, specs) = layer(reverse);
            let got = with_pass(&specs, &t, &[], Mode::Train, |pass| {
                let xs = tensor(&x).reshape([lengths.len(), steps, E]);
                values(lstm.final_state(pass, xs, mask(&lengths, steps)))
            });
            for (b, &len) in lengths.iter().enumerate() {
                let seq = &x[b * steps * E..(b + 1) * steps * E];
                let want = reference(&p, seq, len, reverse);
                for u in 0..H {
                    let g = got[b * H + u];
                    assert!(
                        (g - want[u]).abs() < 1e-12,
                        "reverse {reverse} b {b}: {g} vs {}",
                        want[u]
                    );
                }
            }
        }
    }

    #[test]
    fn both_directions_in_lockstep_equal_each_run_alone() {
        let mut b = Builder::new();
        let bi = BiLstm::new(&mut b, "lstm", E, H);
        let specs = b.finish();
        // The forward direction's tensors, then the backward's (registration order).
        let back = vec![
            data(11, 4 * H * E),
            data(12, 4 * H * H),
            data(13, 4 * H),
            data(14, 4 * H),
        ];
        let all: Vec<Tensor<1>> = params().iter().chain(&back).map(|v| tensor(v)).collect();
        let (steps, lengths) = (4, [4, 2, 1, 0]);
        let x = data(15, lengths.len() * steps * E);
        let xs = || tensor(&x).reshape([lengths.len(), steps, E]);
        let both = with_pass(&specs, &all, &[], Mode::Train, |pass| {
            values(bi.final_states(pass, xs(), mask(&lengths, steps)))
        });
        for (d, (lstm, offset)) in [(&bi.forward, 0), (&bi.backward, H)]
            .into_iter()
            .enumerate()
        {
            let alone = with_pass(&specs, &all, &[], Mode::Train, |pass| {
                values(lstm.final_state(pass, xs(), mask(&lengths, steps)))
            });
            for row in 0..lengths.len() {
                for u in 0..H {
                    let (a, b) = (both[row * 2 * H + offset + u], alone[row * H + u]);
                    assert!((a - b).abs() < 1e-14, "direction {d} row {row}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn padding_does_not_reach_the_final_state() {
        let t: Vec<Tensor<1>> = params().iter().map(|v| tensor(v)).collect();
        let x = data(6, 3 * E);
        let mut padded = x.clone();
        padded.extend(data(7, 3 * E)); // garbage where the mask is 0
        for reverse in [false, true] {
            let (lstm, specs) = layer(reverse);
            let run = |xs: &[f64], steps: usize| {
                with_pass(&specs, &t, &[], Mode::Train, |pass| {
                    let x = tensor(xs).reshape([1, steps, E]);
                    values(lstm.final_state(pass, x, mask(&[3], steps)))
                })
            };
            assert_eq!(run(&x, 3), run(&padded, 6), "reverse {reverse}");
        }
    }

    #[test]
    fn bidirectional_gradients_match_central_differences() {
        let mut b = Builder::new();
        let bi = BiLstm::new(&mut b, "lstm", E, H);
        let specs = b.finish();
        let (steps, lengths) = (3, [3, 1]);
        let mut inputs = params();
        inputs.extend([
            data(21, 4 * H * E),
            data(22, 4 * H * H),
            data(23, 4 * H),
            data(24, 4 * H),
        ]);
        inputs.push(data(25, lengths.len() * steps * E));
        let r = data(26, lengths.len() * 2 * H);
        assert_gradients_match("bilstm", &inputs, 1e-6, |t| {
            with_pass(&specs, &t[..8], &[], Mode::Train, |pass| {
                let x = t[8].clone().reshape([lengths.len(), steps, E]);
                weigh(bi.final_states(pass, x, mask(&lengths, steps)), &r)
            })
        });
    }

    #[test]
    fn lstm_gradients_match_central_differences() {
        let (steps, lengths) = (3, [3, 2]);
        for reverse in [false, true] {
            let (lstm, specs) = layer(reverse);
            let mut inputs = params();
            inputs.push(data(8, lengths.len() * steps * E));
            let r = data(9, lengths.len() * H);
            assert_gradients_match("lstm", &inputs, 1e-6, |t| {
                with_pass(&specs, &t[..4], &[], Mode::Train, |pass| {
                    let x = t[4].clone().reshape([lengths.len(), steps, E]);
                    weigh(lstm.final_state(pass, x, mask(&lengths, steps)), &r)
                })
            });
        }
    }
}
