//! The loss curve of a run: one [`CurvePoint`] per optimizer step, written as CSV
//! ([`write_csv`]) and drawn as SVG ([`plot_svg`], plotters' SVG backend).
//!
//! Only SVG is drawn: plotters' bitmap backend needs a font library (font-kit and the system's
//! fonts, or a font file for ab_glyph) to draw text, and SVG leaves text to the viewer.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One optimizer step of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Step number, from 1.
    pub step: u64,
    /// Mean training loss of the step's windows (nats per token).
    pub loss: f64,
    /// Learning rate the step used.
    pub lr: f64,
    /// Training tokens per second of the step (forward, backward and update).
    pub tokens_per_sec: f64,
}

/// The CSV text: a `step,loss,lr,tokens_per_sec` header, then one row per point.
pub fn to_csv(points: &[CurvePoint]) -> String {
    let mut out = String::from("step,loss,lr,tokens_per_sec\n");
    for p in points {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{},{},{},{:.1}",
            p.step, p.loss, p.lr, p.tokens_per_sec
        );
    }
    out
}

/// Writes [`to_csv`] to `path`.
pub fn write_csv(path: &Path, points: &[CurvePoint]) -> Result<()> {
    std::fs::write(path, to_csv(points)).map_err(|e| Error::io(path, e))
}

/// Draws the training loss against the step (and, when given, the held-out loss before and after
/// as two marked points) into an SVG file.
pub fn plot_svg(
    path: &Path,
    title: &str,
    points: &[CurvePoint],
    held_out: Option<(f64, f64)>,
) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| Error::Plot {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    if points.is_empty() {
        return Err(err(&"no points to plot"));
    }
    let last = points.iter().map(|p| p.step).max().unwrap_or(1).max(1);
    let mut values: Vec<f64> = points.iter().map(|p| p.loss).collect();
    if let Some((a, b)) = held_out {
        values.extend([a, b]);
    }
    values.retain(|v| v.is_finite());
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !(lo.is_finite() && hi.is_finite()) {
        return Err(err(&"no finite loss to plot"));
    }
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0u64..last, (lo - pad)..(hi + pad))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss (nats/token)")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(
            points.iter().map(|p| (p.step, p.loss)),
            &BLUE,
        ))
        .map_err(|e| err(&e))?
        .label("training loss")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    if let Some((before, after)) = held_out {
        chart
            .draw_series(
                [(0, before), (last, after)]
                    .into_iter()
                    .map(|(x, y)| Circle::new((x, y), 5, RED.filled())),
            )
            .map_err(|e| err(&e))?
            .label(format!("held-out loss {before:.3} → {after:.3}"))
            .legend(|(x, y)| Circle::new((x + 10, y), 5, RED.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points() -> Vec<CurvePoint> {
        (1..=5)
            .map(|s| CurvePoint {
                step: s,
                loss: 3.0 / s as f64,
                lr: 1e-3,
                tokens_per_sec: 1234.56,
            })
            .collect()
    }

    #[test]
    fn csv_has_a_header_and_a_row_per_step() {
        let csv = to_csv(&points());
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[0], "step,loss,lr,tokens_per_sec");
        assert_eq!(lines[1], "1,3,0.001,1234.6");
        assert_eq!(lines[2], "2,1.5,0.001,1234.6");
    }

    #[test]
    fn svg_is_drawn_and_empty_curves_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.svg");
        plot_svg(&path, "test run", &points(), Some((3.2, 0.7))).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(svg.contains("test run") && svg.contains("<polyline"));
        assert!(svg.contains("held-out loss 3.200 → 0.700"));
        assert!(plot_svg(&path, "x", &[], None).is_err());
        let nan = [CurvePoint {
            loss: f64::NAN,
            ..points()[0]
        }];
        assert!(plot_svg(&path, "x", &nan, None).is_err());
    }
}
