//! What `top` draws: a pure function of the [`Screen`] state (the last `/status` answer, and
//! whether the worker answers now), so it is tested on ratatui's test backend.
//!
//! ```text
//!  f4a-indexer top · 127.0.0.1:8080 · worker 0.1.0 · up 0:05:12 · ready
//! ┌Documents───────────────────────────────────────────────┐
//! │docs/s     last 10 s  last 1 min         total          │  in = read from objects,
//! │in             512.0       498.3         12000          │  out = indexed + dead-lettered
//! │out            500.0       497.1         11800          │
//! │indexed 11800 · dead-lettered 0 · retried 0             │
//! │rate   configured 500/s · effective 350.0/s             │
//! ├Pipeline / Last errors / docs/s in (sparkline) / docs/s out (sparkline)
//! ```

use std::time::Instant;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, RenderDirection, Sparkline};
use ratatui::Frame;

use crate::status::Snapshot;

/// What the screen shows.
pub struct Screen {
    pub addr: String,
    /// The last answer (kept while the worker does not answer).
    pub snap: Snapshot,
    /// Since when and why the worker does not answer.
    pub unreachable: Option<(Instant, String)>,
}

impl Screen {
    pub fn new(addr: String, first: Snapshot) -> Screen {
        Screen {
            addr,
            snap: first,
            unreachable: None,
        }
    }

    /// One fetch's result.
    pub fn update(&mut self, answer: Result<Snapshot, String>) {
        match answer {
            Ok(s) => {
                self.snap = s;
                self.unreachable = None;
            }
            Err(reason) => {
                let since = self.unreachable.take().map_or_else(Instant::now, |u| u.0);
                self.unreachable = Some((since, reason));
            }
        }
    }
}

fn state_style(state: &str) -> Style {
    match state {
        "ok" | "ready" => Style::new().green(),
        "unknown" | "starting" => Style::new().yellow(),
        _ => Style::new().red(),
    }
}

fn duration(secs: u64) -> String {
    format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

fn rate(r: f64) -> String {
    if r <= 0.0 {
        "unlimited".to_string()
    } else if r.fract() == 0.0 {
        format!("{r:.0}/s")
    } else {
        format!("{r:.1}/s")
    }
}

/// Draws the whole screen.
pub fn render(f: &mut Frame, s: &Screen) {
    let snap = &s.snap;
    let error_rows = snap.last_errors.len().max(1) as u16;
    let [header, docs, pipeline, errors, spark_in, spark_out, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(error_rows + 2),
        Constraint::Min(3),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(Paragraph::new(header_lines(s)), header);
    f.render_widget(documents(snap), docs);
    f.render_widget(pipeline_view(snap), pipeline);
    f.render_widget(last_errors(snap), errors);
    sparklines(f, snap, spark_in, spark_out);
    f.render_widget(
        Paragraph::new(" q quits · refreshed every second").dim(),
        footer,
    );
}

/// The title line, and a second line that says when the worker stopped answering.
fn header_lines(s: &Screen) -> Vec<Line<'static>> {
    let snap = &s.snap;
    let title = Line::from(vec![
        Span::raw(format!(" f4a-indexer top · {} · ", s.addr)).bold(),
        Span::raw(format!(
            "worker {} · up {} · ",
            snap.version,
            duration(snap.uptime_secs)
        )),
        Span::styled(snap.ready.clone(), state_style(&snap.ready)),
    ]);
    let notice = match &s.unreachable {
        None => Line::from(""),
        Some((since, reason)) => Line::from(format!(
            " UNREACHABLE for {} s, last numbers shown: {reason}",
            since.elapsed().as_secs()
        ))
        .red()
        .bold(),
    };
    vec![title, notice]
}

fn documents(snap: &Snapshot) -> Paragraph<'static> {
    let d = &snap.documents;
    let row = |name: &str, ten: f64, min: f64, total: u64| {
        Line::from(format!("{name:<8}{ten:>12.1}{min:>12.1}{total:>14}"))
    };
    Paragraph::new(vec![
        Line::from(format!(
            "{:<8}{:>12}{:>12}{:>14}",
            "docs/s", "last 10 s", "last 1 min", "total"
        ))
        .dim(),
        row("in", d.last_10s.docs_in, d.last_1m.docs_in, d.read),
        row(
            "out",
            d.last_10s.docs_out,
            d.last_1m.docs_out,
            d.indexed + d.dead_lettered,
        ),
        Line::from(format!(
            "indexed {} · dead-lettered {} · retried {}",
            d.indexed, d.dead_lettered, d.retried
        )),
        Line::from(format!(
            "rate    configured {} · effective {}",
            rate(snap.rate.configured),
            rate(snap.rate.effective)
        )),
    ])
    .block(Block::bordered().title("Documents (in = read, out = indexed + dead-lettered)"))
}

