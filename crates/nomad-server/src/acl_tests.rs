//! ACL and namespace endpoint tests: bootstrap and its reset file, tokens, policies,
//! namespaces, token resolution and capability checks.

use std::path::PathBuf;

use nomad_acl::{capability, AclPolicy, AclToken, CLIENT_TOKEN, MANAGEMENT_TOKEN};
use nomad_state::Namespace;

use super::*;

fn acl_server(data_dir: Option<PathBuf>) -> Arc<Server> {
    Server::new(ServerConfig {
        acl_enabled: true,
        data_dir,
        ..Default::default()
    })
}

fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("nomad-server-acl-{}", new_id()));
    std::fs::create_dir_all(d.join("server")).expect("temp dir");
    d
}

fn client_token(name: &str, policies: &[&str]) -> AclToken {
    AclToken {
        name: name.into(),
        token_type: CLIENT_TOKEN.into(),
        policies: Some(policies.iter().map(|p| p.to_string()).collect()),
        ..Default::default()
    }
}

fn policy(name: &str, rules: &str) -> AclPolicy {
    AclPolicy {
        name: name.into(),
        rules: rules.into(),
        ..Default::default()
    }
}

fn ns(name: &str) -> Namespace {
    Namespace {
        name: name.into(),
        ..Default::default()
    }
}

