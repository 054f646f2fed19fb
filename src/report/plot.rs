//! Drawing of the two figures: layout, styles and the PNG file.

use super::{PlotError, RocCurves, Series};
use plotters::coord::Shift;
use plotters::element::{DashedPathElement, Drawable, PointCollection};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters_backend::{BackendCoord, DrawingErrorKind};
use std::path::Path;
use std::sync::OnceLock;

/// DejaVu Sans (Bitstream Vera licence, `assets/fonts/DejaVuSans.LICENSE`).
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
/// The family every text of the figures asks for; [`render`] registers
/// [`FONT`] under it before drawing.
const FAMILY: &str = "sans-serif";

const TEXT: RGBColor = RGBColor(30, 30, 30);
const GRID: RGBColor = RGBColor(222, 222, 222);
const PLAIN: RGBColor = RGBColor(31, 119, 180);
const ENCRYPTED: RGBColor = RGBColor(230, 110, 0);
const CHANCE: RGBColor = RGBColor(150, 150, 150);
/// Line colours of the time figure, in series order (Tableau 10, cycled).
const PALETTE: [RGBColor; 10] = [
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
];

/// Side of one class's square panel, in pixels.
const PANEL: u32 = 380;
/// Panels per row of the ROC figure (fewer when there are fewer classes).
const COLUMNS: usize = 4;
/// Height of the ROC figure's title and legend band.
const HEADER: u32 = 92;
/// Blank border around the ROC figure.
const BORDER: u32 = 20;
/// Size of the time figure, legend column included.
const TIME_SIZE: (u32, u32) = (1120, 660);

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type DrawError = DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>;

/// Draws a grid of ROC panels, one per entry of `curves` in order, four per
/// row, and writes it to `path` as an RGB PNG of
/// `(columns * 380 + 40) x (rows * 380 + 112)` pixels.
///
/// Each panel shows the plaintext curve (solid blue), the encrypted one
/// (dashed orange), the chance diagonal (dashed grey), axes over [0, 1], and
/// the title `class  plain 0.912 / HE 0.911` (the AUCs given, three
/// decimals; the font shrinks for long names). A legend of the three line
/// styles sits under `title`. Panels may have no curve at all (a class that
/// could not be scored) and then show only the diagonal.
///
/// # Errors
/// [`PlotError::NoData`] for an empty `curves`; [`PlotError::InvalidRocPoint`]
/// and [`PlotError::InvalidAuc`] for a coordinate or AUC outside [0, 1] or
/// NaN (checked before anything is drawn); [`PlotError::Draw`] and
/// [`PlotError::Write`] when drawing or writing the file fails.
pub fn roc_png(path: &Path, title: &str, curves: &[RocCurves]) -> Result<(), PlotError> {
    if curves.is_empty() {
        return Err(PlotError::NoData {
            path: path.to_path_buf(),
            what: "no ROC curve",
        });
    }
    for class in curves {
        validate_roc(path, class)?;
    }
    let columns = curves.len().min(COLUMNS);
    let rows = curves.len().div_ceil(columns);
    let size = (
        columns as u32 * PANEL + 2 * BORDER,
        rows as u32 * PANEL + HEADER + BORDER,
    );
    render(path, size, |root| {
        let (header, body) = root.split_vertically(HEADER);
        draw_text(&header, title, 24.0, (size.0 as i32 / 2, 16), HPos::Center)?;
        let legend = [
            (LineKind::Solid(PLAIN), "plaintext"),
            (LineKind::Dashed(ENCRYPTED), "encrypted (CKKS)"),
            (LineKind::Dashed(CHANCE), "chance"),
        ];
        draw_legend_row(&header, &legend, size.0 as i32 / 2, 66)?;
        let body = body.margin(0, BORDER, BORDER, BORDER);
        for (index, (panel, class)) in body.split_evenly((rows, columns)).iter().zip(curves).enumerate() {
            let bottom_of_column = index + columns >= curves.len();
            draw_roc_panel(panel, class, bottom_of_column, index % columns == 0)?;
        }
        Ok(())
    })
}

