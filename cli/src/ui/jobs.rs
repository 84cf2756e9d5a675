//! Long work (preparing data, compatibility tests, benchmark runs) as jobs: each
//! runs the workflow function on a thread of its own, its log (the workflow's and
//! the runner's tracing events, and what the job writes) and progress kept in a
//! bounded buffer, and streamed to the browser as server-sent events.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::{Stream, StreamExt};
use maud::html;

use super::auth::Signed;
use super::{Page, Shared, UiError, layout, snapshot};

/// Log lines kept per job (the oldest go first).
pub const JOB_LOG_LINES_MAX: usize = 2_000;
/// Characters kept of one log line.
pub const JOB_LINE_CHARS_MAX: usize = 2_000;
/// Jobs kept (the oldest finished ones go first).
pub const JOBS_MAX: usize = 64;
/// Jobs running at once (each may run containers).
pub const JOBS_RUNNING_MAX: usize = 4;

/// How a job ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    Done { summary: String, next: Option<(String, String)> },
    Failed(String),
}

#[derive(Default)]
struct Progress {
    done: u64,
    total: u64,
    text: String,
}

#[derive(Default)]
struct JobState {
    lines: VecDeque<String>,
    /// Number of lines ever written (the first kept is `written - lines.len()`).
    written: u64,
    progress: Option<Progress>,
    /// Bumped at every progress change.
    progress_version: u64,
    outcome: Option<Outcome>,
}

/// One job: its title, log, progress and outcome.
pub struct Job {
    pub id: u64,
    pub title: String,
    state: Mutex<JobState>,
    changed: tokio::sync::watch::Sender<u64>,
}

impl Job {
    fn lock(&self) -> std::sync::MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    /// Append a line to the log.
    pub fn log(&self, line: &str) {
        {
            let mut s = self.lock();
            for l in line.lines() {
                let l: String = l.replace('\r', "").chars().take(JOB_LINE_CHARS_MAX).collect();
                if s.lines.len() >= JOB_LOG_LINES_MAX {
                    s.lines.pop_front();
                }
                s.lines.push_back(l);
                s.written += 1;
            }
        }
        self.bump();
    }

    /// Set the progress: `done` of `total` steps, with what is happening.
    pub fn progress(&self, done: u64, total: u64, text: &str) {
        {
            let mut s = self.lock();
            s.progress = Some(Progress { done, total, text: text.to_string() });
            s.progress_version += 1;
        }
        self.bump();
    }

    fn finish(&self, outcome: Outcome) {
        self.lock().outcome = Some(outcome);
        self.bump();
    }

    fn running(&self) -> bool {
        self.lock().outcome.is_none()
    }
}

/// Every job of this UI.
#[derive(Default)]
pub struct Jobs {
    list: Mutex<VecDeque<Arc<Job>>>,
    next: AtomicU64,
}

/// Writes tracing's lines into a job's log.
struct JobWriter(Arc<Job>);

impl Write for JobWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let t = text.trim_end();
        if !t.is_empty() {
            self.0.log(t);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Jobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Job>>> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, id: u64) -> Option<Arc<Job>> {
        self.lock().iter().find(|j| j.id == id).cloned()
    }

    /// Start `work` on a thread of its own; returns the job's id.
    pub fn start(
        &self,
        title: String,
        work: impl FnOnce(&Job) -> anyhow::Result<Outcome> + Send + 'static,
    ) -> anyhow::Result<u64> {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (changed, _) = tokio::sync::watch::channel(0);
        let job = Arc::new(Job { id, title, state: Mutex::default(), changed });
        {
            let mut list = self.lock();
            if list.iter().filter(|j| j.running()).count() >= JOBS_RUNNING_MAX {
                anyhow::bail!(
                    "{JOBS_RUNNING_MAX} jobs are running already; wait for one to finish (see Jobs)"
                );
            }
            while list.len() >= JOBS_MAX {
                match list.iter().position(|j| !j.running()) {
                    Some(i) => {
                        list.remove(i);
                    }
                    None => {
                        anyhow::bail!("{JOBS_MAX} jobs are running already; wait for one to finish")
                    }
                }
            }
            list.push_back(job.clone());
        }
        let j = job.clone();
        std::thread::Builder::new()
            .name(format!("medmesh-ui-job-{id}"))
            .spawn(move || {
                let writer = j.clone();
                let subscriber = tracing_subscriber::fmt()
                    .with_writer(move || JobWriter(writer.clone()))
                    .with_ansi(false)
                    .without_time()
                    .with_target(false)
                    .with_max_level(tracing::Level::INFO)
                    .finish();
                let outcome = tracing::subscriber::with_default(subscriber, || work(&j));
                j.finish(match outcome {
                    Ok(o) => o,
                    Err(e) => {
                        let why = match e.downcast_ref::<crate::publish::IgnoredByFold>() {
                            Some(ig) => format!(
                                "the network keeps your {} record {} but ignores it: {}",
                                ig.kind,
                                ig.id.short(),
                                ig.reason
                            ),
                            None => format!("{e:#}"),
                        };
                        j.log(&format!("error: {why}"));
                        Outcome::Failed(why)
                    }
                });
            })
            .map_err(|e| anyhow::anyhow!("cannot start a job thread: {e}"))?;
        Ok(id)
    }
}