fn job_in(namespace: &str, id: &str) -> JobRegisterRequest {
    JobRegisterRequest {
        job: Some(Job {
            id: id.into(),
            namespace: namespace.into(),
            job_type: JOB_TYPE_SERVICE.into(),
            datacenters: Some(vec!["dc1".into()]),
            task_groups: vec![TaskGroup {
                name: "web".into(),
                count: Some(1),
                tasks: vec![Task {
                    name: "t".into(),
                    driver: "raw_exec".into(),
                    config: Some(serde_json::Map::from_iter([(
                        "command".to_string(),
                        serde_json::json!("/bin/true"),
                    )])),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A bootstrapped server and its management caller.
async fn bootstrapped() -> (Arc<Server>, ResolvedAcl) {
    let s = acl_server(None);
    let boot = s.acl_bootstrap(None).await.expect("bootstrap");
    let root = s
        .resolve_token(Some(&boot.secret_id))
        .expect("root resolves");
    (s, root)
}

fn disabled_msg<T: std::fmt::Debug>(r: Result<T, ServerError>) {
    assert_eq!(
        r.unwrap_err(),
        ServerError::BadRequest("ACL support disabled".into())
    );
}

#[tokio::test]
async fn acls_disabled() {
    let s = Server::new(ServerConfig::default());
    let r = s.resolve_token(Some("whatever")).unwrap();
    assert!(r.is_management() && !r.acl_enabled && r.token.is_none());
    let q = QueryOptions::default();
    disabled_msg(s.acl_bootstrap(None).await);
    disabled_msg(s.acl_token_create(client_token("x", &["p"]), &r).await);
    disabled_msg(s.acl_token_list("", &r, &q).await);
    disabled_msg(s.acl_token_get("a", &r, &q).await);
    disabled_msg(s.acl_token_self(Some("x")));
    disabled_msg(s.acl_token_delete("a", &r).await);
    disabled_msg(s.acl_policy_upsert("p", policy("p", ""), &r).await);
    disabled_msg(s.acl_policy_get("p", &r, &q).await);
    disabled_msg(s.acl_policy_list("", &r, &q).await);
    disabled_msg(s.acl_policy_delete("p", &r).await);
    // Namespaces work without ACLs.
    s.namespace_upsert(ns("prod"), &r).await.unwrap();
    let (list, _) = s.namespace_list("", &r, &q).await.unwrap();
    assert_eq!(
        list.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        ["default", "prod"]
    );
}

#[tokio::test]
async fn bootstrap_once_then_reset_file() {
    let dir = temp_dir();
    let s = acl_server(Some(dir.clone()));
    let boot = s.acl_bootstrap(None).await.unwrap();
    assert_eq!(boot.name, "Bootstrap Token");
    assert_eq!(boot.token_type, MANAGEMENT_TOKEN);
    assert!(boot.global);
    assert_eq!(boot.secret_id.len(), 36);
    assert!(!boot.hash.is_empty() && !boot.create_time.is_empty());
    let first = boot.create_index;
    assert_eq!(boot.modify_index, first);

    assert_eq!(
        s.acl_bootstrap(None).await.unwrap_err(),
        ServerError::BadRequest(format!("ACL bootstrap already done (reset index: {first})"))
    );
    let reset = dir.join("server").join(ACL_BOOTSTRAP_RESET_FILE);
    std::fs::write(&reset, format!("{first}\n")).unwrap();
    let again = s.acl_bootstrap(None).await.unwrap();
    assert_ne!(again.accessor_id, boot.accessor_id);
    assert_eq!(
        s.state().snapshot().acl_bootstrap_index(),
        Some(again.create_index)
    );
    // The file now names a stale index.
    assert_eq!(
        s.acl_bootstrap(None).await.unwrap_err(),
        ServerError::BadRequest(format!(
            "Invalid bootstrap reset index (specified {first}, reset index: {})",
            again.create_index
        ))
    );
    // Both management tokens still work.
    assert!(s
        .resolve_token(Some(&boot.secret_id))
        .unwrap()
        .is_management());
    std::fs::remove_dir_all(&dir).unwrap();

    // A caller-chosen bootstrap secret must be a UUID.
    let s = acl_server(None);
    assert_eq!(
        s.acl_bootstrap(Some("not-a-uuid".into()))
            .await
            .unwrap_err(),
        ServerError::BadRequest("invalid acl token".into())
    );
    let chosen = "2b778dd9-f5f1-6f29-b4b4-9a5fa948757a";
    let t = s.acl_bootstrap(Some(chosen.into())).await.unwrap();
    assert_eq!(t.secret_id, chosen);
}

#[tokio::test]
async fn token_create_get_list_self_delete() {
    let (s, root) = bootstrapped().await;
    let q = QueryOptions::default();
    s.acl_policy_upsert(
        "readonly",
        policy("readonly", r#"namespace "*" { policy = "read" }"#),
        &root,
    )
    .await
    .unwrap();
    let mut req = client_token("ci", &["readonly"]);
    req.expiration_ttl = 3600 * 1_000_000_000;
    let created = s.acl_token_create(req, &root).await.unwrap();
    assert_eq!(created.accessor_id.len(), 36);
    assert_eq!(created.secret_id.len(), 36);
    assert_eq!(created.token_type, CLIENT_TOKEN);
    assert!(
        created.expiration_time.is_some(),
        "TTL gives an expiration time"
    );
    assert!(!created.hash.is_empty());

    let caller = s.resolve_token(Some(&created.secret_id)).unwrap();
    assert!(!caller.is_management());
    // A token may read itself, not others; management reads everything.
    let (own, idx) = s
        .acl_token_get(&created.accessor_id, &caller, &q)
        .await
        .unwrap();
    assert_eq!(
        (own.secret_id.as_str(), idx),
        (created.secret_id.as_str(), created.modify_index)
    );
    let root_accessor = root.token.as_ref().unwrap().accessor_id.clone();
    assert_eq!(
        s.acl_token_get(&root_accessor, &caller, &q)
            .await
            .unwrap_err(),
        ServerError::PermissionDenied
    );
    assert!(s
        .acl_token_get(&created.accessor_id, &root, &q)
        .await
        .is_ok());
    assert_eq!(
        s.acl_token_get("no-such", &root, &q).await.unwrap_err(),
        ServerError::NotFound("ACL token not found".into())
    );
    assert_eq!(
        s.acl_token_list("", &caller, &q).await.unwrap_err(),
        ServerError::PermissionDenied
    );
    let (list, list_idx) = s.acl_token_list("", &root, &q).await.unwrap();
    assert_eq!(
        list.iter()
            .map(|t| t.accessor_id.as_str())
            .collect::<Vec<_>>(),
        [root_accessor.as_str(), created.accessor_id.as_str()]
    );
    assert_eq!(list_idx, created.modify_index);

    let (me, _) = s.acl_token_self(Some(&created.secret_id)).unwrap();
    assert_eq!(me.accessor_id, created.accessor_id);
    assert_eq!(
        s.acl_token_self(None).unwrap_err(),
        ServerError::NotFound("ACL token not found".into())
    );
    assert_eq!(
        s.acl_token_self(Some("unknown")).unwrap_err(),
        ServerError::NotFound("ACL token not found".into())
    );

    // Client tokens cannot manage tokens.
    assert_eq!(
        s.acl_token_create(client_token("x", &["readonly"]), &caller)
            .await
            .unwrap_err(),
        ServerError::PermissionDenied
    );
    // Validation errors are Nomad's multierror, per token.
    assert_eq!(
        s.acl_token_create(client_token("x", &[]), &root)
            .await
            .unwrap_err(),
        ServerError::BadRequest(
            "token 0 invalid: 1 error occurred:\n\t* client token missing policies or roles\n\n"
                .into()
        )
    );

    // Update: new name and policies; secret and expiry stay.
    let mut upd = created.clone();
    upd.name = "renamed".into();
    upd.secret_id = String::new();
    upd.expiration_time = None;
    assert_eq!(
        s.acl_token_update("other", upd.clone(), &root)
            .await
            .unwrap_err(),
        ServerError::BadRequest("Token Accessor ID does not match request path".into())
    );
    let updated = s
        .acl_token_update(&created.accessor_id, upd, &root)
        .await
        .unwrap();
    assert_eq!(updated.name, "renamed");
    assert_eq!(updated.secret_id, created.secret_id);
    assert_eq!(updated.expiration_time, created.expiration_time);
    assert_eq!(updated.create_index, created.create_index);
    assert!(updated.modify_index > created.modify_index);
    assert_ne!(updated.hash, created.hash);
    let mut missing = client_token("ghost", &["readonly"]);
    missing.accessor_id = "ghost".into();
    assert_eq!(
        s.acl_token_create(missing, &root).await.unwrap_err(),
        ServerError::BadRequest("cannot find token ghost".into())
    );

    s.acl_token_delete(&created.accessor_id, &root)
        .await
        .unwrap();
    assert_eq!(
        s.acl_token_delete(&created.accessor_id, &root)
            .await
            .unwrap_err(),
        ServerError::BadRequest(format!(
            "Cannot delete nonexistent tokens: {}",
            created.accessor_id
        ))
    );
    assert_eq!(
        s.resolve_token(Some(&created.secret_id)).unwrap_err(),
        ServerError::Internal("ACL token not found".into())
    );
}

#[tokio::test]
async fn expired_token_is_rejected() {
    let (s, _) = bootstrapped().await;
    let mut t = client_token("old", &["readonly"]);
    t.canonicalize(new_id(), new_id(), 1_000_000_000);
    t.expiration_time = Some(nomad_acl::timefmt::format_rfc3339(2_000_000_000));
    t.set_hash();
    let secret = t.secret_id.clone();
    s.apply(Command::AclTokenUpsert { tokens: vec![t] })
        .await
        .unwrap();
    assert_eq!(
        s.resolve_token(Some(&secret)).unwrap_err(),
        ServerError::Internal("ACL token expired".into())
    );
}

#[tokio::test]
async fn policies_upsert_get_list_delete() {
    let (s, root) = bootstrapped().await;
    let q = QueryOptions::default();
    let err = s
        .acl_policy_upsert(
            "bad",
            policy("bad", "namespace \"x\" {\n  policy = \n}"),
            &root,
        )
        .await
        .unwrap_err();
    let ServerError::BadRequest(msg) = err else {
        panic!("want 400, got {err:?}");
    };
    assert!(
        msg.starts_with(
            "policy 0 invalid: 1 error occurred:\n\t* failed to parse rules: Failed to parse ACL Policy: At 2:12: "
        ),
        "{msg}"
    );
    assert_eq!(
        s.acl_policy_upsert("a", policy("b", ""), &root)
            .await
            .unwrap_err(),
        ServerError::BadRequest("ACL policy name does not match request path".into())
    );
    let idx = s
        .acl_policy_upsert(
            "ops",
            policy("ops", r#"namespace "default" { policy = "write" }"#),
            &root,
        )
        .await
        .unwrap();
    s.acl_policy_upsert(
        "other",
        policy("other", r#"node { policy = "read" }"#),
        &root,
    )
    .await
    .unwrap();
    let (p, pidx) = s.acl_policy_get("ops", &root, &q).await.unwrap();
    assert_eq!((p.create_index, pidx), (idx, idx));
    assert!(p.rules_json.is_some(), "RulesJSON filled on read");
    assert!(!p.hash.is_empty());
    assert_eq!(
        s.acl_policy_get("nope", &root, &q).await.unwrap_err(),
        ServerError::NotFound("ACL policy not found".into())
    );

    // A client token sees its own policies only.
    let t = s
        .acl_token_create(client_token("ops", &["ops"]), &root)
        .await
        .unwrap();
    let caller = s.resolve_token(Some(&t.secret_id)).unwrap();
    let (mine, _) = s.acl_policy_list("", &caller, &q).await.unwrap();
    assert_eq!(
        mine.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["ops"]
    );
    let (all, _) = s.acl_policy_list("", &root, &q).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(s.acl_policy_get("ops", &caller, &q).await.is_ok());
    assert_eq!(
        s.acl_policy_get("other", &caller, &q).await.unwrap_err(),
        ServerError::PermissionDenied
    );
    assert_eq!(
        s.acl_policy_upsert("x", policy("x", ""), &caller)
            .await
            .unwrap_err(),
        ServerError::PermissionDenied
    );

    s.acl_policy_delete("ops", &root).await.unwrap();
    // Deleting again (or an unknown policy) is not an error, as in Nomad.
    s.acl_policy_delete("ops", &root).await.unwrap();
    // The token's ACL lost its only policy.
    let caller = s.resolve_token(Some(&t.secret_id)).unwrap();
    assert!(!caller
        .acl
        .allow_namespace_operation("default", capability::SUBMIT_JOB));
}

#[tokio::test]
async fn resolve_token_and_capabilities() {
    let (s, root) = bootstrapped().await;
    assert!(root.is_management() && root.acl_enabled);
    assert!(root
        .acl
        .allow_namespace_operation("anything", capability::SUBMIT_JOB));

    // Anonymous without an `anonymous` policy: nothing.
    let anon = s.resolve_token(None).unwrap();
    assert!(anon.is_anonymous() && !anon.is_management());
    assert!(!anon
        .acl
        .allow_namespace_operation("default", capability::READ_JOB));
    assert!(s.resolve_token(Some("  ")).unwrap().is_anonymous());
    // With one: what it grants.
    s.acl_policy_upsert(
        "anonymous",
        policy("anonymous", r#"namespace "default" { policy = "read" }"#),
        &root,
    )
    .await
    .unwrap();
    let anon = s.resolve_token(None).unwrap();
    assert!(anon
        .acl
        .allow_namespace_operation("default", capability::READ_JOB));
    assert!(!anon
        .acl
        .allow_namespace_operation("default", capability::SUBMIT_JOB));

    assert_eq!(
        s.resolve_token(Some("3f1b6a0e-0000-0000-0000-000000000000"))
            .unwrap_err(),
        ServerError::Internal("ACL token not found".into())
    );

    s.acl_policy_upsert(
        "prod-write",
        policy("prod-write", r#"namespace "prod" { policy = "write" }"#),
        &root,
    )
    .await
    .unwrap();
    let t = s
        .acl_token_create(
            client_token("dev", &["prod-write", "missing-policy"]),
            &root,
        )
        .await
        .unwrap();
    let dev = s.resolve_token(Some(&t.secret_id)).unwrap();
    assert!(dev
        .acl
        .allow_namespace_operation("prod", capability::SUBMIT_JOB));
    assert!(!dev
        .acl
        .allow_namespace_operation("default", capability::READ_JOB));
    assert!(!dev.acl.allow_node_read());
    // Same versions: the compiled ACL comes from the cache.
    let again = s.resolve_token(Some(&t.secret_id)).unwrap();
    assert!(Arc::ptr_eq(&dev.acl, &again.acl));
    // A changed policy is picked up.
    s.acl_policy_upsert(
        "prod-write",
        policy("prod-write", r#"namespace "prod" { policy = "read" }"#),
        &root,
    )
    .await
    .unwrap();
    let dev = s.resolve_token(Some(&t.secret_id)).unwrap();
    assert!(!dev
        .acl
        .allow_namespace_operation("prod", capability::SUBMIT_JOB));
    assert!(dev
        .acl
        .allow_namespace_operation("prod", capability::READ_JOB));
}

#[tokio::test]
async fn namespaces_create_list_delete() {
    let (s, root) = bootstrapped().await;
    let q = QueryOptions::default();
    let idx = s.namespace_upsert(ns("prod"), &root).await.unwrap();
    let (prod, pidx) = s.namespace_get("prod", &root, &q).await.unwrap();
    assert_eq!(
        (prod.create_index, prod.modify_index, pidx),
        (idx, idx, idx)
    );
    assert!(!prod.hash.is_empty());
    assert_eq!(
        s.namespace_get("nope", &root, &q).await.unwrap_err(),
        ServerError::NotFound("Namespace not found".into())
    );
    let err = s.namespace_upsert(ns("bad name"), &root).await.unwrap_err();
    assert_eq!(
        err,
        ServerError::Internal(
            "Invalid namespace \"bad name\": 1 error occurred:\n\t* invalid name \"bad name\". Must match regex ^[a-zA-Z0-9-]{1,128}$\n\n"
                .into()
        )
    );

    // Reads are filtered by the caller's namespace rules; writes need management.
    s.acl_policy_upsert(
        "prod-read",
        policy("prod-read", r#"namespace "prod" { policy = "read" }"#),
        &root,
    )
    .await
    .unwrap();
    let t = s
        .acl_token_create(client_token("r", &["prod-read"]), &root)
        .await
        .unwrap();
    let reader = s.resolve_token(Some(&t.secret_id)).unwrap();
    let (seen, _) = s.namespace_list("", &reader, &q).await.unwrap();
    assert_eq!(
        seen.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        ["prod"]
    );
    assert_eq!(
        s.namespace_get("default", &reader, &q).await.unwrap_err(),
        ServerError::PermissionDenied
    );
    assert_eq!(
        s.namespace_upsert(ns("x"), &reader).await.unwrap_err(),
        ServerError::PermissionDenied
    );
    assert_eq!(
        s.namespace_delete("prod", &reader).await.unwrap_err(),
        ServerError::PermissionDenied
    );

    // A namespace with a live job cannot go.
    s.job_register(job_in("prod", "web")).await.unwrap();
    assert_eq!(
        s.namespace_delete("prod", &root).await.unwrap_err(),
        ServerError::Internal(
            "1 error occurred:\n\t* namespace \"prod\" has non-terminal jobs in regions: [global]\n\n"
                .into()
        )
    );
    s.job_deregister("prod", "web", true).await.unwrap();
    s.namespace_delete("prod", &root).await.unwrap();
    assert!(s.state().snapshot().namespace("prod").is_none());
    assert_eq!(
        s.namespace_delete("prod", &root).await.unwrap_err(),
        ServerError::Internal("namespace not found".into())
    );
    assert_eq!(
        s.namespace_delete("default", &root).await.unwrap_err(),
        ServerError::Internal("can not delete default namespace".into())
    );
}

#[tokio::test]
async fn job_in_a_nonexistent_namespace_is_refused() {
    let s = Server::new(ServerConfig::default());
    assert_eq!(
        s.job_register(job_in("nope", "web")).await.unwrap_err(),
        ServerError::Internal(
            "1 error occurred:\n\t* job \"web\" is in nonexistent namespace \"nope\"\n\n".into()
        )
    );
    assert!(s.state().snapshot().jobs(None, "").is_empty());
    s.namespace_upsert(ns("nope"), &ResolvedAcl::disabled())
        .await
        .unwrap();
    s.job_register(job_in("nope", "web")).await.unwrap();
    assert!(s.state().snapshot().job("nope", "web").is_some());
}
