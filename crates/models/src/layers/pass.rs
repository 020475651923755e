//! One forward pass over flat tensors: the weights, the state, the mode and the step's noise.

use burn::tensor::Tensor;

use super::{ParamId, Specs, StateId};
use crate::{Cx, Mode, StepNoise};

/// What the layers of one forward pass read (weights, state, mode, noise) and, in a `Train`
/// pass, the updated state they write.
pub struct Pass<'a> {
    params: &'a [Tensor<1>],
    state: &'a [Tensor<1>],
    mode: Mode,
    noise: &'a StepNoise,
    /// `Train` only: the state after this pass, starting as a copy of `state` (cheap: tensors
    /// are reference counted) and overwritten by each batch norm.
    new_state: Option<Vec<Tensor<1>>>,
}

impl<'a> Pass<'a> {
    /// A pass of a model declaring `specs` at weights `params` and state `state`.
    ///
    /// # Panics
    /// If the lists do not match the declarations (the trainer built them from the specs).
    pub fn new(
        specs: &Specs,
        params: &'a [Tensor<1>],
        state: &'a [Tensor<1>],
        cx: &Cx<'a>,
    ) -> Self {
        assert_eq!(
            params.len(),
            specs.params.len(),
            "parameter list does not fit the model"
        );
        assert_eq!(
            state.len(),
            specs.state.len(),
            "state list does not fit the model"
        );
        let new_state = (cx.mode == Mode::Train && !state.is_empty()).then(|| state.to_vec());
        Self {
            params,
            state,
            mode: cx.mode,
            noise: cx.noise,
            new_state,
        }
    }

    /// A parameter, flat (the layer reshapes it: no copy).
    pub fn param(&self, id: ParamId) -> Tensor<1> {
        self.params[id.0].clone()
    }

    /// A state tensor as the pass found it.
    pub fn state(&self, id: StateId) -> Tensor<1> {
        self.state[id.0].clone()
    }

    /// Train, Probe or Eval.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The step's random draws.
    pub fn noise(&self) -> &StepNoise {
        self.noise
    }

    /// Records the new value of a state tensor; ignored outside `Train` passes.
    pub fn update_state(&mut self, id: StateId, value: Tensor<1>) {
        if let Some(new_state) = &mut self.new_state {
            new_state[id.0] = value;
        }
    }

    /// The state recorded so far: `Some` during a `Train` pass of a model with state.
    pub fn new_state(&self) -> Option<&[Tensor<1>]> {
        self.new_state.as_deref()
    }

    /// The state after this pass: `Some` after a `Train` pass of a model with state.
    pub fn into_new_state(self) -> Option<Vec<Tensor<1>>> {
        self.new_state
    }
}