fn pipeline_view(snap: &Snapshot) -> Paragraph<'static> {
    let (m, b) = (&snap.messages, &snap.bulk);
    let mut cluster = vec![
        Span::raw("cluster  "),
        Span::styled(snap.cluster.state.clone(), state_style(&snap.cluster.state)),
    ];
    if let Some(id) = &snap.cluster.identity {
        cluster.push(Span::raw(format!(
            " · {} {} · cluster {:?}",
            id.distribution, id.version, id.name
        )));
    }
    Paragraph::new(vec![
        Line::from(format!(
            "messages in flight {}/{} · deleted {} · released {} · ignored {} · invalid {}",
            m.in_flight, m.max_in_flight, m.deleted, m.released, m.ignored, m.invalid
        )),
        Line::from(format!(
            "bulk     slots busy {}/{} · ok {} · partial {} · retry {} · overloaded {} · split {}",
            b.busy, b.slots, b.ok, b.partial, b.retry, b.overloaded, b.split
        )),
        Line::from(cluster),
        Line::from(vec![
            Span::raw("sqs      "),
            Span::styled(snap.sqs.state.clone(), state_style(&snap.sqs.state)),
            Span::raw(format!(" · queue {}", snap.sqs.queue)),
        ]),
    ])
    .block(Block::bordered().title("Pipeline"))
}

fn last_errors(snap: &Snapshot) -> Paragraph<'static> {
    let lines: Vec<Line> = if snap.last_errors.is_empty() {
        vec![Line::from("none").dim()]
    } else {
        snap.last_errors
            .iter()
            .map(|(stage, e)| {
                Line::from(vec![
                    Span::raw(format!("{stage:<12}")).red(),
                    Span::raw(format!(
                        "{} ago, {}×: {}",
                        duration(e.age_secs),
                        e.count,
                        e.reason
                    )),
                ])
            })
            .collect()
    };
    Paragraph::new(lines).block(Block::bordered().title("Last errors"))
}