/// Draws seconds per image (logarithmic y axis) against the latent sizes
/// `x_labels` (evenly spaced categories, left to right), one line with
/// markers per series, and writes it to `path` as an RGB PNG of 1120 x 660
/// pixels.
///
/// Series take colours and marker shapes in order (cycled after ten). A
/// `None` value leaves its point out and breaks the line there; a series
/// with no value at all is left out of the plot and of the legend. The y
/// axis spans whole decades around the data; the legend stands in its own
/// column right of the plot, so it never hides a point.
///
/// # Errors
/// [`PlotError::NoData`] when `x_labels` or `series` is empty or no series
/// has a value; [`PlotError::LengthMismatch`] for a series whose length is
/// not `x_labels.len()`; [`PlotError::InvalidSeconds`] for a value that is
/// not positive and finite; [`PlotError::Draw`] and [`PlotError::Write`] when
/// drawing or writing the file fails.
pub fn time_vs_latent_png(path: &Path, title: &str, x_labels: &[String], series: &[Series]) -> Result<(), PlotError> {
    let no_data = |what| PlotError::NoData {
        path: path.to_path_buf(),
        what,
    };
    if x_labels.is_empty() {
        return Err(no_data("no latent size"));
    }
    if series.is_empty() {
        return Err(no_data("no series"));
    }
    for line in series {
        validate_series(path, x_labels, line)?;
    }
    let times = || series.iter().flat_map(|s| s.seconds.iter().flatten().copied());
    let (Some(min), Some(max)) = (times().reduce(f64::min), times().reduce(f64::max)) else {
        return Err(no_data("no measured time in any series"));
    };
    // Whole decades with some room around the data.
    let low = 10f64.powf((min / 1.3).log10().floor());
    let high = 10f64.powf((max * 1.3).log10().ceil());
    let drawn: Vec<(usize, &Series)> = series
        .iter()
        .enumerate()
        .filter(|(_, s)| s.seconds.iter().any(Option::is_some))
        .collect();

    render(path, TIME_SIZE, |root| {
        let label_style = text_style(16.0);
        let mut legend_width = 0;
        for (_, line) in &drawn {
            legend_width = legend_width.max(root.estimate_text_size(&line.name, &label_style)?.0);
        }
        let legend_width = legend_width + 90;
        let (plot, legend) = root.split_horizontally(TIME_SIZE.0 - legend_width);

        // One segment per latent size; points sit at the segment centres.
        let x_axis = (0..x_labels.len() - 1).into_segmented();
        let y_axis = (low..high).log_scale().with_key_points(log_ticks(low, high));
        let x_name = |x: &SegmentValue<usize>| match x {
            SegmentValue::CenterOf(i) => x_labels[*i].clone(),
            _ => String::new(),
        };
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, text_style(24.0))
            .margin(24)
            .x_label_area_size(64)
            .y_label_area_size(84)
            .build_cartesian_2d(x_axis, y_axis)?;
        chart
            .configure_mesh()
            .x_labels(x_labels.len())
            .x_label_formatter(&x_name)
            .y_label_formatter(&|y: &f64| seconds_label(*y))
            .x_desc("latent size")
            .y_desc("seconds per image (log scale)")
            .label_style(text_style(16.0))
            .axis_desc_style(text_style(17.0))
            .bold_line_style(GRID)
            .light_line_style(WHITE)
            .draw()?;

        for &(index, line) in &drawn {
            let colour = PALETTE[index % PALETTE.len()];
            let present: Vec<(usize, f64)> = line
                .seconds
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.map(|s| (i, s)))
                .collect();
            let at = |&(i, s): &(usize, f64)| (SegmentValue::CenterOf(i), s);
            // Runs of consecutive measured sizes; a missing one breaks the line.
            for run in present.chunk_by(|a, b| b.0 == a.0 + 1) {
                chart.draw_series(LineSeries::new(run.iter().map(at), colour.stroke_width(2)))?;
            }
            chart.draw_series(present.iter().map(|p| Marker {
                at: at(p),
                index,
                colour,
            }))?;
        }

        let x = 10;
        let top = 80;
        let height = drawn.len() as i32 * 30 + 14;
        legend.draw(&Rectangle::new(
            [(x - 4, top - 4), (legend_width as i32 - 12, top + height)],
            GRID.stroke_width(1),
        ))?;
        for (row, &(index, line)) in drawn.iter().enumerate() {
            let y = top + 18 + row as i32 * 30;
            let colour = PALETTE[index % PALETTE.len()];
            legend.draw(&PathElement::new(vec![(x + 6, y), (x + 46, y)], colour.stroke_width(2)))?;
            legend.draw(&Marker {
                at: (x + 26, y),
                index,
                colour,
            })?;
            draw_text(&legend, &line.name, 16.0, (x + 56, y), HPos::Left)?;
        }
        Ok(())
    })
}

