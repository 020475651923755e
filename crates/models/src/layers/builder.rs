//! Registering a model's tensors by name, once, at build time.
//!
//! A layer's constructor asks the [`Builder`] for its tensors (`stage1.block0.conv1.weight`,
//! `bn1.running_var`) and keeps the returned [`ParamId`] / [`StateId`] handles: indices into
//! the flat lists the trainer owns, so a forward pass never does index arithmetic. Every
//! parameter's initialisation stream is keyed by its name ([`ParamSpec::named`]), so adding or
//! removing a layer changes no other layer's initial values.

use std::collections::HashSet;

use crate::{Init, ParamSpec, StateSpec};

/// The position of a trainable tensor in the model's parameter list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ParamId(pub(crate) usize);

/// The position of a state tensor (running statistics) in the model's state list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateId(pub(crate) usize);

/// Collects a model's parameter and state declarations in order (see the module docs).
#[derive(Debug, Default)]
pub struct Builder {
    specs: Specs,
    names: HashSet<String>,
}

/// What a model declares: its parameters and its state, in the order the trainer stores them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Specs {
    /// The trainable tensors.
    pub params: Vec<ParamSpec>,
    /// The non-trained tensors (batch-norm running statistics).
    pub state: Vec<StateSpec>,
}

impl Builder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a trainable tensor of logical shape `shape`.
    ///
    /// # Panics
    /// If `name` is already taken (a bug in the model, which would give two tensors one stream).
    pub fn param(&mut self, name: impl Into<String>, shape: Vec<usize>, init: Init) -> ParamId {
        let name = self.claim(name.into());
        self.specs.params.push(ParamSpec::named(name, shape, init));
        ParamId(self.specs.params.len() - 1)
    }

    /// Registers a state tensor of logical shape `shape`, starting at `init` (a constant).
    ///
    /// # Panics
    /// If `name` is already taken.
    pub fn state(&mut self, name: impl Into<String>, shape: Vec<usize>, init: Init) -> StateId {
        let name = self.claim(name.into());
        self.specs.state.push(StateSpec { name, shape, init });
        StateId(self.specs.state.len() - 1)
    }

    /// The declarations, in registration order.
    pub fn finish(self) -> Specs {
        self.specs
    }

    fn claim(&mut self, name: String) -> String {
        assert!(
            self.names.insert(name.clone()),
            "tensor name {name} registered twice"
        );
        name
    }
}

impl Specs {
    /// Total number of trainable scalars.
    pub fn num_params(&self) -> usize {
        self.params.iter().map(ParamSpec::numel).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_index_the_lists_in_registration_order() {
        let mut b = Builder::new();
        let w = b.param("fc.weight", vec![3, 2], Init::Constant(0.0));
        let m = b.state("bn.running_mean", vec![2], Init::Constant(0.0));
        let bias = b.param("fc.bias", vec![2], Init::Constant(0.0));
        let specs = b.finish();
        assert_eq!((w, bias, m), (ParamId(0), ParamId(1), StateId(0)));
        assert_eq!(specs.params[1].name, "fc.bias");
        assert_eq!(specs.num_params(), 8);
        assert_eq!(specs.params[0].stream, crate::name_stream("fc.weight"));
    }

    #[test]
    #[should_panic(expected = "registered twice")]
    fn a_name_cannot_be_registered_twice() {
        let mut b = Builder::new();
        b.param("w", vec![1], Init::Constant(0.0));
        b.state("w", vec![1], Init::Constant(0.0));
    }
}
