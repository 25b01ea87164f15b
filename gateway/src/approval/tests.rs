use std::{sync::Arc, time::Duration};

use super::*;
use crate::audit::event::Actor;

fn agent(uid: u32, subject: Option<&str>) -> Requester {
    Requester {
        actor: Actor {
            identity: "process".to_owned(),
            pid: Some(4242),
            uid: Some(uid),
            exe: Some("/usr/bin/psql".to_owned()),
            ..Actor::default()
        },
        token_subject: subject.map(str::to_owned),
        token_groups: Vec::new(),
    }
}

fn ask(statement: &str, timeout: Duration) -> Ask {
    Ask {
        conn_id: 1,
        request_record: None,
        target: "clinic".to_owned(),
        db_user: "app".to_owned(),
        database: "clinic".to_owned(),
        statement: statement.to_owned(),
        rule: "hold-bulk-phi".to_owned(),
        tables: vec!["public.patients".to_owned()],
        classified_columns: Vec::new(),
        row_estimate: Some(1000),
        request_hash: [7; 32],
        timeout,
    }
}

fn person(name: &str, uid: u32) -> Approver {
    Approver {
        name: name.to_owned(),
        uid: Some(uid),
        token_subject: None,
    }
}

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn an_approval_wakes_the_held_request_at_once() {
    let approvals = Approvals::new(1, None);
    let mut held = approvals
        .hold(agent(1000, None), ask("select * from patients", WAIT))
        .expect("held");
    let id = held.id();
    assert_eq!(approvals.pending().len(), 1);
    let deciding = Arc::clone(&approvals);
    let approver = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        deciding.approve(
            id,
            &person("alice", 2000),
            Some("ok".to_owned()),
            None,
            None,
        )
    });
    let started = std::time::Instant::now();
    let outcome = held.outcome().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woken, not timed out"
    );
    assert_eq!(
        approver.await.expect("approver"),
        Ok(Decided::Approved { grant: None })
    );
    match outcome {
        Outcome::Approved {
            approvers, reason, ..
        } => {
            assert_eq!(approvers, [person("alice", 2000)]);
            assert_eq!(reason.as_deref(), Some("ok"));
        }
        other => panic!("expected approval, got {other:?}"),
    }
    assert!(approvals.pending().is_empty());
}

#[tokio::test]
async fn a_denial_carries_the_approvers_reason() {
    let approvals = Approvals::new(2, None);
    let mut held = approvals
        .hold(agent(1000, None), ask("delete from patients", WAIT))
        .expect("held");
    let id = held.id();
    // Under a two-person rule one approval is not enough, and one denial ends it.
    assert_eq!(
        approvals.approve(id, &person("alice", 2000), None, None, None),
        Ok(Decided::Waiting { have: 1, need: 2 })
    );
    approvals
        .deny(id, &person("bob", 2001), "not during the audit".to_owned())
        .expect("deny");
    assert_eq!(
        held.outcome().await,
        Outcome::Denied {
            approver: person("bob", 2001),
            reason: "not during the audit".to_owned()
        }
    );
    assert_eq!(
        approvals.approve(id, &person("carol", 2002), None, None, None),
        Err(ApprovalError::NotPending(id))
    );
}

#[tokio::test]
async fn an_undecided_request_times_out_and_leaves_the_queue() {
    let approvals = Approvals::new(1, None);
    let mut held = approvals
        .hold(
            agent(1000, None),
            ask("select 1", Duration::from_millis(50)),
        )
        .expect("held");
    assert_eq!(held.outcome().await, Outcome::TimedOut);
    assert!(approvals.pending().is_empty());
    assert_eq!(
        approvals.approve(held.id(), &person("alice", 2000), None, None, None),
        Err(ApprovalError::NotPending(held.id()))
    );
}

#[tokio::test]
async fn a_client_that_stops_waiting_withdraws_its_request() {
    let approvals = Approvals::new(1, None);
    let mut changes = approvals.subscribe();
    let held = approvals
        .hold(agent(1000, None), ask("select 1", WAIT))
        .expect("held");
    let id = held.id();
    assert_eq!(changes.recv().await, Ok(Change::Waiting(id)));
    drop(held);
    assert_eq!(changes.recv().await, Ok(Change::Gone(id)));
    assert!(approvals.pending().is_empty());
}

