//! Drawing the panels with plotters: layout, axes, lines, bands, crosses, the legend, and the
//! PNG or SVG bytes.

use std::ops::Range;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::coord::combinators::BindKeyPoints;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::{Format, Line, PanelData, Stroke};

/// The font, shipped with the crate (Bitstream Vera license, `fonts/DejaVuSans-LICENSE.txt`).
const FONT: &[u8] = include_bytes!("../../fonts/DejaVuSans.ttf");
/// The family name the font is registered under; plotters' default family.
const FAMILY: &str = "sans-serif";

/// Tableau's ten colours (distinguishable, readable in print), then ten darker ones for
/// pictures with more experiments.
const PALETTE: [RGBColor; 20] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(0, 0, 0),
    RGBColor(0, 0, 128),
    RGBColor(128, 0, 0),
    RGBColor(0, 100, 0),
    RGBColor(184, 134, 11),
    RGBColor(0, 128, 128),
    RGBColor(75, 0, 130),
    RGBColor(255, 20, 147),
    RGBColor(85, 107, 47),
    RGBColor(70, 130, 180),
];

fn register_font() -> Result<(), String> {
    static REGISTER: Once = Once::new();
    let mut result = Ok(());
    REGISTER.call_once(|| {
        result = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
            .map_err(|_| "the shipped font does not parse".to_string());
    });
    result
}

fn encode_png(rgb: &[u8], (w, h): (u32, u32)) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(rgb).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// The picture as `format` bytes.
pub(super) fn render(
    format: Format,
    panels: &[PanelData],
    legend: &[String],
    title: Option<&str>,
    layout: &Layout,
) -> Result<Vec<u8>, String> {
    register_font()?;
    match format {
        Format::Png => {
            let (w, h) = layout.size;
            let mut pixels = vec![0u8; w as usize * h as usize * 3];
            {
                let root = BitMapBackend::with_buffer(&mut pixels, layout.size).into_drawing_area();
                draw(&root, panels, legend, title, layout)?;
                root.present().map_err(|e| e.to_string())?;
            }
            encode_png(&pixels, layout.size)
        }
        Format::Svg => {
            let mut text = String::new();
            {
                let root = SVGBackend::with_string(&mut text, layout.size).into_drawing_area();
                draw(&root, panels, legend, title, layout)?;
                root.present().map_err(|e| e.to_string())?;
            }
            Ok(text.into_bytes())
        }
    }
}

/// Where everything goes on the canvas.
pub(super) struct Layout {
    /// The picture's size in pixels.
    pub(super) size: (u32, u32),
    title_height: u32,
    panel_rows: u32,
    panel_height: u32,
    legend_columns: usize,
    legend_height: u32,
}

const PANEL_HEIGHT: u32 = 420;
const LEGEND_ROW: u32 = 24;

impl Layout {
    /// The layout of `panels` panels (two columns when more than one), a legend of `entries`
    /// (two columns from 1000 px wide), and a title row when `titled`.
    pub(super) fn new(width: u32, panels: usize, entries: usize, titled: bool) -> Self {
        let columns = if panels > 1 { 2 } else { 1 };
        let panel_rows = panels.div_ceil(columns) as u32;
        let legend_columns = if width >= 1000 { 2 } else { 1 };
        let legend_rows = entries.div_ceil(legend_columns) as u32;
        let legend_height = legend_rows * LEGEND_ROW + 20;
        let title_height = if titled { 40 } else { 0 };
        Self {
            size: (
                width,
                title_height + panel_rows * PANEL_HEIGHT + legend_height,
            ),
            title_height,
            panel_rows,
            panel_height: PANEL_HEIGHT,
            legend_columns,
            legend_height,
        }
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panels: &[PanelData],
    legend: &[String],
    title: Option<&str>,
    layout: &Layout,
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let (width, height) = layout.size;
    let (title_area, rest) = root.split_vertically(layout.title_height);
    if let Some(title) = title {
        title_area.titled(title, (FAMILY, 26)).map_err(e)?;
    }
    let panels_height = layout.panel_rows * layout.panel_height;
    let (grid, legend_area) = rest.split_vertically(panels_height);
    let columns = if panels.len() > 1 { 2 } else { 1 };
    let cells = grid.split_evenly((layout.panel_rows as usize, columns));
    for (cell, panel) in cells.iter().zip(panels) {
        draw_panel(cell, panel)?;
    }
    draw_legend(&legend_area, legend, layout, width).map_err(e)?;
    debug_assert_eq!(
        height,
        layout.title_height + panels_height + layout.legend_height
    );
    Ok(())
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    legend: &[String],
    layout: &Layout,
    width: u32,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let column_width = (width as usize / layout.legend_columns) as i32;
    for (i, entry) in legend.iter().enumerate() {
        let column = (i % layout.legend_columns) as i32;
        let row = (i / layout.legend_columns) as i32;
        let x = 60 + column * column_width;
        let y = 10 + row * LEGEND_ROW as i32 + LEGEND_ROW as i32 / 2;
        let colour = PALETTE[i % PALETTE.len()];
        area.draw(&PathElement::new(
            vec![(x, y), (x + 36, y)],
            colour.stroke_width(3),
        ))?;
        area.draw(&Text::new(
            entry.clone(),
            (x + 46, y - 8),
            (FAMILY, 16).into_font(),
        ))?;
    }
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &PanelData,
) -> Result<(), String> {
    let xs = panel
        .lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0));
    let (x_lo, x_hi) = extent(xs);
    let (y_lo, y_hi) = y_extent(panel);
    let x_range = pad(x_lo, x_hi, false);
    if panel.log_y {
        let range = pad(y_lo, y_hi, true);
        let top = range.end;
        let (bold, light) = log_ticks(range.start, range.end);
        let y = range
            .log_scale()
            .with_key_points(bold)
            .with_light_points(light);
        draw_chart(area, panel, x_range, y, top)
    } else {
        let range = pad(y_lo, y_hi, false);
        let top = range.end;
        draw_chart(area, panel, x_range, range, top)
    }
}