/// Documents in and out per second, on one scale so the two can be compared.
fn sparklines(f: &mut Frame, snap: &Snapshot, area_in: Rect, area_out: Rect) {
    let d = &snap.documents;
    let width = area_in.width.saturating_sub(2) as usize;
    let tail = |h: &[u64]| h[h.len().saturating_sub(width)..].to_vec();
    let (h_in, h_out) = (tail(&d.history_in), tail(&d.history_out));
    let max = h_in.iter().chain(&h_out).copied().max().unwrap_or(0).max(1);
    let title = |name: &str, h: &[u64]| {
        format!(
            "docs/s {name} · now {} · scale 0–{max} · last {} s",
            h.last().copied().unwrap_or(0),
            h.len()
        )
    };
    for (name, h, area, color) in [
        ("in", &h_in, area_in, Color::Cyan),
        ("out", &h_out, area_out, Color::Green),
    ] {
        f.render_widget(
            Sparkline::default()
                .block(Block::bordered().title(title(name, h)))
                // Newest at the right edge, older to the left, however short the history.
                .data(h.iter().rev().copied())
                .direction(RenderDirection::RightToLeft)
                .max(max)
                .style(Style::new().fg(color)),
            area,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{ClusterIdentity, LastError};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn text(screen: &Screen) -> String {
        let mut t = Terminal::new(TestBackend::new(90, 30)).unwrap();
        t.draw(|f| render(f, screen)).unwrap();
        let buf = t.backend().buffer().clone();
        (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
                    + "\n"
            })
            .collect()
    }

    fn snapshot() -> Snapshot {
        let mut s = Snapshot {
            version: "0.1.0".into(),
            uptime_secs: 312,
            live: "ok".into(),
            ready: "ready".into(),
            ..Default::default()
        };
        s.documents.last_10s.docs_in = 512.0;
        s.documents.last_1m.docs_in = 498.3;
        s.documents.read = 12000;
        s.documents.indexed = 11790;
        s.documents.dead_lettered = 10;
        s.documents.history_in = vec![0, 100, 500, 512];
        s.documents.history_out = vec![0, 90, 480, 500];
        s.rate.configured = 500.0;
        s.rate.effective = 350.0;
        s.bulk.slots = 2;
        s.bulk.busy = 1;
        s.messages.max_in_flight = 10;
        s.messages.in_flight = 3;
        s.cluster.state = "ok".into();
        s.cluster.identity = Some(ClusterIdentity {
            name: "logs".into(),
            uuid: "u".into(),
            distribution: "opensearch".into(),
            version: "2.19.1".into(),
        });
        s.sqs.state = "ok".into();
        s.sqs.queue = "f4a".into();
        s
    }

    #[test]
    fn draws_the_numbers() {
        let screen = Screen::new("127.0.0.1:8080".into(), snapshot());
        let t = text(&screen);
        assert!(
            t.contains("f4a-indexer top · 127.0.0.1:8080 · worker 0.1.0 · up 0:05:12 · ready"),
            "{t}"
        );
        assert!(
            t.contains("in             512.0       498.3         12000"),
            "{t}"
        );
        assert!(
            t.contains("indexed 11790 · dead-lettered 10 · retried 0"),
            "{t}"
        );
        assert!(t.contains("configured 500/s · effective 350/s"), "{t}");
        assert!(t.contains("in flight 3/10"), "{t}");
        assert!(t.contains("slots busy 1/2"), "{t}");
        assert!(t.contains("opensearch 2.19.1"), "{t}");
        assert!(t.contains("docs/s in · now 512 · scale 0–512"), "{t}");
        assert!(t.contains("docs/s out · now 500"), "{t}");
        assert!(t.contains("none"), "no errors yet: {t}");
        let bottom: Vec<char> = t
            .lines()
            .skip_while(|l| !l.contains("docs/s out"))
            .take_while(|l| !l.starts_with('└'))
            .last()
            .unwrap()
            .chars()
            .collect();
        assert!(
            "▁▂▃▄▅▆▇█".contains(bottom[bottom.len() - 2]),
            "the newest second at the right edge: {t}"
        );
    }

    #[test]
    fn shows_errors_and_an_unreachable_worker() {
        let mut snap = snapshot();
        snap.last_errors.insert(
            "bulk".into(),
            LastError {
                reason: "HTTP 429: too many requests".into(),
                at: String::new(),
                age_secs: 4,
                count: 3,
            },
        );
        let mut screen = Screen::new("w:1".into(), snap);
        assert!(text(&screen).contains("bulk        0:00:04 ago, 3×: HTTP 429: too many requests"));
        screen.update(Err("connection refused".into()));
        let t = text(&screen);
        assert!(
            t.contains("UNREACHABLE for 0 s, last numbers shown: connection refused"),
            "{t}"
        );
        assert!(t.contains("12000"), "the last numbers stay: {t}");
        screen.update(Ok(snapshot()));
        assert!(!text(&screen).contains("UNREACHABLE"));
    }
}
