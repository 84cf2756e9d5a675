//! A small W3C WebDriver client for the browser tests: Debian's `chromedriver`
//! driving headless `chromium`, one browser session per role (each with its own
//! profile folder, so its own cookies). Blocking, over the `ureq` the CLI uses
//! already; the few commands the tests need, nothing more.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long the driver may take to start.
pub const DRIVER_START_TIMEOUT_MS: u64 = 30_000;
/// How long a condition on a page may take to hold.
pub const PAGE_WAIT_MS: u64 = 60_000;
/// The key WebDriver names an element by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The browser and its driver, found on PATH. Under `CI=true` both must exist.
pub fn tools() -> Option<(PathBuf, PathBuf)> {
    let find = |names: &[&str]| {
        names.iter().find_map(|n| {
            std::env::var_os("PATH")
                .and_then(|p| std::env::split_paths(&p).map(|d| d.join(n)).find(|f| f.is_file()))
        })
    };
    let browser = find(&["chromium", "chromium-browser", "google-chrome"]);
    let driver = find(&["chromedriver"]);
    match (browser, driver) {
        (Some(b), Some(d)) => Some((b, d)),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI must install chromium and chromium-driver (Debian packages); .ci/run does"
            );
            eprintln!(
                "skipping: no chromium or chromedriver on PATH (apt-get install chromium chromium-driver)"
            );
            None
        }
    }
}

/// A running `chromedriver`, stopped when dropped.
pub struct Driver {
    child: Child,
    base: String,
    browser: PathBuf,
    agent: ureq::Agent,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Driver {
    pub fn start(browser: &Path, driver: &Path, log: &Path) -> Self {
        let port = free_port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("driver log"))
            .spawn()
            .expect("chromedriver starts");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let d = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            browser: browser.into(),
            agent,
        };
        let deadline = Instant::now() + Duration::from_millis(DRIVER_START_TIMEOUT_MS);
        loop {
            let ready = d
                .agent
                .get(&format!("{}/status", d.base))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not start within {DRIVER_START_TIMEOUT_MS} ms"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let r = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            (_, b) => self.agent.post(&url).send_json(b.unwrap_or_else(|| json!({}))),
        };
        let v: Value = r.expect("chromedriver answers").body_mut().read_json().expect("JSON");
        if let Some(err) = v["value"]["error"].as_str() {
            panic!("webdriver {method} {path}: {err}: {}", v["value"]["message"]);
        }
        v["value"].clone()
    }

    /// A new browser with a profile of its own (its own cookies) in `profile`.
    pub fn browser(&self, profile: &Path) -> Browser<'_> {
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": self.browser,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", format!("--user-data-dir={}", profile.display())]
            }
        } } });
        let v = self.call("POST", "/session", Some(caps));
        let id = v["sessionId"].as_str().expect("a session id").to_string();
        Browser { driver: self, id }
    }
}

/// One browser session.
pub struct Browser<'d> {
    driver: &'d Driver,
    id: String,
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        let _ =
            self.driver.agent.delete(&format!("{}/session/{}", self.driver.base, self.id)).call();
    }
}

impl Browser<'_> {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.driver.call(method, &format!("/session/{}{path}", self.id), body)
    }

    pub fn go(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.call("GET", "/url", None).as_str().unwrap_or_default().to_string()
    }

    /// The page's HTML as the browser holds it now.
    pub fn source(&self) -> String {
        self.call("GET", "/source", None).as_str().unwrap_or_default().to_string()
    }

    /// A command whose failure is an answer (the page changed under it).
    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Option<Value> {
        let url = format!("{}/session/{}{path}", self.driver.base, self.id);
        let r = match method {
            "GET" => self.driver.agent.get(&url).call(),
            _ => self.driver.agent.post(&url).send_json(body.unwrap_or_else(|| json!({}))),
        };
        let v: Value = r.ok()?.body_mut().read_json().ok()?;
        v["value"]["error"].is_null().then(|| v["value"].clone())
    }

    /// The text a CSS selector's first element shows, if any (none while the
    /// page is being replaced).
    pub fn text(&self, css: &str) -> Option<String> {
        let found = self.try_call(
            "POST",
            "/elements",
            Some(json!({ "using": "css selector", "value": css })),
        )?;
        let el = found.as_array()?.first()?[ELEMENT].as_str()?.to_string();
        Some(self.try_call("GET", &format!("/element/{el}/text"), None)?.as_str()?.to_string())
    }

    fn element(&self, css: &str) -> String {
        let v =
            self.call("POST", "/element", Some(json!({ "using": "css selector", "value": css })));
        v[ELEMENT].as_str().expect("an element").to_string()
    }

    pub fn click(&self, css: &str) {
        let el = self.element(css);
        self.call("POST", &format!("/element/{el}/click"), Some(json!({})));
    }

    /// Focus an element and press Enter on it, as a keyboard user would.
    pub fn press_enter(&self, css: &str) {
        let el = self.element(css);
        self.execute("arguments[0].focus();", json!([{ ELEMENT: el }]));
        let focused = self
            .execute("return document.activeElement === arguments[0];", json!([{ ELEMENT: el }]));
        assert_eq!(focused, json!(true), "{css} takes the keyboard focus");
        self.call("POST", &format!("/element/{el}/value"), Some(json!({ "text": "\u{E007}" })));
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let el = self.element(css);
        self.call("POST", &format!("/element/{el}/clear"), Some(json!({})));
        self.call("POST", &format!("/element/{el}/value"), Some(json!({ "text": text })));
    }

    /// Choose the option of a `select` whose text contains `label`.
    pub fn select(&self, select_css: &str, label: &str) {
        let script = "const s = document.querySelector(arguments[0]); \
            const o = [...s.options].find(o => o.text.includes(arguments[1])); \
            if (!o) return false; s.value = o.value; return true;";
        let found = self.execute(script, json!([select_css, label]));
        assert_eq!(found, json!(true), "no option `{label}` in {select_css}");
    }

    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.call("POST", "/execute/sync", Some(json!({ "script": script, "args": args })))
    }

    /// Wait until the text of `css` contains `want`, reloading `reload` (if given)
    /// between looks; returns that text.
    pub fn wait_text(&self, css: &str, want: &str, reload: Option<&str>) -> String {
        let deadline = Instant::now() + Duration::from_millis(PAGE_WAIT_MS);
        loop {
            if let Some(t) = self.text(css).filter(|t| t.contains(want)) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "`{css}` never showed `{want}` within {PAGE_WAIT_MS} ms; the page:\n{}",
                self.source()
            );
            match reload {
                Some(u) => {
                    std::thread::sleep(Duration::from_millis(250));
                    self.go(u)
                }
                None => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Wait until the browser is on a URL containing `part` (a form's answer
    /// arrived); returns the URL.
    pub fn wait_url(&self, part: &str) -> String {
        let deadline = Instant::now() + Duration::from_millis(PAGE_WAIT_MS);
        loop {
            let u = self.url();
            if u.contains(part) {
                return u;
            }
            assert!(Instant::now() < deadline, "never reached a URL with `{part}`; at {u}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Save a PNG screenshot.
    pub fn screenshot(&self, to: &Path) {
        let b64 = self.call("GET", "/screenshot", None);
        let bytes = decode_base64(b64.as_str().expect("base64"));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, bytes).unwrap();
    }
}

fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
