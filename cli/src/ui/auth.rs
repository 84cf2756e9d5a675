//! Who may use the UI: the holder of the one-time sign-in link `medmesh ui`
//! prints. The link's token is exchanged, once, for a session cookie (HttpOnly,
//! SameSite=Strict); every form carries the session's CSRF token, checked by
//! [`CsrfForm`] before any handler runs; a request whose Host is not one of the
//! loopback names this server answers to (DNS rebinding) is refused.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use axum::body::Body;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::{Shared, layout};

/// Start of the session cookie's name, which ends with the port: browsers send a
/// host's cookies to every port of it, so that several `medmesh ui` (one per
/// home) in one browser each keep their own.
pub const COOKIE_PREFIX: &str = "medmesh_ui_";
/// A session unused this long ends.
pub const SESSION_IDLE_MS: u64 = 12 * 60 * 60 * 1000;
/// Sessions kept at once (the oldest goes first).
pub const SESSIONS_MAX: usize = 8;
/// Largest form body accepted.
pub const FORM_BYTES_MAX: usize = 64 * 1024;
/// Random bytes in a token.
const TOKEN_BYTES: usize = 32;

/// One signed-in browser.
#[derive(Clone, Debug)]
pub struct Signed {
    pub id: String,
    pub csrf: String,
}

/// The sign-in token, the sessions, and the Host names served.
pub struct Auth {
    hosts: Vec<String>,
    cookie: String,
    inner: Mutex<Inner>,
}

struct Inner {
    /// `None` once the link was used.
    signin: Option<String>,
    /// Session id -> (order made, CSRF token, last used).
    sessions: HashMap<String, (u64, String, std::time::Instant)>,
    made: u64,
}

fn token() -> anyhow::Result<String> {
    let mut b = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut b)
        .map_err(|e| anyhow::anyhow!("the operating system gave no randomness: {e}"))?;
    Ok(hex::encode(b))
}

