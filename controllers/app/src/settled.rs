//! Pure decisions about the App's own conditions: `ContainerEngineReady` from the mirror
//! controllers' `<Kind>sSynced` conditions (shared/design/processes.md) and `Settled`
//! (controllers.md §2.6).

use rdd_kit::conditions::Condition;

/// A condition as decided, before times are filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub status: &'static str,
    pub reason: String,
    pub message: String,
    pub observed_generation: i64,
}

fn d(status: &'static str, reason: &str, message: &str, generation: i64) -> Decision {
    Decision {
        status,
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: generation,
    }
}

/// `ContainerEngineReady` from the `<Kind>sSynced` conditions of the enabled mirror kinds, in
/// order. None when one is missing (Settled then waits for the engine).
///
/// | the Synced conditions                  | ContainerEngineReady                              |
/// |----------------------------------------|---------------------------------------------------|
/// | any missing                            | none                                              |
/// | all `True/Connected`                   | `True/Connected` "Container engine synced"         |
/// | all `True/NotApplicable`               | `True/NotApplicable`                              |
/// | all `False/Stopped`                    | `False/Stopped` "Container engine stopped"         |
/// | mixed Stopped/NotApplicable/Connected  | `False/Partial` (never settles a stop early)       |
/// | otherwise                              | `False`, reason and message of the first not ready |
///
/// observedGeneration is the lowest of them, so a stale one keeps `Settled` at `EngineStale`.
pub fn engine_ready(synced: &[Option<&Condition>]) -> Option<Decision> {
    let all: Vec<&Condition> = synced.iter().copied().collect::<Option<Vec<_>>>()?;
    if all.is_empty() {
        return None;
    }
    let min_gen = all
        .iter()
        .map(|c| c.observed_generation.unwrap_or(0))
        .min()
        .unwrap_or(0);
    let every = |s: &str, r: &str| all.iter().all(|c| c.status == s && c.reason == r);
    if every("True", "Connected") {
        return Some(d("True", "Connected", "Container engine synced", min_gen));
    }
    if every("True", "NotApplicable") {
        return Some(d(
            "True",
            "NotApplicable",
            "Engine mirroring is only supported with the moby backend",
            min_gen,
        ));
    }
    if every("False", "Stopped") {
        return Some(d("False", "Stopped", "Container engine stopped", min_gen));
    }
    let first = all
        .iter()
        .find(|c| !(c.status == "True" && c.reason == "Connected"))
        .copied()
        .unwrap_or(all[0]);
    if matches!(first.reason.as_str(), "Stopped" | "NotApplicable") {
        // Mixed: some kinds swept, others not (yet). Never a reason that settles a stop.
        let states: Vec<String> = all
            .iter()
            .map(|c| format!("{} {}", c.type_, c.reason))
            .collect();
        return Some(d(
            "False",
            "Partial",
            &format!("Mirror controllers disagree: {}", states.join(", ")),
            min_gen,
        ));
    }
    Some(d("False", &first.reason, &first.message, min_gen))
}

/// Inputs of §2.6, all from one App generation.
pub struct Inputs<'a> {
    pub desired: bool,
    pub generation: i64,
    pub template_up_to_date: bool,
    pub running: Option<&'a Condition>,
    pub engine: Option<&'a Condition>,
    pub kubernetes: Option<&'a Condition>,
    pub engine_enabled: bool,
    pub kubernetes_enabled: bool,
    pub kubernetes_wanted: bool,
}

