//! The picture grid of a generative model's epoch: test images above their reconstructions,
//! and images decoded from prior draws, one PNG per epoch in the run directory
//! (`pictures/epoch-001.png`), because a person judges an autoencoder by looking.
//!
//! Layout, [`COLUMNS`] images a row with a 2-pixel gap: rows 1 and 3 hold the first 16 images
//! of the test set (else the validation, else the training set), rows 2 and 4 their
//! reconstructions at the epoch's weights, rows 5 and 6 sixteen images decoded from prior
//! draws. The draws are those of step 0 of the run's seed (a step no update uses), the same
//! every epoch, so the grids of successive epochs show the same latent points decoded as the
//! decoder learns. Pixels map from the decoder's output range to bytes, clamped.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::tensor::Tensor;
use steplab_models::{Cx, Mode, StepNoise};

use crate::data::make_batch;
use crate::experiment::Experiment;
use crate::state::TrainState;

/// Images per row.
pub const COLUMNS: usize = 8;
/// Images shown with their reconstructions (two rows of each).
const SHOWN: usize = 2 * COLUMNS;
/// Pixels between images.
const GAP: usize = 2;
/// The background between images (light grey).
const BACKGROUND: u8 = 230;

/// Writes the grid of the state's epoch into `dir/pictures/`, and returns its path; `None` (and
/// nothing written) for a model that generates nothing.
pub fn write_epoch_grid(
    experiment: &Experiment,
    state: &TrainState,
    dir: &Path,
) -> Result<Option<PathBuf>> {
    let model = experiment.model.as_ref();
    let Some((low, high)) = experiment.config.model.output_range() else {
        return Ok(None);
    };
    let compute = &experiment.compute;
    let prepared = &experiment.prepared;
    let noise = StepNoise::new(
        experiment.config.run.seed,
        0,
        &compute.device,
        compute.dtype,
    );
    let cx = Cx {
        mode: Mode::Eval,
        noise: &noise,
    };
    let Some(samples) = model.sample(&state.params, &state.model_state, SHOWN, &cx) else {
        return Ok(None);
    };
    let set = prepared
        .test
        .as_ref()
        .or(prepared.validation.as_ref())
        .unwrap_or(&prepared.train);
    let rows: Vec<usize> = (0..SHOWN.min(set.len())).collect();
    let batch = make_batch(set, &rows, &prepared.pipeline, compute);
    let inputs = batch
        .inputs
        .images()
        .context("a generative model's data are images")?;
    let [_, c, h, w] = inputs.dims();
    let outputs = model
        .predict(&state.params, &state.model_state, &batch.inputs, &cx)
        .outputs
        .reshape([rows.len(), c, h, w]);
    let to_bytes = |t: Tensor<4>| -> Result<Vec<u8>> {
        let values: Vec<f64> = t
            .inner()
            .into_data()
            .try_into_vec_as::<f64>()
            .map_err(|e| anyhow::anyhow!("reading images back for the picture grid: {e:?}"))?;
        Ok(values
            .iter()
            .map(|v| ((v - low) / (high - low) * 255.0).clamp(0.0, 255.0) as u8)
            .collect())
    };
    let (inputs, outputs, samples) = (to_bytes(inputs)?, to_bytes(outputs)?, to_bytes(samples)?);
    let image = c * h * w;
    let nth = |buffer: &[u8], i: usize| buffer.get(i * image..(i + 1) * image).map(<[u8]>::to_vec);
    let mut cells: Vec<Option<Vec<u8>>> = Vec::new();
    for half in 0..2 {
        let range = half * COLUMNS..(half + 1) * COLUMNS;
        cells.extend(range.clone().map(|i| nth(&inputs, i)));
        cells.extend(range.map(|i| nth(&outputs, i)));
    }
    cells.extend((0..SHOWN).map(|i| nth(&samples, i)));
    let (width, height, pixels) = grid(&cells, [c, h, w]);
    let folder = dir.join("pictures");
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let path = folder.join(format!("epoch-{:03}.png", state.position.epoch));
    write_png(&path, width, height, &pixels)?;
    Ok(Some(path))
}

/// Lays CHW byte images (`None`: an empty cell) out [`COLUMNS`] to a row as one RGB picture:
/// its width, height and row-major RGB bytes. Grey images are repeated over the three colours.
fn grid(cells: &[Option<Vec<u8>>], [c, h, w]: [usize; 3]) -> (usize, usize, Vec<u8>) {
    let rows = cells.len().div_ceil(COLUMNS);
    let width = COLUMNS * w + (COLUMNS + 1) * GAP;
    let height = rows * h + (rows + 1) * GAP;
    let mut pixels = vec![BACKGROUND; width * height * 3];
    for (k, cell) in cells.iter().enumerate() {
        let Some(image) = cell else { continue };
        let (left, top) = (
            GAP + (k % COLUMNS) * (w + GAP),
            GAP + (k / COLUMNS) * (h + GAP),
        );
        for y in 0..h {
            for x in 0..w {
                for rgb in 0..3 {
                    let channel = if c >= 3 { rgb } else { 0 };
                    let value = image[(channel * h + y) * w + x];
                    pixels[((top + y) * width + left + x) * 3 + rgb] = value;
                }
            }
        }
    }
    (width, height, pixels)
}

/// Encodes RGB bytes as a PNG at `path`, through a temporary file renamed into place.
fn write_png(path: &Path, width: usize, height: usize, pixels: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("png.tmp-{}", std::process::id()));
    let result = (|| -> Result<()> {
        let file = std::fs::File::create(&tmp)?;
        let mut encoder = png::Encoder::new(
            std::io::BufWriter::new(file),
            u32::try_from(width)?,
            u32::try_from(height)?,
        );
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(pixels)?;
        writer.finish()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_places_each_image_in_its_cell_and_repeats_grey_over_rgb() {
        let [c, h, w] = [3, 2, 3];
        let image = |v: u8| Some((0..c * h * w).map(|i| v + i as u8).collect::<Vec<u8>>());
        let cells = vec![image(0), None, image(100)];
        let (width, height, pixels) = grid(&cells, [c, h, w]);
        assert_eq!((width, height), (COLUMNS * 3 + 9 * GAP, 2 + 2 * GAP));
        let at = |x: usize, y: usize, rgb: usize| pixels[(y * width + x) * 3 + rgb];
        // Cell 0's pixel (y 1, x 2) of channel 1 is value 0 + (1·2 + 1)·3 + 2 = 11.
        assert_eq!(at(GAP + 2, GAP + 1, 1), 11);
        // Cell 2 starts 2·(w + GAP) further right.
        assert_eq!(at(GAP + 2 * (w + GAP), GAP, 0), 100);
        assert_eq!(at(GAP + (w + GAP), GAP, 0), BACKGROUND, "an empty cell");
        assert_eq!(at(0, 0, 2), BACKGROUND, "the border");
        let grey = grid(&[Some(vec![7, 8])], [1, 1, 2]).2;
        let first = (GAP * (COLUMNS * 2 + 9 * GAP) + GAP) * 3;
        assert_eq!(&grey[first..first + 6], &[7, 7, 7, 8, 8, 8]);
    }
}