/// Compare secrets without an early exit on the first differing byte.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    pub fn new(addr: SocketAddr) -> anyhow::Result<Self> {
        let port = addr.port();
        let mut hosts = vec![format!("127.0.0.1:{port}"), format!("localhost:{port}")];
        hosts.push(format!("{addr}"));
        hosts.push(format!("[::1]:{port}"));
        Ok(Self {
            hosts,
            cookie: format!("{COOKIE_PREFIX}{port}"),
            inner: Mutex::new(Inner { signin: Some(token()?), sessions: HashMap::new(), made: 0 }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The one-time token of the sign-in link (empty once used).
    pub fn signin_token(&self) -> String {
        self.lock().signin.clone().unwrap_or_default()
    }

    /// Exchange the sign-in token for a new session; refused if already used.
    fn exchange(&self, given: &str) -> Option<Signed> {
        let mut g = self.lock();
        let ok = g.signin.as_deref().is_some_and(|t| same(t, given));
        if !ok {
            return None;
        }
        g.signin = None;
        let (id, csrf) = (token().ok()?, token().ok()?);
        if g.sessions.len() >= SESSIONS_MAX
            && let Some(oldest) = g.sessions.iter().min_by_key(|(_, v)| v.0).map(|(k, _)| k.clone())
        {
            g.sessions.remove(&oldest);
        }
        g.made += 1;
        let n = g.made;
        g.sessions.insert(id.clone(), (n, csrf.clone(), std::time::Instant::now()));
        Some(Signed { id, csrf })
    }

    fn session(&self, id: &str) -> Option<Signed> {
        let mut g = self.lock();
        let idle = std::time::Duration::from_millis(SESSION_IDLE_MS);
        g.sessions.retain(|_, v| v.2.elapsed() < idle);
        let (k, v) = g.sessions.iter_mut().find(|(k, _)| same(k, id))?;
        v.2 = std::time::Instant::now();
        Some(Signed { id: k.clone(), csrf: v.1.clone() })
    }

    /// The session cookie's name.
    pub fn cookie_name(&self) -> &str {
        &self.cookie
    }

    fn end(&self, id: &str) {
        self.lock().sessions.remove(id);
    }

    fn host_ok(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }
}

/// The session cookie's value in a request.
fn cookie(req: &Request, name: &str) -> Option<String> {
    req.headers().get_all(header::COOKIE).iter().find_map(|v| {
        v.to_str().ok()?.split(';').find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    })
}

/// Refuse a request for another Host (a rebinding page's name), then add the
/// security headers to every answer.
pub async fn check_host(State(ui): State<Shared>, req: Request, next: Next) -> Response {
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if !ui.auth.host_ok(host) {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "this medmesh ui answers to 127.0.0.1 and localhost only; open the link it printed",
        )
            .into_response();
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Pages need a session: without one, to the sign-in page.
pub async fn require_session(State(ui): State<Shared>, mut req: Request, next: Next) -> Response {
    match cookie(&req, ui.auth.cookie_name()).and_then(|c| ui.auth.session(&c)) {
        Some(s) => {
            req.extensions_mut().insert(s);
            next.run(req).await
        }
        None => Redirect::to("/signin").into_response(),
    }
}

#[derive(serde::Deserialize)]
pub struct SigninQuery {
    token: Option<String>,
}

/// `GET /signin?token=...`: exchange the link's token for a session cookie, once.
pub async fn signin(State(ui): State<Shared>, Query(q): Query<SigninQuery>) -> Response {
    let Some(given) = q.token else {
        return layout::plain(
            StatusCode::UNAUTHORIZED,
            "Sign in",
            "Open the sign-in link that `medmesh ui` printed when it started.",
        );
    };
    match ui.auth.exchange(&given) {
        Some(s) => {
            let cookie =
                format!("{}={}; HttpOnly; SameSite=Strict; Path=/", ui.auth.cookie_name(), s.id);
            let mut resp = Redirect::to("/").into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        None => layout::plain(
            StatusCode::FORBIDDEN,
            "Sign-in link already used",
            "This sign-in link was used already or is wrong: each link signs in one browser once. Restart `medmesh ui` for a new link.",
        ),
    }
}

/// `POST /signout`: end this session.
pub async fn signout(State(ui): State<Shared>, form: CsrfForm) -> Response {
    ui.auth.end(&form.session.id);
    let mut resp = Redirect::to("/signin").into_response();
    let gone = format!("{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0", ui.auth.cookie_name());
    if let Ok(v) = HeaderValue::from_str(&gone) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// A posted form whose CSRF token matched the session's: the only way a handler
/// reads a form, so no action runs without the check.
pub struct CsrfForm {
    pub session: Signed,
    pub fields: Vec<(String, String)>,
}

impl CsrfForm {
    /// A field's value, trimmed; empty when absent.
    pub fn get(&self, name: &str) -> &str {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).unwrap_or("")
    }

    /// A field that must be given.
    pub fn need(&self, name: &str) -> anyhow::Result<&str> {
        let v = self.get(name);
        if v.is_empty() {
            anyhow::bail!("the form lacks `{name}`; fill it in and send it again");
        }
        Ok(v)
    }
}

impl<S: Send + Sync> FromRequest<S> for CsrfForm {
    type Rejection = Response;

    async fn from_request(req: Request<Body>, _: &S) -> Result<Self, Self::Rejection> {
        let refuse = |why: &str| layout::plain(StatusCode::FORBIDDEN, "Refused", why);
        let Some(session) = req.extensions().get::<Signed>().cloned() else {
            return Err(refuse("sign in first"));
        };
        let bytes = axum::body::to_bytes(req.into_body(), FORM_BYTES_MAX)
            .await
            .map_err(|_| refuse("the form is too large"))?;
        let fields: Vec<(String, String)> = serde_urlencoded_pairs(&bytes);
        let given = fields.iter().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_str());
        match given {
            Some(t) if same(t, &session.csrf) => Ok(Self { session, fields }),
            _ => Err(refuse(
                "the form's CSRF token is missing or wrong; reload the page and send it again",
            )),
        }
    }
}

/// `application/x-www-form-urlencoded` pairs.
fn serde_urlencoded_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    url_decode_pairs(&String::from_utf8_lossy(bytes))
}

fn url_decode_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_decode_percent_and_plus() {
        let f = url_decode_pairs("csrf=ab&name=St+Luke%27s&x=%zz&y=%4");
        assert_eq!(f[1], ("name".into(), "St Luke's".into()));
        assert_eq!(f[2].1, "%zz");
        assert_eq!(f[3].1, "%4");
    }

    #[test]
    fn the_signin_link_works_once() {
        let a = Auth::new("127.0.0.1:9".parse().unwrap()).unwrap();
        let t = a.signin_token();
        assert!(a.exchange("wrong").is_none(), "a wrong token signs nobody in");
        let s = a.exchange(&t).expect("the link signs in once");
        assert!(a.exchange(&t).is_none(), "and never again");
        assert_eq!(a.session(&s.id).unwrap().csrf, s.csrf);
    }

    #[test]
    fn only_loopback_names_of_this_port_are_served() {
        let a = Auth::new("127.0.0.1:8123".parse().unwrap()).unwrap();
        assert!(a.host_ok("127.0.0.1:8123") && a.host_ok("localhost:8123"));
        assert!(!a.host_ok("evil.example:8123") && !a.host_ok("127.0.0.1:80") && !a.host_ok(""));
    }
}