/// The y values the axis shows: those of the lines without a diverged run, and of the others
/// their lowest values and their first: a blow-up towards 1e200 would flatten every other curve,
/// so it runs off the top, where its cross is drawn. When every line has a diverged run, all
/// values count.
fn y_extent(panel: &PanelData) -> (f64, f64) {
    let usable = |y: &f64| !panel.log_y || *y > 0.0;
    let values = |l: &Line| -> Vec<f64> {
        l.points
            .iter()
            .map(|p| p.1)
            .chain(l.band.iter().flat_map(|b| [b.1, b.2]))
            .filter(usable)
            .collect()
    };
    let (calm, diverged): (Vec<&Line>, Vec<&Line>) =
        panel.lines.iter().partition(|l| l.crosses.is_empty());
    let all = || extent(panel.lines.iter().flat_map(values));
    if calm.iter().all(|l| values(l).is_empty()) {
        return all();
    }
    let (lo, hi) = extent(calm.iter().flat_map(|l| values(l)));
    let (diverged_lo, _) = extent(diverged.iter().flat_map(|l| values(l)));
    let diverged_first = diverged
        .iter()
        .filter_map(|l| l.points.first().map(|p| p.1))
        .filter(usable);
    let (_, first_hi) = extent(diverged_first);
    (lo.min(diverged_lo), hi.max(first_hi))
}

fn extent(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        })
}

/// An axis range around [lo, hi] with a margin (a factor on log axes).
fn pad(lo: f64, hi: f64, log: bool) -> Range<f64> {
    if !lo.is_finite() || !hi.is_finite() {
        return if log { 0.1..10.0 } else { 0.0..1.0 };
    }
    if log {
        let (lo, hi) = if lo == hi {
            (lo / 2.0, hi * 2.0)
        } else {
            (lo, hi)
        };
        (lo / 1.15)..(hi * 1.15)
    } else {
        let span = if hi > lo { hi - lo } else { lo.abs().max(1.0) };
        (lo - 0.04 * span)..(hi + 0.04 * span)
    }
}

fn draw_chart<DB, Y>(
    area: &DrawingArea<DB, Shift>,
    panel: &PanelData,
    x_range: Range<f64>,
    y_spec: Y,
    top: f64,
) -> Result<(), String>
where
    DB: DrawingBackend,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, (FAMILY, 18))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(72)
        .build_cartesian_2d(x_range, y_spec)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc(&panel.x_label)
        .y_desc(panel.y_label)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 15))
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(e)?;
    for line in &panel.lines {
        let colour = PALETTE[line.colour % PALETTE.len()];
        if !line.band.is_empty() {
            let outline: Vec<(f64, f64)> = line
                .band
                .iter()
                .map(|(x, _, hi)| (*x, *hi))
                .chain(line.band.iter().rev().map(|(x, lo, _)| (*x, *lo)))
                .collect();
            chart
                .draw_series(std::iter::once(Polygon::new(
                    outline,
                    colour.mix(0.18).filled(),
                )))
                .map_err(e)?;
        }
        let points = line.points.iter().copied();
        match line.style {
            Stroke::Solid => chart
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                .map(|_| ()),
            Stroke::Dashed => chart
                .draw_series(DashedLineSeries::new(points, 8, 5, colour.stroke_width(2)))
                .map(|_| ()),
            Stroke::Dotted => chart
                .draw_series(DashedLineSeries::new(points, 2, 4, colour.stroke_width(2)))
                .map(|_| ()),
        }
        .map_err(e)?;
        chart
            .draw_series(
                line.crosses
                    .iter()
                    .map(|&(x, y)| Cross::new((x, y.min(top)), 7, colour.stroke_width(3))),
            )
            .map_err(e)?;
    }
    Ok(())
}

