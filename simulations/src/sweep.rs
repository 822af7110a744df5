//! Sweeps: a scenario's `[sweep]` table maps dotted keys to lists of values, and the scenario is
//! run once per combination (the first key varies slowest), each variant into its own folder.
//!
//! ```toml
//! [sweep]
//! "attack.fraction" = [0.0, 0.1, 0.2, 0.3]
//! "aggregation.rule" = ["mean", "trimmed_mean", "median"]
//! ```
//!
//! Each variant is the base table with the keys set, then parsed and validated like any
//! scenario, so an error names the key and the variant. After the runs, `sweep.csv` lists the
//! final figures of every variant and arm, and `sweep_loss.svg` / `sweep_accuracy.svg` (and
//! `sweep_backdoor.svg` in backdoor scenarios; each with a PNG next to it) plot them
//! against the first key (one line per arm and combination of the other keys).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::metrics::{json_number, write};
use crate::plot::{Figure, Series, lines};
use crate::run::Report;
use crate::scenario::{MAX_VARIANTS, Scenario};

/// One variant of a sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// Folder name (`fraction-0.1_rule-median`); empty when there is no sweep.
    pub label: String,
    /// The keys set, in sweep order, with their values.
    pub settings: Vec<(String, toml::Value)>,
    /// The scenario to run.
    pub scenario: Scenario,
}

/// Reads a scenario file and expands its sweep (one variant without one). Relative data paths
/// are resolved against the file's folder.
pub fn load(path: &Path) -> Result<Vec<Variant>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut variants = expand(&text, &path.display().to_string())?;
    let dir = path.parent().unwrap_or(Path::new("."));
    for v in &mut variants {
        v.scenario.resolve_paths(dir);
    }
    Ok(variants)
}

/// Expands a scenario's text (`label` names it in errors).
pub fn expand(text: &str, label: &str) -> Result<Vec<Variant>> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| Error::Parse {
        path: PathBuf::from(label),
        message: e.to_string().trim_end().to_string(),
    })?;
    let sweep = match table.remove("sweep") {
        None => toml::Table::new(),
        Some(toml::Value::Table(t)) => t,
        Some(_) => {
            return Err(Error::scenario(
                "sweep",
                "must be a table of key = [values]",
            ));
        }
    };
    let mut axes: Vec<(String, Vec<toml::Value>)> = Vec::new();
    let mut count = 1usize;
    for (key, values) in sweep {
        let toml::Value::Array(values) = values else {
            return Err(Error::scenario(
                format!("sweep.{key}"),
                "must be a list of values",
            ));
        };
        if values.is_empty() {
            return Err(Error::scenario(format!("sweep.{key}"), "lists no value"));
        }
        count = count.saturating_mul(values.len());
        axes.push((key, values));
    }
    if count > MAX_VARIANTS {
        return Err(Error::scenario(
            "sweep",
            format!("{count} variants, at most {MAX_VARIANTS}"),
        ));
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let mut settings = Vec::with_capacity(axes.len());
        let mut rest = i;
        let mut strides: Vec<usize> = axes.iter().map(|(_, v)| v.len()).collect();
        for k in (0..strides.len()).rev() {
            let n = strides[k];
            strides[k] = rest % n;
            rest /= n;
        }
        let mut t = table.clone();
        for ((key, values), &j) in axes.iter().zip(&strides) {
            set(&mut t, key, values[j].clone())?;
            settings.push((key.clone(), values[j].clone()));
        }
        let name = variant_label(&settings);
        let scenario = Scenario::from_value(
            toml::Value::Table(t),
            &format!("{label} [{}]", if name.is_empty() { "-" } else { &name }),
        )?;
        out.push(Variant {
            label: name,
            settings,
            scenario,
        });
    }
    Ok(out)
}

