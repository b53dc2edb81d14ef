//! The in-process runner: chains the very same stage handlers in one process, with no
//! NATS, for embedded mode (`vigil scan`). Messages are routed by subject exactly as
//! JetStream would route them; failures take the same path as in the distributed
//! runner ([`crate::failure`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;
use vigil_contracts::codec;
use vigil_contracts::{DeadLetter, Notification, ScanResult, StageName, Subject, Subjects};

use crate::failure::{failure_outputs, route_of};
use crate::stage::{Outgoing, Stage};

/// What a run produced on the public subjects.
#[derive(Debug, Default)]
pub struct Collected {
    pub results: Vec<ScanResult>,
    pub notifications: Vec<Notification>,
    pub dead_letters: Vec<DeadLetter>,
    /// Outputs on subjects no registered stage consumes (e.g. feed deltas without a match stage).
    pub unrouted: Vec<Outgoing>,
}

/// Called when a stage starts handling a message: (stage, subject).
pub type ProgressFn = Arc<dyn Fn(StageName, &str) + Send + Sync>;

pub struct InProcess {
    stages: HashMap<StageName, Arc<dyn Stage>>,
    subjects: Subjects,
    max_attempts: u32,
    retry_delay: Duration,
    progress: Option<ProgressFn>,
}

impl InProcess {
    pub fn new(subjects: Subjects) -> Self {
        InProcess {
            stages: HashMap::new(),
            subjects,
            max_attempts: 3,
            retry_delay: Duration::from_millis(200),
            progress: None,
        }
    }

    pub fn with_stage(mut self, stage: Arc<dyn Stage>) -> Self {
        self.stages.insert(stage.name(), stage);
        self
    }

    /// Attempts per message for transient errors (default 3).
    pub fn with_retries(mut self, max_attempts: u32, delay: Duration) -> Self {
        self.max_attempts = max_attempts.max(1);
        self.retry_delay = delay;
        self
    }

    pub fn with_progress(mut self, f: ProgressFn) -> Self {
        self.progress = Some(f);
        self
    }

    /// Run until no message is left, starting from `initial`.
    pub async fn run(&self, initial: Vec<Outgoing>) -> Collected {
        let mut queue: VecDeque<Outgoing> = initial.into();
        let mut out = Collected::default();
        while let Some(msg) = queue.pop_front() {
            match &msg.subject {
                Subject::Result(_) => {
                    match codec::decode::<ScanResult>(&msg.payload) {
                        Ok(r) => out.results.push(r),
                        Err(e) => tracing::error!(error = %e, "undecodable scan result"),
                    }
                    continue;
                }
                Subject::Notify(_) => {
                    if let Ok(n) = codec::decode::<Notification>(&msg.payload) {
                        out.notifications.push(n);
                    }
                    continue;
                }
                Subject::DeadLetter(_) => {
                    if let Ok(d) = codec::decode::<DeadLetter>(&msg.payload) {
                        out.dead_letters.push(d);
                    }
                    continue;
                }
                _ => {}
            }
            let Some(stage) = route_of(&msg.subject).and_then(|s| self.stages.get(&s)) else {
                out.unrouted.push(msg);
                continue;
            };
            let subject = self.subjects.render(&msg.subject);
            if let Some(p) = &self.progress {
                p(stage.name(), &subject);
            }
            let span = tracing::info_span!("message", stage = %stage.name(), subject = %subject, msg_id = %msg.msg_id);
            let produced = self
                .handle_with_retries(stage.as_ref(), &msg, &subject)
                .instrument(span)
                .await;
            queue.extend(produced);
        }
        out
    }

    async fn handle_with_retries(
        &self,
        stage: &dyn Stage,
        msg: &Outgoing,
        subject: &str,
    ) -> Vec<Outgoing> {
        let mut attempt = 1;
        loop {
            match stage.handle(&msg.subject, &msg.payload).await {
                Ok(outs) => return outs,
                Err(e) if e.is_transient() && attempt < self.max_attempts => {
                    tracing::warn!(error = %e, attempt, "transient failure, retrying");
                    tokio::time::sleep(self.retry_delay * attempt).await;
                    attempt += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "giving up on message");
                    return failure_outputs(
                        stage.name(),
                        subject,
                        &msg.payload,
                        &e,
                        attempt as u64,
                    );
                }
            }
        }
    }
}
