//! A lookup table of row vectors, trained or frozen.

use burn::tensor::{Int, Tensor};

use super::{Builder, ParamId, Pass, StateId};
use crate::Init;

/// Where an embedding's table lives.
#[derive(Debug, Clone, Copy)]
enum Table {
    /// A trained parameter.
    Param(ParamId),
    /// Frozen: model state, in no optimizer's parameter list (so in no norm, inner product or
    /// update).
    State(StateId),
}

/// An embedding `{name}.weight` `[rows, dim]` (see the module docs).
#[derive(Debug, Clone)]
pub struct Embedding {
    table: Table,
    rows: usize,
    dim: usize,
}

impl Embedding {
    /// Registers `{name}.weight` `[rows, dim]`, a parameter when `trainable`, model state
    /// otherwise, starting as `init`.
    pub fn new(
        b: &mut Builder,
        name: &str,
        rows: usize,
        dim: usize,
        init: Init,
        trainable: bool,
    ) -> Self {
        let name = format!("{name}.weight");
        let table = if trainable {
            Table::Param(b.param(name, vec![rows, dim], init))
        } else {
            Table::State(b.state(name, vec![rows, dim], init))
        };
        Self { table, rows, dim }
    }

    /// The rows of `ids` `[batch, steps]`: `[batch, steps, dim]`.
    pub fn forward(&self, pass: &Pass<'_>, ids: Tensor<2, Int>) -> Tensor<3> {
        let [batch, steps] = ids.dims();
        let table = match self.table {
            Table::Param(id) => pass.param(id),
            Table::State(id) => pass.state(id),
        }
        .reshape([self.rows, self.dim]);
        table
            .select(0, ids.reshape([batch * steps]))
            .reshape([batch, steps, self.dim])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mode;
    use crate::layers::gradcheck::{
        assert_gradients_match, data, tensor, values, weigh, with_pass,
    };
    use crate::test_device;
    use burn::tensor::TensorData;

    fn ids(v: &[i32], shape: [usize; 2]) -> Tensor<2, Int> {
        Tensor::from_data(TensorData::new(v.to_vec(), shape), &test_device())
    }

    #[test]
    fn rows_are_looked_up_and_their_gradients_accumulate() {
        let mut b = Builder::new();
        let emb = Embedding::new(&mut b, "embedding", 4, 2, Init::Constant(0.0), true);
        let specs = b.finish();
        let table = data(1, 8);
        let got = with_pass(&specs, &[tensor(&table)], &[], Mode::Train, |pass| {
            values(emb.forward(pass, ids(&[3, 0, 3], [1, 3])))
        });
        assert_eq!(got, [&table[6..8], &table[0..2], &table[6..8]].concat());
        // Rows used twice get the sum of both uses' gradients.
        assert_gradients_match("embedding", &[table], 1e-6, |t| {
            with_pass(&specs, t, &[], Mode::Train, |pass| {
                weigh(
                    emb.forward(pass, ids(&[3, 0, 3, 1, 1, 2], [2, 3])),
                    &data(2, 12),
                )
            })
        });
    }

    #[test]
    fn a_frozen_table_is_state_not_a_parameter() {
        let mut b = Builder::new();
        let emb = Embedding::new(&mut b, "embedding", 3, 2, Init::Constant(0.0), false);
        let specs = b.finish();
        assert!(specs.params.is_empty());
        assert_eq!(specs.state[0].name, "embedding.weight");
        let table = data(3, 6);
        let got = with_pass(&specs, &[], &[tensor(&table)], Mode::Probe, |pass| {
            values(emb.forward(pass, ids(&[2], [1, 1])))
        });
        assert_eq!(got, table[4..6].to_vec());
    }
}