#[test]
fn the_requester_cannot_approve_by_uid_or_by_token_subject() {
    let approvals = Approvals::new(1, None);
    let by_uid = approvals
        .hold(agent(1000, None), ask("select 1", WAIT))
        .expect("held");
    assert_eq!(
        approvals.approve(by_uid.id(), &person("agent-owner", 1000), None, None, None),
        Err(ApprovalError::SelfApproval)
    );
    let by_token = approvals
        .hold(agent(1000, Some("bot@clinic")), ask("select 1", WAIT))
        .expect("held");
    let same_subject = Approver {
        name: "bot@clinic".to_owned(),
        uid: None,
        token_subject: Some("bot@clinic".to_owned()),
    };
    assert_eq!(
        approvals.approve(by_token.id(), &same_subject, None, None, None),
        Err(ApprovalError::SelfApproval)
    );
    assert_eq!(approvals.pending().len(), 2, "both still wait");
}

#[tokio::test]
async fn two_person_rule_needs_two_different_people() {
    let approvals = Approvals::new(2, None);
    let held = approvals
        .hold(agent(1000, None), ask("select 1", WAIT))
        .expect("held");
    let id = held.id();
    let mut changes = approvals.subscribe();
    let alice = person("alice", 2000);
    assert_eq!(
        approvals.approve(id, &alice, None, None, None),
        Ok(Decided::Waiting { have: 1, need: 2 })
    );
    // Whoever shows it live learns that one approval is in.
    assert_eq!(changes.recv().await, Ok(Change::Updated(id)));
    let approved_by = approvals.get(id).expect("waiting").approved_by;
    assert_eq!(approved_by.len(), 1);
    assert!(approved_by[0].same_person(&alice));
    // The same person again, here through a token instead of the socket.
    let alice_by_token = Approver {
        name: "alice".to_owned(),
        uid: None,
        token_subject: Some("alice@clinic".to_owned()),
    };
    assert_eq!(
        approvals.approve(id, &alice_by_token, None, None, None),
        Err(ApprovalError::AlreadyApproved("alice".to_owned()))
    );
    assert_eq!(
        approvals.approve(id, &person("bob", 2001), None, None, None),
        Ok(Decided::Approved { grant: None })
    );
}

#[test]
fn an_approval_is_for_the_request_the_approver_saw() {
    let approvals = Approvals::new(1, None);
    let held = approvals
        .hold(agent(1000, None), ask("select 1", WAIT))
        .expect("held");
    assert_eq!(
        approvals.approve(held.id(), &person("alice", 2000), None, None, Some([8; 32])),
        Err(ApprovalError::Mismatch)
    );
    assert_eq!(
        approvals.approve(held.id(), &person("alice", 2000), None, None, Some([7; 32])),
        Ok(Decided::Approved { grant: None })
    );
}

#[test]
fn a_grant_covers_the_same_identity_target_and_shape_until_it_expires() {
    let approvals = Approvals::new(1, None);
    let statement = "select * from patients where id = ?";
    let held = approvals
        .hold(agent(1000, None), ask(statement, WAIT))
        .expect("held");
    let decided = approvals.approve(
        held.id(),
        &person("alice", 2000),
        None,
        Some(Duration::from_secs(3600)),
        None,
    );
    let Ok(Decided::Approved { grant: Some(grant) }) = decided else {
        panic!("expected a grant, got {decided:?}");
    };
    let again = ask(statement, WAIT);
    let first = approvals
        .granted(&agent(1000, None), &again)
        .expect("granted");
    let second = approvals
        .granted(&agent(1000, None), &again)
        .expect("granted");
    assert_eq!((first.grant, first.uses, second.uses), (grant, 1, 2));
    // Another identity, another shape or another target: held as before.
    assert!(approvals.granted(&agent(1001, None), &again).is_none());
    assert!(approvals
        .granted(&agent(1000, None), &ask("select * from patients", WAIT))
        .is_none());
    let mut elsewhere = ask(statement, WAIT);
    elsewhere.target = "billing".to_owned();
    assert!(approvals.granted(&agent(1000, None), &elsewhere).is_none());
    assert_eq!(approvals.grants().len(), 1);
    approvals.revoke(grant).expect("revoke");
    assert!(approvals.granted(&agent(1000, None), &again).is_none());
    assert_eq!(approvals.revoke(grant), Err(ApprovalError::NoGrant(grant)));
}