/// Tick values of a log axis over [lo, hi] (0 < lo < hi): the major ones (labelled) and the minor
/// ones (grid lines only). Decades when the axis spans two or more (every k-th past six), with
/// 2…9 × each decade as minor lines up to three decades; 1, 2 and 5 × each decade when it spans
/// less; evenly spaced in log space when not even two of those fall inside.
fn log_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let inside = |v: f64| v >= lo && v <= hi;
    let first = lo.log10().floor() as i32;
    let last = hi.log10().ceil() as i32;
    let span = (hi / lo).log10();
    let multiples = |factors: &[f64]| -> Vec<f64> {
        (first..=last)
            .flat_map(|k| factors.iter().map(move |f| f * 10f64.powi(k)))
            .filter(|v| inside(*v))
            .collect()
    };
    let (bold, light) = if span >= 2.0 {
        let decades = multiples(&[1.0]);
        let every = (span / 6.0).ceil().max(1.0) as usize;
        let bold: Vec<f64> = decades.iter().copied().step_by(every).collect();
        let light = if span <= 3.0 {
            multiples(&[2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
        } else {
            decades
                .iter()
                .copied()
                .filter(|d| !bold.contains(d))
                .collect()
        };
        (bold, light)
    } else {
        let bold = multiples(&[1.0, 2.0, 5.0]);
        let light = multiples(&[3.0, 4.0, 6.0, 7.0, 8.0, 9.0]);
        (bold, light)
    };
    if bold.len() >= 2 {
        return (bold, light);
    }
    let bold = (0..4)
        .map(|i| {
            let v = lo * (hi / lo).powf((i as f64 + 0.5) / 4.0);
            let scale = 10f64.powi(v.log10().floor() as i32 - 1);
            (v / scale).round() * scale
        })
        .collect();
    (bold, Vec::new())
}

/// A tick label: up to four significant digits, exponent form for very small or large values.
fn tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        let s = format!("{v:.1e}");
        return s.replace(".0e", "e");
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::Panel;

    fn line(points: &[(f64, f64)], crosses: &[(f64, f64)]) -> Line {
        Line {
            colour: 0,
            style: Stroke::Solid,
            points: points.to_vec(),
            band: Vec::new(),
            crosses: crosses.to_vec(),
        }
    }

    #[test]
    fn a_blow_up_runs_off_the_top_instead_of_setting_the_axis() {
        let mut panel = PanelData {
            panel: Panel::TrainLoss,
            title: String::new(),
            x_label: String::new(),
            y_label: "loss",
            log_y: true,
            lines: vec![
                line(&[(1.0, 10.0), (2.0, 1.0)], &[]),
                line(&[(1.0, 20.0), (2.0, 0.5), (3.0, 1e200)], &[(3.0, 1e200)]),
            ],
        };
        assert_eq!(y_extent(&panel), (0.5, 20.0));
        // With only diverged lines every value counts.
        panel.lines.remove(0);
        assert_eq!(y_extent(&panel), (0.5, 1e200));
    }

    #[test]
    fn log_ticks_label_decades_or_their_one_two_five_multiples() {
        let (bold, light) = log_ticks(1.5e-4, 0.05);
        assert_eq!(bold, [1e-3, 1e-2]);
        assert!(light.contains(&2e-4) && light.contains(&3e-2) && !light.contains(&1e-3));
        let (bold, _) = log_ticks(0.09, 2.5);
        assert_eq!(bold, [0.1, 0.2, 0.5, 1.0, 2.0]);
        let (bold, light) = log_ticks(1e-9, 1e3);
        assert_eq!(bold, [1e-9, 1e-7, 1e-5, 1e-3, 1e-1, 1e1, 1e3]);
        assert_eq!(light.len(), 6);
        let (bold, _) = log_ticks(0.11, 0.19);
        assert_eq!(bold.len(), 4);
        assert!(bold.iter().all(|v| (0.11..=0.19).contains(v)), "{bold:?}");
    }

    #[test]
    fn ticks_read_naturally() {
        assert_eq!(tick(0.0), "0");
        assert_eq!(tick(0.025), "0.025");
        assert_eq!(tick(2.5), "2.5");
        assert_eq!(tick(1000.0), "1000");
        assert_eq!(tick(1e-4), "1e-4");
        assert_eq!(tick(2.5e-6), "2.5e-6");
        assert_eq!(tick(12859.6), "12859.6");
    }
}
