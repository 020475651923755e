//! The kernels on flex storage, generic over f32 and f64, and `FlexKernels for Flex`.

pub(crate) mod batch_norm;
pub(crate) mod conv;
pub(crate) mod dense;
pub(crate) mod matmul;
pub(crate) mod reduce;
pub(crate) mod simd;
pub(crate) mod update;

use burn::backend::Flex;
use burn::backend::tensor::FloatTensor;
use burn::tensor::{Element, TensorData};
use burn_flex::FlexTensor;

use crate::ops::FlexKernels;

/// The element types the kernels run in.
pub(crate) trait Real:
    num_traits::Float + Element + bytemuck::Pod + Send + Sync + 'static
{
    /// The value as f64 (exact).
    fn widen(self) -> f64;
    /// The nearest value to `v`.
    fn narrow(v: f64) -> Self;
}

impl Real for f32 {
    fn widen(self) -> f64 {
        f64::from(self)
    }
    fn narrow(v: f64) -> Self {
        v as f32
    }
}

impl Real for f64 {
    fn widen(self) -> f64 {
        self
    }
    fn narrow(v: f64) -> Self {
        v
    }
}

/// `t` with contiguous storage (a copy only when it is a strided view).
pub(crate) fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.is_contiguous() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The values of a contiguous tensor of element type `T`.
pub(crate) fn values<T: Real>(t: &FlexTensor) -> &[T] {
    t.as_slice::<T>()
        .expect("kernels receive contiguous tensors of their own dtype")
}

/// A new contiguous flex tensor holding `values` in `shape`.
pub(crate) fn tensor<T: Real, const D: usize>(values: Vec<T>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// Runs `$body` with `$T` bound to the element type of `$dtype` (f32 or f64).
macro_rules! with_real {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            burn::tensor::DType::F32 => {
                type $T = f32;
                $body
            }
            burn::tensor::DType::F64 => {
                type $T = f64;
                $body
            }
            other => panic!("steplab kernels run in f32 or f64, not {other:?}"),
        }
    };
}
pub(crate) use with_real;

impl FlexKernels for Flex {
    fn conv2d_plain(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self> {
        conv::forward(x, weight, (stride, padding))
    }

    fn conv_transpose2d_plain(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: usize,
        output_padding: usize,
    ) -> FloatTensor<Self> {
        conv::transposed_forward(x, weight, (stride, padding, output_padding))
    }

    fn batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (y, saved) = batch_norm::forward(x, gamma, beta, eps);
        let (mean, var) = saved.statistics();
        (y, mean, var)
    }

    fn dense_plain(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        relu: bool,
    ) -> FloatTensor<Self> {
        dense::forward(x, weight, bias, relu)
    }
}