#[test]
fn an_expired_grant_covers_nothing() {
    let approvals = Approvals::new(1, None);
    let held = approvals
        .hold(agent(1000, None), ask("select 1", WAIT))
        .expect("held");
    approvals
        .approve(
            held.id(),
            &person("alice", 2000),
            None,
            Some(Duration::from_millis(1)),
            None,
        )
        .expect("approve");
    std::thread::sleep(Duration::from_millis(5));
    assert!(approvals
        .granted(&agent(1000, None), &ask("select 1", WAIT))
        .is_none());
    assert!(approvals.grants().is_empty());
}

#[tokio::test]
async fn a_hundred_requests_wait_and_are_decided_independently() {
    let approvals = Approvals::new(1, None);
    let mut waiting = Vec::new();
    for n in 0..100 {
        let mut held = approvals
            .hold(agent(1000, None), ask(&format!("select {n}"), WAIT))
            .expect("held");
        waiting.push((held.id(), tokio::spawn(async move { held.outcome().await })));
    }
    assert_eq!(approvals.pending().len(), 100);
    for (n, (id, _)) in waiting.iter().enumerate() {
        let alice = person("alice", 2000);
        match n % 2 {
            0 => assert!(approvals.approve(*id, &alice, None, None, None).is_ok()),
            _ => approvals
                .deny(*id, &alice, format!("no {n}"))
                .expect("deny"),
        }
    }
    for (n, (_, outcome)) in waiting.into_iter().enumerate() {
        let outcome = outcome.await.expect("held task");
        match n % 2 {
            0 => assert!(matches!(outcome, Outcome::Approved { .. }), "{outcome:?}"),
            _ => assert!(
                matches!(&outcome, Outcome::Denied { reason, .. } if *reason == format!("no {n}")),
                "{outcome:?}"
            ),
        }
    }
    assert!(approvals.pending().is_empty());
}

/// What a stopped gateway left waiting is recorded as abandoned at the next start, and ids
/// go on from where they were: an id never names two requests.
#[tokio::test]
async fn requests_left_waiting_by_a_stopped_gateway_are_recorded_as_abandoned() {
    use crate::{
        audit::{tests as audit_tests, AuditLog},
        config::Durability,
    };
    let dir = audit_tests::TempDir::new("approvals-restart");
    let settings = audit_tests::settings(&dir.0, Durability::Batched);
    let kept = dir.0.join("approvals");
    let first_id = {
        let log = AuditLog::open(&settings).expect("log");
        let approvals = Approvals::open(1, log.clone(), &kept).expect("approvals");
        let held = approvals
            .hold(agent(1000, None), ask("delete from patients", WAIT))
            .expect("held");
        let id = held.id();
        // The gateway dies: nothing decides or withdraws it.
        std::mem::forget(held);
        log.close();
        id
    };
    let log = AuditLog::open(&settings).expect("log reopened");
    let approvals = Approvals::open(1, log.clone(), &kept).expect("approvals reopened");
    assert!(approvals.pending().is_empty(), "nothing is resumed");
    let held = approvals
        .hold(agent(1000, None), ask("select 1", WAIT))
        .expect("held");
    assert!(
        held.id() > first_id,
        "ids go on: {} after {first_id}",
        held.id()
    );
    log.close();
    let decided: Vec<serde_json::Value> = crate::audit::segment::list(&settings.dir)
        .expect("segments")
        .iter()
        .flat_map(|(_, path)| {
            std::fs::read_to_string(path)
                .expect("segment")
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .map(|line| serde_json::from_str(&line).expect("a record"))
        .filter(|record: &serde_json::Value| record["kind"] == "approval_decided")
        .collect();
    assert_eq!(decided.len(), 1, "{decided:?}");
    assert_eq!(decided[0]["approval"], first_id);
    assert_eq!(decided[0]["outcome"], "abandoned");
}

#[tokio::test]
async fn a_stopping_gateway_fails_what_waits() {
    let approvals = Approvals::new(1, None);
    let mut held = approvals
        .hold(agent(1000, None), ask("select 1", WAIT))
        .expect("held");
    approvals.abandon_all("the gateway is stopping");
    assert!(matches!(held.outcome().await, Outcome::Abandoned { .. }));
    assert!(approvals.pending().is_empty());
}