/// Sets `a.b.c = value` in a table, creating the intermediate tables.
fn set(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<()> {
    let parts: Vec<&str> = key.split('.').collect();
    let Some((last, path)) = parts.split_last() else {
        return Err(Error::scenario(key, "empty sweep key"));
    };
    let mut t = table;
    for p in path {
        let entry = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(inner) = entry else {
            return Err(Error::scenario(key, format!("`{p}` is not a table")));
        };
        t = inner;
    }
    t.insert(last.to_string(), value);
    Ok(())
}

/// A folder-safe name: `lastkeypart-value` joined by `_`.
fn variant_label(settings: &[(String, toml::Value)]) -> String {
    settings
        .iter()
        .map(|(k, v)| {
            let short = k.rsplit('.').next().unwrap_or(k);
            let value = match v {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let clean: String = value
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            format!("{short}-{clean}")
        })
        .collect::<Vec<_>>()
        .join("_")
}

/// A sweep setting as a number for the x axis (`None` for text and `inf`).
fn number(v: &toml::Value) -> Option<f64> {
    match v {
        toml::Value::Integer(i) => Some(*i as f64),
        toml::Value::Float(f) if f.is_finite() => Some(*f),
        _ => None,
    }
}

/// Writes `sweep.csv` and the sweep figures into `dir`.
pub fn summarize(dir: &Path, title: &str, runs: &[(Variant, Report)]) -> Result<()> {
    let Some((first, _)) = runs.first() else {
        return Ok(());
    };
    let keys: Vec<&str> = first.settings.iter().map(|(k, _)| k.as_str()).collect();
    let mut csv = String::from("variant");
    for k in &keys {
        csv.push(',');
        csv.push_str(k);
    }
    csv.push_str(",arm,round,loss,accuracy,epsilon,backdoor_loss,backdoor_accuracy\n");
    let mut loss: Vec<Series> = Vec::new();
    let mut accuracy: Vec<Series> = Vec::new();
    let mut backdoor: Vec<Series> = Vec::new();
    for (v, report) in runs {
        for &arm in &v.scenario.arms {
            let Some(row) = report.last(arm) else {
                continue;
            };
            csv.push_str(&v.label);
            for (_, value) in &v.settings {
                csv.push(',');
                csv.push_str(&value.to_string().replace(',', ";"));
            }
            let f = |x: Option<f64>| x.map(|x| x.to_string()).unwrap_or_default();
            csv.push_str(&format!(
                ",{},{},{},{},{},{},{}\n",
                arm.name(),
                row.round,
                f(row.loss),
                f(row.accuracy),
                json_number(row.epsilon),
                f(row.backdoor_loss),
                f(row.backdoor_accuracy)
            ));
            let Some(x) = v.settings.first().and_then(|(_, x)| number(x)) else {
                continue;
            };
            let others: Vec<String> = v.settings[1..]
                .iter()
                .map(|(k, val)| format!("{}={}", k.rsplit('.').next().unwrap_or(k), val))
                .collect();
            let name = if others.is_empty() {
                arm.name().to_string()
            } else {
                format!("{} {}", arm.name(), others.join(" "))
            };
            for (list, y) in [
                (&mut loss, row.loss),
                (&mut accuracy, row.accuracy),
                (&mut backdoor, row.backdoor_loss),
            ] {
                let Some(y) = y else { continue };
                match list.iter_mut().find(|s| s.name == name) {
                    Some(s) => s.points.push((x, y)),
                    None => list.push(Series {
                        name: name.clone(),
                        points: vec![(x, y)],
                    }),
                }
            }
        }
    }
    write(&dir.join("sweep.csv"), csv.as_bytes())?;
    if let Some(x) = keys.first()
        && loss.iter().any(|s| !s.points.is_empty())
    {
        let unit = runs
            .first()
            .map_or("byte", |(v, _)| v.scenario.model.unit());
        let accuracy_title = format!("final next-{unit} accuracy");
        let mut figures = vec![
            ("sweep_loss.svg", "final held-out loss", loss),
            ("sweep_accuracy.svg", accuracy_title.as_str(), accuracy),
        ];
        if backdoor.iter().any(|s| !s.points.is_empty()) {
            figures.push((
                "sweep_backdoor.svg",
                "target loss after the trigger",
                backdoor,
            ));
        }
        for (file, what, series) in figures {
            lines(
                &dir.join(file),
                &Figure {
                    title: format!("{title}: {what}"),
                    x: (*x).to_string(),
                    y: what.into(),
                    series,
                },
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "name = 's'\nseed = 1\nrounds = 2\nmembers = 4\n";

    #[test]
    fn no_sweep_is_one_variant() {
        let v = expand(BASE, "t").unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].label, "");
        assert!(v[0].settings.is_empty());
    }

    #[test]
    fn sweeps_expand_to_every_combination_in_order() {
        let text = format!(
            "{BASE}[sweep]\n\"attack.fraction\" = [0.0, 0.25]\n\"aggregation.rule\" = [\"mean\", \"median\", \"trimmed_mean\"]\n"
        );
        let v = expand(&text, "t").unwrap();
        assert_eq!(v.len(), 6);
        assert_eq!(v[0].label, "fraction-0.0_rule-mean");
        assert_eq!(v[1].label, "fraction-0.0_rule-median");
        assert_eq!(v[5].label, "fraction-0.25_rule-trimmed-mean");
        assert_eq!(v[3].scenario.attack.fraction, 0.25);
        assert!(v.iter().all(|x| x.scenario.sweep.is_empty()));
    }

    #[test]
    fn bad_sweeps_name_the_key() {
        let e = expand(
            &format!("{BASE}[sweep]\n\"privacy.clip_norm\" = [1.0, -1.0]\n"),
            "t",
        )
        .unwrap_err();
        assert!(e.to_string().contains("`privacy.clip_norm`"), "{e}");
        let e = expand(&format!("{BASE}[sweep]\n\"rounds\" = 3\n"), "t").unwrap_err();
        assert!(e.to_string().contains("sweep.rounds"), "{e}");
        let e = expand(&format!("{BASE}[sweep]\n\"privacy.clip_norm\" = []\n"), "t").unwrap_err();
        assert!(e.to_string().contains("lists no value"), "{e}");
        let e = expand(&format!("{BASE}[sweep]\n\"name.x\" = [1]\n"), "t").unwrap_err();
        assert!(e.to_string().contains("not a table"), "{e}");
        let many = format!(
            "{BASE}[sweep]\n\"seed\" = [{}]\n\"rounds\" = [1, 2]\n",
            (0..200)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(
            expand(&many, "t")
                .unwrap_err()
                .to_string()
                .contains("variants")
        );
    }
}
