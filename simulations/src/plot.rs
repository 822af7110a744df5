//! Figures: line charts drawn with plotters, each as SVG (text left to the viewer) and as PNG
//! next to it (text drawn from the bundled font, see [`crate::png`]).
//!
//! A run draws `loss.svg` and `accuracy.svg` (held-out, per arm, against the round;
//! `loss_without_dp.svg` too when a DP arm runs with two or more others),
//! `epsilon.svg` (ε spent by the most-charged member of the DP arm) and `bytes.svg` (bytes
//! received per round by all members, federated arms). Sweeps draw their own figures with
//! [`lines`].

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::metrics::RoundRow;
use crate::png::Png;
use crate::scenario::Arm;

/// One named line.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// `(x, y)` points, in order of x.
    pub points: Vec<(f64, f64)>,
}

/// A line chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// Caption.
    pub title: String,
    /// X axis label.
    pub x: String,
    /// Y axis label.
    pub y: String,
    /// The lines.
    pub series: Vec<Series>,
}

/// Matplotlib's `tab20` (dark and light pairs), so that sweeps of up to 20 lines stay apart.
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
    RGBColor(174, 199, 232),
    RGBColor(255, 187, 120),
    RGBColor(152, 223, 138),
    RGBColor(255, 152, 150),
    RGBColor(197, 176, 213),
    RGBColor(196, 156, 148),
    RGBColor(247, 182, 210),
    RGBColor(199, 199, 199),
    RGBColor(219, 219, 141),
    RGBColor(158, 218, 229),
];

/// Figure size, pixels.
const SIZE: (u32, u32) = (860, 520);

/// Draws `figure` into an SVG file at `path` and a PNG file next to it (same name, `.png`).
/// Points that are not finite are left out; a figure without any finite point is an error.
pub fn lines(path: &Path, figure: &Figure) -> Result<()> {
    let svg = SVGBackend::new(path, SIZE).into_drawing_area();
    draw(svg, figure).map_err(|reason| Error::Plot {
        path: path.to_path_buf(),
        reason,
    })?;
    let png_path = path.with_extension("png");
    let png = Png::new(&png_path, SIZE).into_drawing_area();
    draw(png, figure).map_err(|reason| Error::Plot {
        path: png_path.clone(),
        reason,
    })
}

/// Draws `figure` on `root` and presents it.
fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    figure: &Figure,
) -> std::result::Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let all: Vec<(f64, f64)> = figure
        .series
        .iter()
        .flat_map(|s| s.points.iter().filter(finite).copied())
        .collect();
    if all.is_empty() {
        return Err(err(&"no finite point to plot"));
    }
    let (mut x0, mut x1, mut y0, mut y1) = all.iter().fold(
        (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ),
        |(a, b, c, d), &(x, y)| (a.min(x), b.max(x), c.min(y), d.max(y)),
    );
    if x1 <= x0 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    let pad = ((y1 - y0) * 0.06).max(1e-6 * y1.abs().max(1.0));
    y0 -= pad;
    y1 += pad;
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&figure.title, ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(figure.x.as_str())
        .y_desc(figure.y.as_str())
        .draw()
        .map_err(|e| err(&e))?;
    for (i, s) in figure.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let points: Vec<(f64, f64)> = s.points.iter().filter(finite).copied().collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(s.name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// `(round, value)` of one arm's rows.
fn series(rows: &[RoundRow], arm: Arm, value: impl Fn(&RoundRow) -> Option<f64>) -> Series {
    Series {
        name: arm.name().to_string(),
        points: rows
            .iter()
            .filter(|r| r.arm == arm)
            .filter_map(|r| value(r).map(|v| (r.round as f64, v)))
            .collect(),
    }
}

/// The figures of one run (see the module docs) into `dir`; `unit` is what a token is
/// (`byte`, or `token` for a model file's tokenizer).
pub fn arms(rows: &[RoundRow], dir: &Path, name: &str, unit: &str) -> Result<()> {
    let mut arms: Vec<Arm> = rows.iter().map(|r| r.arm).collect();
    arms.dedup();
    let figure = |title: &str, y: &str, series: Vec<Series>| Figure {
        title: format!("{name}: {title}"),
        x: "round".into(),
        y: y.into(),
        series,
    };
    let loss = arms.iter().map(|&a| series(rows, a, |r| r.loss)).collect();
    lines(
        &dir.join("loss.svg"),
        &figure("held-out loss", &format!("loss (nats/{unit})"), loss),
    )?;
    // DP noise at small scale can dwarf the other arms: they get a figure of their own.
    let others: Vec<Arm> = arms
        .iter()
        .copied()
        .filter(|&a| a != Arm::FederatedDp)
        .collect();
    if arms.contains(&Arm::FederatedDp) && others.len() >= 2 {
        let loss = others
            .iter()
            .map(|&a| series(rows, a, |r| r.loss))
            .collect();
        lines(
            &dir.join("loss_without_dp.svg"),
            &figure(
                "held-out loss, arms without DP",
                &format!("loss (nats/{unit})"),
                loss,
            ),
        )?;
    }
    let acc = arms
        .iter()
        .map(|&a| series(rows, a, |r| r.accuracy))
        .collect();
    lines(
        &dir.join("accuracy.svg"),
        &figure(&format!("next-{unit} accuracy"), "accuracy", acc),
    )?;
    if arms.contains(&Arm::FederatedDp) {
        let eps = series(rows, Arm::FederatedDp, |r| Some(r.epsilon));
        if eps.points.iter().any(|p| p.1.is_finite() && p.1 > 0.0) {
            lines(
                &dir.join("epsilon.svg"),
                &figure("privacy spent (largest member ε)", "ε", vec![eps]),
            )?;
        }
    }
    let bytes: Vec<Series> = arms
        .iter()
        .filter(|a| a.is_federated())
        .map(|&a| {
            series(rows, a, |r| {
                (r.round > 0).then_some(r.bytes_received as f64)
            })
        })
        .collect();
    if bytes.iter().any(|s| !s.points.is_empty()) {
        lines(
            &dir.join("bytes.svg"),
            &figure("bytes received per round (all members)", "bytes", bytes),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_figure_is_drawn_and_an_empty_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.svg");
        let f = Figure {
            title: "t".into(),
            x: "round".into(),
            y: "loss".into(),
            series: vec![
                Series {
                    name: "a".into(),
                    points: vec![(0.0, 3.0), (1.0, 2.0), (2.0, f64::NAN)],
                },
                Series {
                    name: "b".into(),
                    points: vec![(0.0, 3.0)],
                },
            ],
        };
        lines(&path, &f).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<polyline"));
        assert!(svg.contains("\na\n") && svg.contains("\nb\n"));
        let png = std::fs::read(dir.path().join("f.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        // Text is drawn: the caption row holds dark pixels (the same figure without a title
        // differs there).
        let untitled = dir.path().join("g.svg");
        lines(
            &untitled,
            &Figure {
                title: String::new(),
                ..f.clone()
            },
        )
        .unwrap();
        let plain = std::fs::read(dir.path().join("g.png")).unwrap();
        assert_ne!(png, plain, "the title is drawn into the PNG");
        let empty = Figure {
            series: vec![],
            ..f
        };
        assert!(lines(&path, &empty).is_err());
    }
}