/// Start a job and answer with a redirect to its page.
pub fn started(id: anyhow::Result<u64>) -> Page {
    Ok(Redirect::to(&format!("/jobs/{}", id?)).into_response())
}

/// `GET /jobs`: every job with its state.
pub async fn list(State(ui): State<Shared>, Extension(signed): Extension<Signed>) -> Page {
    let snap = snapshot(&ui).await?;
    let jobs: Vec<Arc<Job>> = ui.jobs.lock().iter().rev().cloned().collect();
    let body = html! {
        @if jobs.is_empty() { p { "No jobs yet: preparing data, tests and runs show here." } }
        @else {
            table {
                (layout::columns(&["job", "state"]))
                tbody {
                    @for j in &jobs {
                        tr {
                            td { a href={ "/jobs/" (j.id) } { (j.title) } }
                            td { (layout::status(match &j.lock().outcome {
                                None => "running",
                                Some(Outcome::Done { .. }) => "done",
                                Some(Outcome::Failed(_)) => "failed",
                            })) }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page("Jobs", &snap.me, &snap.net, &signed.csrf, body))
}

/// `GET /jobs/{id}`: the job's progress, live log and outcome.
pub async fn page(
    State(ui): State<Shared>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<u64>,
) -> Page {
    let job = ui.jobs.get(id).ok_or_else(|| UiError(anyhow::anyhow!("no job {id}; see /jobs")))?;
    let snap = snapshot(&ui).await?;
    let (lines, progress, outcome) = {
        let s = job.lock();
        (
            s.lines.iter().cloned().collect::<Vec<_>>().join("\n"),
            s.progress.as_ref().map(|p| (p.done, p.total, p.text.clone())),
            s.outcome.clone(),
        )
    };
    let body = html! {
        div #job data-events=[outcome.is_none().then(|| format!("/jobs/{id}/events"))] {
            p #status role="status" aria-live="polite" {
                @match &outcome {
                    None => (layout::status("running")),
                    Some(Outcome::Done { .. }) => (layout::status("done")),
                    Some(Outcome::Failed(_)) => (layout::status("failed")),
                }
            }
            @let (done, total, text) = progress.unwrap_or((0, 0, String::new()));
            label for="progress" { "Progress" }
            progress #progress max=(total.max(1)) value=(done) { (done) " of " (total) }
            span #progress-text { (text) }
            @match &outcome {
                Some(Outcome::Done { summary, next }) => {
                    p #outcome.ok { (summary) }
                    @if let Some((href, text)) = next { p { a #next href=(href) { (text) } } }
                }
                Some(Outcome::Failed(why)) => { p #outcome.bad role="alert" { "Failed: " (why) } }
                None => {}
            }
            h2 { "Log" }
            pre #log tabindex="0" aria-label="Job log" { (lines) }
        }
    };
    Ok(layout::page(&job.title, &snap.me, &snap.net, &signed.csrf, body))
}

/// `GET /jobs/{id}/events`: new log lines (`log`), progress (`progress`), and
/// `done` at the end, as server-sent events.
pub async fn events(State(ui): State<Shared>, Path(id): Path<u64>) -> Response {
    let Some(job) = ui.jobs.get(id) else {
        return layout::plain(axum::http::StatusCode::NOT_FOUND, "No such job", "see /jobs");
    };
    Sse::new(stream(job)).keep_alive(KeepAlive::default()).into_response()
}

/// Where a stream is in a job: lines sent, progress sent, whether it ended.
struct Cursor {
    job: Arc<Job>,
    rx: tokio::sync::watch::Receiver<u64>,
    sent: u64,
    progress_sent: u64,
    started: bool,
    ended: bool,
}

impl Cursor {
    /// Events for what changed since the last call.
    fn pending(&mut self) -> Vec<Event> {
        let s = self.job.lock();
        let mut events = Vec::new();
        if !self.started {
            // The page showed the log as it was; the stream sends it whole again.
            events.push(Event::default().event("reset").data("reset"));
            self.started = true;
        }
        let kept_from = s.written - s.lines.len() as u64;
        let from = self.sent.max(kept_from);
        for l in s.lines.iter().skip((from - kept_from) as usize) {
            events.push(Event::default().event("log").data(l.clone()));
        }
        self.sent = s.written;
        if s.progress_version != self.progress_sent
            && let Some(p) = &s.progress
        {
            self.progress_sent = s.progress_version;
            events.push(Event::default().event("progress").data(format!(
                "{} {} {}",
                p.done,
                p.total,
                p.text.replace(['\n', '\r'], " ")
            )));
        }
        if let Some(o) = &s.outcome {
            events.push(Event::default().event("done").data(match o {
                Outcome::Done { .. } => "done",
                Outcome::Failed(_) => "failed",
            }));
            self.ended = true;
        }
        events
    }
}

fn stream(job: Arc<Job>) -> impl Stream<Item = Result<Event, Infallible>> {
    let rx = job.changed.subscribe();
    let cursor = Cursor { job, rx, sent: 0, progress_sent: 0, started: false, ended: false };
    futures_util::stream::unfold(cursor, |mut c| async move {
        if c.ended {
            return None;
        }
        loop {
            let events = c.pending();
            if !events.is_empty() {
                let batch = futures_util::stream::iter(events.into_iter().map(Ok));
                return Some((batch, c));
            }
            if c.rx.changed().await.is_err() {
                return None;
            }
        }
    })
    .flatten()
}
