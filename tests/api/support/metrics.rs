//! Reading `GET /metrics` as Prometheus would: one scrape, and its samples
//! found by name and labels, whatever order the labels come in.

use std::collections::HashMap;

pub struct Scrape {
    pub status: u16,
    pub content_type: String,
    pub text: String,
}

/// One sample: its name, labels and value.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: HashMap<String, String>,
    pub value: f64,
}

pub async fn scrape(base: &str) -> Scrape {
    let res = super::http_client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics completes");
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = res.bytes().await.expect("the metrics body arrives");
    Scrape {
        status,
        content_type,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

impl Scrape {
    /// Every sample. Label values here never hold `",` or an escaped quote.
    pub fn samples(&self) -> Vec<Sample> {
        self.text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| {
                let (key, value) = line
                    .rsplit_once(' ')
                    .unwrap_or_else(|| panic!("a sample without a value: {line}"));
                let value = value
                    .parse()
                    .unwrap_or_else(|_| panic!("not a number in {line}"));
                let (name, labels) = match key.split_once('{') {
                    None => (key, HashMap::new()),
                    Some((name, rest)) => {
                        let inner = rest
                            .strip_suffix("\"}")
                            .unwrap_or_else(|| panic!("unterminated labels: {line}"));
                        let labels = inner
                            .split("\",")
                            .map(|pair| {
                                let (k, v) = pair
                                    .split_once("=\"")
                                    .unwrap_or_else(|| panic!("a bad label in {line}"));
                                (k.to_string(), v.to_string())
                            })
                            .collect();
                        (name, labels)
                    }
                };
                Sample {
                    name: name.to_string(),
                    labels,
                    value,
                }
            })
            .collect()
    }

    /// The value of the one sample named `name` with (at least) `labels`.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .samples()
            .into_iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .collect();
        assert!(
            matching.len() <= 1,
            "{name} {labels:?} names {} samples; give more labels",
            matching.len()
        );
        matching.first().copied()
    }

    /// Like [`Scrape::find`], for a sample that must be there.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in:\n{}", self.text))
    }
}