/// `Settled` by the table of controllers.md §2.6 (first matching rule wins; the rule numbers
/// are the table's).
pub fn settled(i: &Inputs<'_>) -> Decision {
    let g = i.generation;
    let fresh = |c: &Condition| c.observed_generation.unwrap_or(0) >= g;
    // 1
    if !i.template_up_to_date {
        return d(
            "False",
            "ApplyingTemplate",
            "Applying the configuration change to the VM",
            g,
        );
    }
    // 2
    let Some(running) = i.running else {
        return d(
            "False",
            "WaitingForLimaVM",
            "Waiting for LimaVM to report its state",
            g,
        );
    };
    let forwarded = |target: &str| {
        let msg = if running.reason.ends_with("Failed") && !running.message.is_empty() {
            running.message.clone()
        } else {
            format!("LimaVM has not yet reached {target}")
        };
        d("False", &running.reason, &msg, g)
    };
    // 3, 4
    if i.desired && running.status != "True" {
        return forwarded("Started");
    }
    if !i.desired && running.reason != "Stopped" {
        return forwarded("Stopped");
    }
    let settled = d("True", "Settled", "App has reached the desired state", g);
    // 5
    if !i.engine_enabled && !i.kubernetes_enabled {
        return settled;
    }
    // 6, 7
    if !i.desired {
        if i.engine_enabled {
            return match i.engine {
                Some(e) if fresh(e) && (e.reason == "Stopped" || e.reason == "NotApplicable") => {
                    settled
                }
                _ => d(
                    "False",
                    "EngineStale",
                    "Container engine needs to be synchronized",
                    g,
                ),
            };
        }
        return settled;
    }
    // 8, 9, 10
    if i.engine_enabled {
        match i.engine {
            None => {
                return d(
                    "False",
                    "WaitingForEngine",
                    "Waiting for container engine condition",
                    g,
                );
            }
            Some(e) if !fresh(e) => {
                return d(
                    "False",
                    "EngineStale",
                    "Container engine needs to be synchronized",
                    g,
                );
            }
            Some(e) if e.status != "True" => return d("False", &e.reason, &e.message, g),
            Some(_) => {}
        }
    }
    // 11, 12, 13
    if i.kubernetes_enabled && i.kubernetes_wanted {
        match i.kubernetes {
            None => {
                return d(
                    "False",
                    "WaitingForKubernetes",
                    "Waiting for Kubernetes condition",
                    g,
                );
            }
            Some(k) if !fresh(k) => {
                return d(
                    "False",
                    "KubernetesStale",
                    "Kubernetes context needs to be synchronized",
                    g,
                );
            }
            Some(k) if k.status != "True" => return d("False", &k.reason, &k.message, g),
            Some(_) => {}
        }
    }
    // 14
    settled
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(t: &str, s: &str, r: &str, g: i64) -> Condition {
        Condition {
            type_: t.into(),
            status: s.into(),
            reason: r.into(),
            message: format!("{r} message"),
            observed_generation: Some(g),
            last_transition_time: "t".into(),
        }
    }

    fn inputs<'a>(
        desired: bool,
        running: Option<&'a Condition>,
        engine: Option<&'a Condition>,
    ) -> Inputs<'a> {
        Inputs {
            desired,
            generation: 3,
            template_up_to_date: true,
            running,
            engine,
            kubernetes: None,
            engine_enabled: true,
            kubernetes_enabled: false,
            kubernetes_wanted: false,
        }
    }

    fn reason(i: &Inputs<'_>) -> (String, String) {
        let s = settled(i);
        assert_eq!(
            s.observed_generation, 3,
            "Settled always carries the App generation"
        );
        (s.status.to_string(), s.reason)
    }

    fn pair(s: &str, r: &str) -> (String, String) {
        (s.to_string(), r.to_string())
    }

    #[test]
    fn settled_table_rules_in_order() {
        let started = c("Running", "True", "Started", 3);
        let starting = c("Running", "False", "Starting", 3);
        let stopped = c("Running", "False", "Stopped", 3);
        let failed = c("Running", "False", "StartFailed", 3);
        let connected = c("ContainerEngineReady", "True", "Connected", 3);
        let connected_old = c("ContainerEngineReady", "True", "Connected", 2);
        let engine_stopped = c("ContainerEngineReady", "False", "Stopped", 3);
        let engine_stopped_old = c("ContainerEngineReady", "False", "Stopped", 2);
        let refused = c("ContainerEngineReady", "False", "ConnectFailed", 3);
        // 1
        let mut i = inputs(true, Some(&started), Some(&connected));
        i.template_up_to_date = false;
        assert_eq!(reason(&i), pair("False", "ApplyingTemplate"));
        // 2
        assert_eq!(
            reason(&inputs(true, None, None)),
            pair("False", "WaitingForLimaVM")
        );
        // 3, with the Failed message forwarded
        assert_eq!(
            reason(&inputs(true, Some(&starting), None)),
            pair("False", "Starting")
        );
        assert_eq!(
            settled(&inputs(true, Some(&starting), None)).message,
            "LimaVM has not yet reached Started"
        );
        assert_eq!(
            settled(&inputs(true, Some(&failed), None)).message,
            "StartFailed message"
        );
        // 4
        assert_eq!(
            reason(&inputs(false, Some(&started), None)),
            pair("False", "Started")
        );
        // 5
        let mut i = inputs(true, Some(&started), None);
        i.engine_enabled = false;
        assert_eq!(reason(&i), pair("True", "Settled"));
        // 6: only after the sweep (reason Stopped) of this generation
        assert_eq!(
            reason(&inputs(false, Some(&stopped), Some(&engine_stopped))),
            pair("True", "Settled")
        );
        assert_eq!(
            reason(&inputs(false, Some(&stopped), Some(&engine_stopped_old))),
            pair("False", "EngineStale")
        );
        assert_eq!(
            reason(&inputs(false, Some(&stopped), Some(&connected))),
            pair("False", "EngineStale")
        );
        assert_eq!(
            reason(&inputs(false, Some(&stopped), None)),
            pair("False", "EngineStale")
        );
        // 8, 9, 10
        assert_eq!(
            reason(&inputs(true, Some(&started), None)),
            pair("False", "WaitingForEngine")
        );
        assert_eq!(
            reason(&inputs(true, Some(&started), Some(&connected_old))),
            pair("False", "EngineStale")
        );
        assert_eq!(
            reason(&inputs(true, Some(&started), Some(&refused))),
            pair("False", "ConnectFailed")
        );
        // 11
        let mut i = inputs(true, Some(&started), Some(&connected));
        i.kubernetes_enabled = true;
        i.kubernetes_wanted = true;
        assert_eq!(reason(&i), pair("False", "WaitingForKubernetes"));
        // 14
        assert_eq!(
            reason(&inputs(true, Some(&started), Some(&connected))),
            pair("True", "Settled")
        );
    }

    #[test]
    fn engine_ready_from_the_three_synced_conditions() {
        let a = c("ContainersSynced", "True", "Connected", 3);
        let b = c("ImagesSynced", "True", "Connected", 2);
        let v = c("VolumesSynced", "True", "Connected", 3);
        let r = engine_ready(&[Some(&a), Some(&b), Some(&v)]).unwrap();
        assert_eq!(
            (r.status, r.reason.as_str(), r.observed_generation),
            ("True", "Connected", 2)
        );
        assert!(engine_ready(&[Some(&a), None, Some(&v)]).is_none());
        let s1 = c("ContainersSynced", "False", "Stopped", 4);
        let s2 = c("ImagesSynced", "False", "Stopped", 4);
        let s3 = c("VolumesSynced", "False", "Stopped", 4);
        let r = engine_ready(&[Some(&s1), Some(&s2), Some(&s3)]).unwrap();
        assert_eq!((r.status, r.reason.as_str()), ("False", "Stopped"));
        let f = c("ImagesSynced", "False", "ConnectFailed", 4);
        let r = engine_ready(&[Some(&a), Some(&f), Some(&v)]).unwrap();
        assert_eq!(
            (r.status, r.reason.as_str(), r.message.as_str()),
            ("False", "ConnectFailed", "ConnectFailed message")
        );
        // One kind still sweeping: not Stopped yet.
        let r = engine_ready(&[Some(&s1), Some(&a), Some(&s3)]).unwrap();
        assert_eq!((r.status, r.reason.as_str()), ("False", "Partial"));
    }
}
