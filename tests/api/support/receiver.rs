//! A host application's webhook endpoint, for real: an HTTP/1.1 server on
//! a random local port that records every request it gets and answers as
//! the test tells it (200 by default, a failure for chosen requests, or
//! nothing at all while "holding").

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

/// One request as the endpoint saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Lower-cased names.
    pub headers: HashMap<String, String>,
    pub body: String,
    pub json: Value,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

type Rule = Box<dyn Fn(&Received) -> Option<u16> + Send>;

pub struct Receiver {
    pub url: String,
    requests: mpsc::UnboundedReceiver<Received>,
    rule: Arc<Mutex<Option<Rule>>>,
    hold: watch::Sender<bool>,
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let (tx, requests) = mpsc::unbounded_channel();
        let rule: Arc<Mutex<Option<Rule>>> = Arc::new(Mutex::new(None));
        let (hold, holding) = watch::channel(false);
        let shared_rule = rule.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(
                    stream,
                    tx.clone(),
                    shared_rule.clone(),
                    holding.clone(),
                ));
            }
        });
        Receiver {
            url: format!("http://{addr}/hook"),
            requests,
            rule,
            hold,
        }
    }

    /// Answers a request with the status `rule` gives it (None: 200).
    pub fn answer_with(&self, rule: impl Fn(&Received) -> Option<u16> + Send + 'static) {
        *self.rule.lock().unwrap() = Some(Box::new(rule));
    }

    /// Every request gets 200 again.
    pub fn answer_ok(&self) {
        *self.rule.lock().unwrap() = None;
    }

    /// While holding, requests are recorded but not answered (the sender
    /// is left mid-delivery); releasing answers the held ones.
    pub fn hold(&self, holding: bool) {
        self.hold.send_replace(holding);
    }

    /// The next request, within `within`.
    pub async fn next_within(&mut self, within: Duration) -> Received {
        timeout(within, self.requests.recv())
            .await
            .unwrap_or_else(|_| panic!("no webhook request within {within:?}"))
            .expect("the receiver runs")
    }

    pub async fn next(&mut self) -> Received {
        self.next_within(Duration::from_secs(20)).await
    }

    /// Requests until `done` says the collected ones are enough.
    pub async fn collect_until(
        &mut self,
        within: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        while !done(&got) {
            match tokio::time::timeout_at(deadline, self.requests.recv()).await {
                Ok(Some(r)) => got.push(r),
                _ => panic!(
                    "webhook requests did not complete within {within:?}; got {:#?}",
                    got.iter().map(|r| &r.json).collect::<Vec<_>>()
                ),
            }
        }
        got
    }

    /// Asserts no request comes for `quiet`.
    pub async fn assert_quiet(&mut self, quiet: Duration) {
        if let Ok(Some(r)) = timeout(quiet, self.requests.recv()).await {
            panic!("an unexpected webhook request: {:#}", r.json);
        }
    }
}

async fn serve(
    stream: TcpStream,
    requests: mpsc::UnboundedSender<Received>,
    rule: Arc<Mutex<Option<Rule>>>,
    mut holding: watch::Receiver<bool>,
) {
    let mut reader = BufReader::new(stream);
    // Keep-alive: one request after another on the connection.
    while let Some(received) = read_request(&mut reader).await {
        let status = rule
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|r| r(&received))
            .unwrap_or(200);
        let _ = requests.send(received);
        while *holding.borrow_and_update() {
            if holding.changed().await.is_err() {
                return;
            }
        }
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-length: 8\r\ncontent-type: text/plain\r\n\r\nresponse"
        );
        if reader
            .get_mut()
            .write_all(response.as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// One HTTP/1.1 request as a test's server sees it: method, path, headers
/// (names lower-cased) and the body's bytes. None at the end of the stream
/// or on anything malformed.
pub struct RawRequest {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

pub async fn read_raw_request(reader: &mut BufReader<TcpStream>) -> Option<RawRequest> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).await.ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.ok()?;
    Some(RawRequest {
        method,
        path,
        headers,
        body,
    })
}

async fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Received> {
    let raw = read_raw_request(reader).await?;
    let body = String::from_utf8(raw.body).ok()?;
    let json = serde_json::from_str(&body).unwrap_or(Value::Null);
    Some(Received {
        method: raw.method,
        path: raw.path,
        headers: raw.headers,
        body,
        json,
    })
}
