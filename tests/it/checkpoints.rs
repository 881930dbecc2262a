//! The audit log against someone with every right in the database:
//! signed checkpoints outside it, `audit verify --checkpoints` naming the
//! first bad record and the checkpoint it contradicts, and proofs anyone
//! with the public key can check. Both backends.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use overblik::audit::checkpoint::{AuditKey, Sink, public_path};
use overblik::audit::{Actor, Entry, Kind, Search, Text, TransactionId, canonical, checkpointer, hash, prove};
use overblik::store::{AuditFilter, Store};
use uuid::Uuid;

use crate::serve::raw;
use crate::support::{Backend, TestDb};

struct Log {
    db: TestDb,
    store: Store,
    key: Arc<AuditKey>,
    dir: PathBuf,
    key_file: PathBuf,
}

impl Drop for Log {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn entry(n: usize) -> overblik::audit::Recorded {
    let user = Text::new(&format!("user-{n}"));
    let mut e = Entry::new(
        TransactionId::generate(),
        Uuid::new_v4(),
        Kind::Lookup,
        Actor::Operator { user },
        Search::rpc("ListCases"),
    );
    e.citizen = overblik::domain::PartyId::parse(&format!("urn:oio:cpr-nr:01018{:05}", n % 100_000)).ok();
    e.allow(n % 3, Vec::new()).seal()
}

/// A log of `n` records written by the service in groups of 7, with a
/// checkpoint every `every` records.
async fn log(backend: Backend, n: usize, every: u64) -> Log {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let dir = std::env::temp_dir().join(format!("overblik-cp-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("audit.key");
    let key = Arc::new(AuditKey::dev_at(&key_file).unwrap());
    let sink = Sink::open(&dir.join("checkpoints")).unwrap();
    let mut written = 0;
    while written < n {
        let group: Vec<_> = (written..(written + 7).min(n)).map(entry).collect();
        written += group.len();
        store.append_audit(group, Utc::now(), Some(&key)).await.unwrap();
    }
    // A checkpoint for every whole `every` records.
    loop {
        let size = store.latest_checkpoint().await.unwrap().map_or(0, |c| c.signed.head.size);
        if (n as u64) - size < every {
            break;
        }
        assert!(checkpointer::round(&store, &key, &sink, every).await.unwrap().made.is_some());
    }
    Log { db, store, key, dir, key_file }
}

impl Log {
    fn checkpoints(&self) -> PathBuf {
        self.dir.join("checkpoints")
    }

    async fn round(&self) -> checkpointer::Round {
        let sink = Sink::open(&self.checkpoints()).unwrap();
        checkpointer::round(&self.store, &self.key, &sink, 1000).await.unwrap()
    }

    /// Runs `overblik audit verify --checkpoints … --full`: exit code and
    /// output.
    fn verify(&self) -> (i32, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_overblik"))
            .args(["audit", "verify", "--full", "--database-url", &self.db.url, "--checkpoints"])
            .arg(self.checkpoints())
            .arg("--public-key")
            .arg(public_path(&self.key_file))
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    /// Takes the append-only guard off, as the database's owner can.
    async fn unguard(&self, backend: Backend) {
        let off = match backend {
            Backend::Postgres => "ALTER TABLE audit_log DISABLE TRIGGER USER",
            Backend::Sqlite => "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete",
        };
        raw(&self.db.url, off).await.unwrap();
    }
}

fn names(output: &str, seq: u64, checkpoint: u64) -> bool {
    output.contains(&format!("record {seq}:")) && output.contains(&format!("size {checkpoint}"))
}

async fn an_untouched_log_verifies_against_its_checkpoints(backend: Backend) {
    let log = log(backend, 45, 10).await;
    let files = std::fs::read_dir(log.checkpoints()).unwrap().count();
    assert_eq!(files, 4, "checkpoints at 10, 20, 30 and 40 records");
    let (code, out) = log.verify();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("records 1-40 covered") && out.contains("5 after the last one"), "{out}");
    // A later checkpoint covers the rest, and an incremental run reads only it.
    assert_eq!(log.round().await.made, Some(45));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_overblik"))
        .args(["audit", "verify", "--database-url", &log.db.url, "--checkpoints"])
        .arg(log.checkpoints())
        .arg("--public-key")
        .arg(public_path(&log.key_file))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("resuming after record 40") && text.contains("records 1-45 covered"), "{text}");
}
crate::both_backends!(an_untouched_log_verifies_against_its_checkpoints);

async fn a_changed_record_is_named(backend: Backend) {
    let log = log(backend, 40, 10).await;
    log.unguard(backend).await;
    raw(&log.db.url, "UPDATE audit_log SET user_name = 'someone else' WHERE seq = 17").await.unwrap();
    let (code, out) = log.verify();
    assert_eq!(code, 2, "{out}");
    assert!(names(&out, 17, 20), "{out}");
}
crate::both_backends!(a_changed_record_is_named);

async fn a_deleted_record_is_named(backend: Backend) {
    let log = log(backend, 40, 10).await;
    log.unguard(backend).await;
    raw(&log.db.url, "DELETE FROM audit_log WHERE seq = 23").await.unwrap();
    let (code, out) = log.verify();
    assert_eq!(code, 2, "{out}");
    assert!(names(&out, 23, 30), "{out}");
}
crate::both_backends!(a_deleted_record_is_named);

async fn the_last_records_deleted_and_the_head_rewound_are_found(backend: Backend) {
    let log = log(backend, 40, 10).await;
    log.unguard(backend).await;
    let records = log.store.audit_records(&AuditFilter::default(), 36, 1).await.unwrap();
    let head37 = &records[0];
    raw(&log.db.url, "DELETE FROM audit_log WHERE seq > 37").await.unwrap();
    raw(&log.db.url, &format!("UPDATE audit_head SET seq = 37, hash = '{}' WHERE id = 1", head37.hash)).await.unwrap();
    // The chain inside the database is whole again: only the checkpoints know.
    assert!(overblik::audit::read::verify(&log.store).await.unwrap().ok());
    let (code, out) = log.verify();
    assert_eq!(code, 2, "{out}");
    assert!(names(&out, 38, 40), "{out}");
}
crate::both_backends!(the_last_records_deleted_and_the_head_rewound_are_found);

async fn a_forged_record_is_named_by_the_next_checkpoint(backend: Backend) {
    let log = log(backend, 40, 10).await;
    // Someone with INSERT appends a record whose chain is right: it has no
    // MAC the service's key makes.
    let (seq, prev) = log.store.audit_head().await.unwrap();
    let forged = overblik::audit::chain((seq, &prev), Utc::now(), vec![entry(99)], None);
    let mut tx = log.store.begin().await.unwrap();
    tx.append_audit(forged.into_iter().map(|r| r.entry).collect(), Utc::now(), None).await.unwrap();
    tx.commit().await.unwrap();
    // The service goes on writing, and makes its next checkpoint.
    log.store.append_audit(vec![entry(100)], Utc::now(), Some(&log.key)).await.unwrap();
    let round = log.round().await;
    assert_eq!((round.made, round.unvouched.clone()), (Some(42), vec![41]));
    let (code, out) = log.verify();
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("record 41:") && out.contains("not written by the service"), "{out}");
}
crate::both_backends!(a_forged_record_is_named_by_the_next_checkpoint);

async fn a_history_rewritten_with_its_hashes_recomputed_is_found(backend: Backend) {
    let log = log(backend, 40, 10).await;
    log.unguard(backend).await;
    // Rewrite every record from 12 on, and every hash after it, and the head.
    let records = log.store.audit_records(&AuditFilter::default(), 0, 100).await.unwrap();
    let mut prev = records[10].hash.clone();
    for r in &records[11..] {
        let mut e = r.entry.clone();
        e.rows_returned += 1;
        let h = hash(&prev, &canonical(r.seq, &r.recorded_at, &e));
        raw(
            &log.db.url,
            &format!(
                "UPDATE audit_log SET rows_returned = {}, prev_hash = '{prev}', hash = '{h}' WHERE seq = {}",
                e.rows_returned, r.seq
            ),
        )
        .await
        .unwrap();
        prev = h;
    }
    raw(&log.db.url, &format!("UPDATE audit_head SET hash = '{prev}' WHERE id = 1")).await.unwrap();
    assert!(overblik::audit::read::verify(&log.store).await.unwrap().ok(), "the chain alone is fooled");
    let (code, out) = log.verify();
    assert_eq!(code, 2, "{out}");
    assert!(names(&out, 12, 20), "{out}");
}
crate::both_backends!(a_history_rewritten_with_its_hashes_recomputed_is_found);

fn check(proof: &overblik::audit::proof::Proof, key: &AuditKey) -> bool {
    proof.check(&key.public()).is_ok()
}

async fn proofs_verify_offline_and_fail_for_a_changed_record(backend: Backend) {
    let log = log(backend, 600, 100).await;
    let sizes = log.store.checkpoint_sizes_after(0).await.unwrap();
    assert_eq!(sizes, [100, 200, 300, 400, 500, 600]);
    // Inclusion of records here and there, against the newest and older checkpoints.
    for (seq, size) in [(1, 0), (257, 0), (512, 600), (600, 600), (99, 100), (350, 400)] {
        let proof = prove::inclusion_of(&log.store, seq, size).await.unwrap();
        assert!(check(&proof, &log.key), "record {seq} against {size}");
    }
    for (from, to) in [(100, 600), (300, 500), (500, 600), (600, 600)] {
        let proof = prove::consistency_of(&log.store, from, to).await.unwrap();
        assert!(check(&proof, &log.key), "{from} → {to}");
    }
    // The CLI's proof, checked by the CLI with only the public key.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_overblik"))
        .args(["audit", "prove", "--database-url", &log.db.url, "--seq", "300"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let file = log.dir.join("proof.json");
    std::fs::write(&file, &out.stdout).unwrap();
    let checked = std::process::Command::new(env!("CARGO_BIN_EXE_overblik"))
        .args(["audit", "check-proof", "--proof"])
        .arg(&file)
        .arg("--public-key")
        .arg(public_path(&log.key_file))
        .output()
        .unwrap();
    assert_eq!(checked.status.code(), Some(0), "{}", String::from_utf8_lossy(&checked.stdout));

    // A changed record makes proofs that don't hold: of itself, and of the
    // history it is part of.
    log.unguard(backend).await;
    raw(&log.db.url, "UPDATE audit_log SET reason = 'X' WHERE seq = 300").await.unwrap();
    let proof = prove::inclusion_of(&log.store, 300, 0).await.unwrap();
    assert!(!check(&proof, &log.key));
    // The checkpoints themselves still agree with each other: what they
    // signed was never changed, and a consistency proof is about them.
    let proof = prove::consistency_of(&log.store, 200, 600).await.unwrap();
    assert!(check(&proof, &log.key));
    // A proof edited to name another record's leaf fails too.
    let mut edited = prove::inclusion_of(&log.store, 5, 0).await.unwrap();
    if let overblik::audit::proof::Proof::Inclusion { seq, .. } = &mut edited {
        *seq = 6;
    }
    assert!(!check(&edited, &log.key));
}
crate::both_backends!(proofs_verify_offline_and_fail_for_a_changed_record);

/// Over gRPC: an officer gets the newest checkpoint and proofs that check
/// with the public key alone; a caseworker gets none of it.
async fn the_audit_service_serves_checkpoints_and_proofs(backend: Backend) {
    use overblik::api::ROLE_DPO;
    use overblik::proto as pb;
    use overblik::proto::audit_client::AuditClient;
    use overblik::proto::overblik_client::OverblikClient;

    use crate::serve::{authed, employee, list, load_facts, served};
    let s = served(backend).await;
    load_facts(&s.store).await;
    let caseworker = s.key.mint(&employee("55133018", &["Se sager"])).unwrap();
    let mut lookups = OverblikClient::new(s.channel.clone());
    for _ in 0..5 {
        lookups.list_cases(authed(list("sager", &[1]), Some(&caseworker))).await.unwrap();
    }
    let dpo = s.key.mint(&employee("55133018", &[ROLE_DPO])).unwrap();
    let mut audit = AuditClient::new(s.channel.clone());
    let err = audit.get_checkpoint(authed(pb::GetCheckpointRequest {}, Some(&dpo))).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "no checkpoint yet");
    let sink_dir = std::env::temp_dir().join(format!("overblik-grpc-cp-{}", Uuid::new_v4().simple()));
    let sink = Sink::open(&sink_dir).unwrap();
    let made = checkpointer::round(&s.store, &s.audit_key, &sink, 1000).await.unwrap().made.unwrap();
    let cp = audit.get_checkpoint(authed(pb::GetCheckpointRequest {}, Some(&dpo))).await.unwrap().into_inner();
    assert_eq!(cp.size, made);
    let signed = overblik::audit::checkpoint::SignedHead::decode(&cp.text).unwrap();
    assert!(s.audit_key.public().verifies(&signed));
    let proof = audit
        .prove_inclusion(authed(pb::ProveInclusionRequest { seq: 3, tree_size: 0 }, Some(&dpo)))
        .await
        .unwrap()
        .into_inner();
    let offline = overblik::audit::proof::Proof::Inclusion {
        seq: 3,
        canonical: Some(proof.canonical),
        leaf_hash: proof.leaf_hash,
        path: proof.path,
        checkpoint: proof.checkpoint.unwrap().text,
    };
    assert!(offline.check(&s.audit_key.public()).is_ok());
    let err = audit
        .prove_inclusion(authed(pb::ProveInclusionRequest { seq: 3, tree_size: 0 }, Some(&caseworker)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let _ = std::fs::remove_dir_all(&sink_dir);
}
crate::both_backends!(the_audit_service_serves_checkpoints_and_proofs);

/// Borgerblikket: a citizen sees when, which authority and which purpose
/// looked them up — allowed and refused, and as another's party — never who,
/// and never another citizen's.
async fn a_citizen_sees_the_lookups_on_them_and_nobody_elses(backend: Backend) {
    use overblik::proto as pb;
    use overblik::proto::borgerblikket_client::BorgerblikketClient;
    use overblik::proto::overblik_client::OverblikClient;

    use crate::serve::{authed, citizen_claims, employee, list, load_facts, served};
    let s = served(backend).await;
    load_facts(&s.store).await;
    let caseworker = s.key.mint(&employee("55133018", &["Se sager"])).unwrap();
    let mut lookups = OverblikClient::new(s.channel.clone());
    lookups.list_cases(authed(list("sager", &[2]), Some(&caseworker))).await.unwrap();
    lookups.list_cases(authed(list("sager", &[1, 2]), Some(&caseworker))).await.unwrap_err();
    let mut b = BorgerblikketClient::new(s.channel.clone());
    let x = s.key.mint(&citizen_claims("0101801234")).unwrap();
    let mine = |size, token: &str| pb::MyListRequest { page_size: size, page_token: token.into() };
    let page = b.list_lookups_on_me(authed(mine(1, ""), Some(&x))).await.unwrap().into_inner();
    assert_eq!(page.items.len(), 1, "one per page");
    let refused = &page.items[0];
    assert_eq!(
        (refused.shown, refused.data_area.as_str(), refused.authority_name.as_str()),
        (false, "sager", "Aarhus Kommune")
    );
    let rest = b.list_lookups_on_me(authed(mine(10, &page.next_page_token), Some(&x))).await.unwrap().into_inner();
    assert_eq!(rest.items.len(), 1, "newest first, then the one before");
    let allowed = &rest.items[0];
    assert_eq!(
        (allowed.shown, allowed.purpose_id, allowed.purpose_name.as_str(), allowed.as_party),
        (true, 2, "Helhedsorienteret sagsbehandling", false)
    );
    assert!(rest.next_page_token.is_empty());
    let text = format!("{page:?}{rest:?}");
    assert!(!text.contains("user@") && !text.contains("Mette Hansen"), "never who: {text}");
    // Y was shown as the primary party of a case in X's lookup.
    let y = s.key.mint(&citizen_claims("0202802345")).unwrap();
    let ys = b.list_lookups_on_me(authed(mine(0, ""), Some(&y))).await.unwrap().into_inner();
    assert_eq!(ys.items.len(), 1);
    assert!(ys.items[0].as_party && ys.items[0].shown);
    // A caseworker can't read a citizen's access log; reading it is recorded.
    let err = b.list_lookups_on_me(authed(mine(0, ""), Some(&caseworker))).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let records = s.store.audit_records(&AuditFilter::default(), 0, 1000).await.unwrap();
    let reads = records.iter().filter(|r| r.entry.kind == "citizen_access_log" && r.entry.decision == "allow").count();
    assert_eq!(reads, 3);
}
crate::both_backends!(a_citizen_sees_the_lookups_on_them_and_nobody_elses);