/// Checks every point and AUC of one panel before anything is drawn.
fn validate_roc(path: &Path, class: &RocCurves) -> Result<(), PlotError> {
    let unit = 0.0..=1.0;
    for &(fpr, tpr) in class.plain.iter().chain(&class.encrypted).flatten() {
        if !unit.contains(&fpr) || !unit.contains(&tpr) {
            return Err(PlotError::InvalidRocPoint {
                path: path.to_path_buf(),
                class: class.class.clone(),
                fpr,
                tpr,
            });
        }
    }
    for &value in class.auc_plain.iter().chain(&class.auc_encrypted) {
        if !unit.contains(&value) {
            return Err(PlotError::InvalidAuc {
                path: path.to_path_buf(),
                class: class.class.clone(),
                value,
            });
        }
    }
    Ok(())
}

/// Checks one series' length and values against the x labels.
fn validate_series(path: &Path, x_labels: &[String], line: &Series) -> Result<(), PlotError> {
    if line.seconds.len() != x_labels.len() {
        return Err(PlotError::LengthMismatch {
            path: path.to_path_buf(),
            series: line.name.clone(),
            expected: x_labels.len(),
            found: line.seconds.len(),
        });
    }
    for (label, seconds) in x_labels.iter().zip(&line.seconds) {
        if let Some(value) = *seconds {
            if !(value.is_finite() && value > 0.0) {
                return Err(PlotError::InvalidSeconds {
                    path: path.to_path_buf(),
                    series: line.name.clone(),
                    label: label.clone(),
                    value,
                });
            }
        }
    }
    Ok(())
}

/// Registers the bundled font (once per process), draws on a white RGB
/// bitmap of `width x height` pixels and writes it to `path` as PNG.
fn render(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(&Area) -> Result<(), DrawError>,
) -> Result<(), PlotError> {
    static FONT_READY: OnceLock<bool> = OnceLock::new();
    let draw_error = |message: String| PlotError::Draw {
        path: path.to_path_buf(),
        message,
    };
    let font_ready =
        *FONT_READY.get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if !font_ready {
        return Err(draw_error("the bundled font does not parse".into()));
    }
    let mut pixels = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        draw(&root)
            .and_then(|()| root.present())
            .map_err(|e| draw_error(e.to_string()))?;
    }
    image::save_buffer_with_format(
        path,
        &pixels,
        width,
        height,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(|source| PlotError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// One class's panel: title with AUCs, axes over [0, 1], the diagonal and
/// whichever curves are given. Axis names only on the outer panels.
fn draw_roc_panel(panel: &Area, class: &RocCurves, x_name: bool, y_name: bool) -> Result<(), DrawError> {
    let aucs: Vec<String> = [("plain", class.auc_plain), ("HE", class.auc_encrypted)]
        .into_iter()
        .filter_map(|(name, auc)| auc.map(|auc| format!("{name} {auc:.3}")))
        .collect();
    let title = match aucs.is_empty() {
        true => class.class.clone(),
        false => format!("{}  {}", class.class, aucs.join(" / ")),
    };
    // The largest size up to 16 px at which the title fits the panel.
    let mut size = 16.0;
    while size > 9.0 && panel.estimate_text_size(&title, &text_style(size))?.0 > PANEL - 16 {
        size -= 1.0;
    }

    let mut chart = ChartBuilder::on(panel)
        .caption(&title, text_style(size))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
    let mut mesh = chart.configure_mesh();
    mesh.x_labels(6)
        .y_labels(6)
        .x_label_formatter(&|v| format!("{v:.1}"))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .label_style(text_style(13.0))
        .axis_desc_style(text_style(13.0))
        .bold_line_style(GRID)
        .light_line_style(WHITE);
    if x_name {
        mesh.x_desc("false positive rate");
    }
    if y_name {
        mesh.y_desc("true positive rate");
    }
    mesh.draw()?;

    chart.draw_series(DashedLineSeries::new(
        [(0.0, 0.0), (1.0, 1.0)],
        4,
        4,
        CHANCE.stroke_width(1),
    ))?;
    if let Some(points) = &class.plain {
        chart.draw_series(LineSeries::new(points.iter().copied(), PLAIN.stroke_width(2)))?;
    }
    if let Some(points) = &class.encrypted {
        chart.draw_series(DashedLineSeries::new(
            points.iter().copied(),
            7,
            5,
            ENCRYPTED.stroke_width(2),
        ))?;
    }
    Ok(())
}

/// How a legend entry's line sample is drawn.
#[derive(Clone, Copy)]
enum LineKind {
    Solid(RGBColor),
    Dashed(RGBColor),
}

/// A horizontal legend (line sample, then its text, per entry) centred on
/// `centre_x`, its line samples at height `y`.
fn draw_legend_row(area: &Area, entries: &[(LineKind, &str)], centre_x: i32, y: i32) -> Result<(), DrawError> {
    const SAMPLE: i32 = 40;
    const GAP: i32 = 8;
    const SPACING: i32 = 36;
    let style = text_style(16.0);
    let mut widths = Vec::with_capacity(entries.len());
    for (_, text) in entries {
        widths.push(area.estimate_text_size(text, &style)?.0 as i32);
    }
    let total: i32 = widths.iter().map(|w| SAMPLE + GAP + w).sum::<i32>() + SPACING * (entries.len() as i32 - 1);
    let mut x = centre_x - total / 2;
    for ((kind, text), width) in entries.iter().zip(widths) {
        let ends = vec![(x, y), (x + SAMPLE, y)];
        match *kind {
            LineKind::Solid(colour) => {
                area.draw(&PathElement::new(ends, colour.stroke_width(2)))?;
            }
            LineKind::Dashed(colour) => {
                area.draw(&DashedPathElement::new(ends, 7, 5, colour.stroke_width(2)))?;
            }
        }
        draw_text(area, text, 16.0, (x + SAMPLE + GAP, y), HPos::Left)?;
        x += SAMPLE + GAP + width + SPACING;
    }
    Ok(())
}

/// Text in the bundled font and the text colour, `size` pixels high.
fn text_style(size: f64) -> TextStyle<'static> {
    TextStyle::from((FAMILY, size).into_font()).color(&TEXT)
}

/// Text vertically centred on `at.1`, anchored horizontally by `anchor`.
fn draw_text(area: &Area, text: &str, size: f64, at: (i32, i32), anchor: HPos) -> Result<(), DrawError> {
    let style = text_style(size).pos(Pos::new(anchor, VPos::Center));
    area.draw(&Text::new(text, at, style))
}

/// The marker of the `index`-th series of the time figure, centred on a
/// point: a filled circle, triangle or square, or a cross, cycled.
struct Marker<C> {
    at: C,
    index: usize,
    colour: RGBColor,
}

impl<'a, C: 'a> PointCollection<'a, C> for &'a Marker<C> {
    type Point = &'a C;
    type IntoIter = std::iter::Once<&'a C>;

    fn point_iter(self) -> Self::IntoIter {
        std::iter::once(&self.at)
    }
}

impl<C, DB: DrawingBackend> Drawable<DB> for Marker<C> {
    fn draw<I: Iterator<Item = BackendCoord>>(
        &self,
        mut points: I,
        backend: &mut DB,
        _: (u32, u32),
    ) -> Result<(), DrawingErrorKind<DB::ErrorType>> {
        let Some((x, y)) = points.next() else {
            return Ok(());
        };
        let filled = self.colour.filled();
        match self.index % 4 {
            0 => backend.draw_circle((x, y), 5, &filled, true),
            1 => backend.fill_polygon([(x, y - 7), (x - 7, y + 5), (x + 7, y + 5)], &filled),
            2 => backend.draw_rect((x - 5, y - 5), (x + 5, y + 5), &filled, true),
            _ => {
                let stroke = self.colour.stroke_width(3);
                backend.draw_line((x - 5, y - 5), (x + 5, y + 5), &stroke)?;
                backend.draw_line((x - 5, y + 5), (x + 5, y - 5), &stroke)
            }
        }
    }
}

/// Tick values of a logarithmic axis from `low` to `high` (both powers of
/// ten): every decade, plus 2 and 5 times each when the axis spans at most
/// two decades.
fn log_ticks(low: f64, high: f64) -> Vec<f64> {
    let first = low.log10().round() as i32;
    let last = high.log10().round() as i32;
    let steps: &[f64] = if last - first <= 2 { &[1.0, 2.0, 5.0] } else { &[1.0] };
    (first..=last)
        .flat_map(|exponent| steps.iter().map(move |m| m * 10f64.powi(exponent)))
        .filter(|&tick| tick <= high * (1.0 + 1e-9))
        .collect()
}

/// A tick value in seconds with as many decimals as its leading digit needs
/// (`0.02`, `0.5`, `3`, `100`).
fn seconds_label(seconds: f64) -> String {
    let decimals = if seconds >= 1.0 {
        0
    } else {
        (-seconds.log10().floor()) as usize
    };
    format!("{seconds:.decimals$}")
}
