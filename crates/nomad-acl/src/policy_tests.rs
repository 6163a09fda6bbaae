//! Table-driven tests of policy parsing (HCL and JSON forms).

use crate::capability::expand_namespace_policy;
use crate::{parse_policy, parse_policy_lenient, Level, PolicyError};

fn caps(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn with_expansion(explicit: &[&str], policy: &str) -> Vec<String> {
    let mut v = caps(explicit);
    v.extend(
        expand_namespace_policy(policy)
            .iter()
            .map(|s| s.to_string()),
    );
    // Implied capabilities are appended, duplicates included, as Nomad
    // stores them (write's host-volume-create implies host-volume-read).
    let implied: Vec<String> = v
        .iter()
        .flat_map(|c| crate::capability::implied_capabilities(c).iter())
        .map(|s| s.to_string())
        .collect();
    v.extend(implied);
    v
}

#[test]
fn parses_namespace_rules() {
    // (rules, [(name, policy, capabilities)])
    type Rule<'a> = (&'a str, Option<&'a str>, Vec<String>);
    let cases: Vec<(&str, Vec<Rule>)> = vec![
        (
            r#"namespace "default" { policy = "read" }"#,
            vec![("default", Some("read"), with_expansion(&[], "read"))],
        ),
        (
            r#"namespace "*" { capabilities = ["list-jobs"] }"#,
            vec![("*", None, caps(&["list-jobs"]))],
        ),
        (
            r#"
            # comment
            namespace "prod-*" {
              policy       = "write"
              capabilities = ["alloc-node-exec"] // trailing comment
            }
            namespace "secret" { policy = "deny" }
            "#,
            vec![
                (
                    "prod-*",
                    Some("write"),
                    with_expansion(&["alloc-node-exec"], "write"),
                ),
                ("secret", Some("deny"), caps(&["deny"])),
            ],
        ),
        (
            r#"namespace "ops" { policy = "scale" capabilities = ["run-action"] }"#,
            vec![(
                "ops",
                Some("scale"),
                with_expansion(&["run-action"], "scale"),
            )],
        ),
        (
            // implied host volume capabilities
            r#"namespace "hv" { capabilities = ["host-volume-write"] }"#,
            vec![(
                "hv",
                None,
                caps(&[
                    "host-volume-write",
                    "host-volume-register",
                    "host-volume-create",
                    "host-volume-delete",
                    "host-volume-read",
                ]),
            )],
        ),
        (
            // JSON form, labels as object keys
            r#"{"namespace": {"default": {"policy": "read"}, "dev": {"capabilities": ["submit-job"]}}}"#,
            vec![
                ("default", Some("read"), with_expansion(&[], "read")),
                ("dev", None, caps(&["submit-job"])),
            ],
        ),
        (
            // JSON form, list of blocks
            r#"{"namespace": [{"default": {"policy": "write"}}, {"x-*": {"policy": "deny"}}]}"#,
            vec![
                ("default", Some("write"), with_expansion(&[], "write")),
                ("x-*", Some("deny"), caps(&["deny"])),
            ],
        ),
    ];
    for (rules, want) in cases {
        let p = parse_policy(rules).unwrap_or_else(|e| panic!("{rules}: {e}"));
        let got: Vec<Rule> = p
            .namespaces
            .iter()
            .map(|n| (n.name.as_str(), n.policy.as_deref(), n.capabilities.clone()))
            .collect();
        assert_eq!(got, want, "{rules}");
    }
}

#[test]
fn parses_scopes() {
    let p = parse_policy(
        r#"
        node     { policy = "read" }
        agent    { policy = "write" }
        operator { policy = "deny" }
        quota    { policy = "read" }
        plugin   { policy = "list" }
        node_pool "prod_*" { policy = "write" }
        host_volume "data" { capabilities = ["mount-readonly"] }
        "#,
    )
    .expect("valid");
    assert_eq!(p.node, Some(Level::Read));
    assert_eq!(p.agent, Some(Level::Write));
    assert_eq!(p.operator, Some(Level::Deny));
    assert_eq!(p.quota, Some(Level::Read));
    assert_eq!(p.plugin, Some(Level::List));
    assert_eq!(p.node_pools[0].name, "prod_*");
    assert_eq!(
        p.node_pools[0].capabilities,
        caps(&["delete", "read", "write"])
    );
    assert_eq!(p.host_volumes[0].capabilities, caps(&["mount-readonly"]));

    let json = parse_policy(
        r#"{"node": {"policy": "write"}, "agent": {"policy": "read"}, "host_volume": {"v": {"policy": "write"}}}"#,
    )
    .expect("valid json");
    assert_eq!(json.node, Some(Level::Write));
    assert_eq!(json.agent, Some(Level::Read));
    assert_eq!(
        json.host_volumes[0].capabilities,
        caps(&["mount-readonly", "mount-readwrite"])
    );

    // Attribute-with-object form (HCL1 accepts both).
    let attr = parse_policy(r#"node = { policy = "read" }"#).expect("attr form");
    assert_eq!(attr.node, Some(Level::Read));
}

#[test]
fn parses_variables() {
    let p = parse_policy(
        r#"
        namespace "default" {
          policy = "read"
          variables {
            path "project/*" { capabilities = ["read"] }
            path "secret/*" { capabilities = ["deny", "read"] }
            path "rw" { capabilities = ["write", "list", "destroy"] }
          }
        }
        "#,
    )
    .expect("valid");
    let paths = p.namespaces[0].variable_paths();
    assert_eq!(
        paths,
        vec![
            ("project/*".to_string(), caps(&["read", "list"])),
            ("secret/*".to_string(), caps(&["deny"])),
            ("rw".to_string(), caps(&["write", "list", "destroy"])),
        ]
    );
    assert_eq!(
        p.namespaces[0].variables.as_ref().expect("vars")["Paths"][0]["PathSpec"],
        "project/*"
    );
    let json = parse_policy(
        r#"{"namespace": {"dev": {"variables": {"path": {"a/*": {"capabilities": ["read"]}}}}}}"#,
    )
    .expect("json vars");
    assert_eq!(
        json.namespaces[0].variable_paths(),
        vec![("a/*".to_string(), caps(&["read", "list"]))]
    );
}

#[test]
fn rejects_invalid_rules() {
    // (rules, expected message prefix)
    let cases = [
        (
            r#"namespace "default" { capabilities = ["deny", "foo"] }"#,
            r#"Invalid namespace capability 'foo': &acl.NamespacePolicy{Name:"default", Policy:"", Capabilities:[]string{"deny", "foo"}, Variables:(*acl.VariablesPolicy)(nil)}"#,
        ),
        (
            r#"namespace "default" { policy = "root" }"#,
            r#"Invalid namespace policy: &acl.NamespacePolicy{Name:"default", Policy:"root""#,
        ),
        (
            r#"namespace "has a space" { policy = "read" }"#,
            "Invalid namespace name: ",
        ),
        (
            r#"namespace "" { policy = "read" }"#,
            "Invalid namespace name: ",
        ),
        (
            r#"namespace { policy = "read" }"#,
            "Invalid namespace name: ",
        ),
        (
            r#"agent { policy = "foo" }"#,
            r#"Invalid agent policy: &acl.AgentPolicy{Policy:"foo"}"#,
        ),
        (r#"node { policy = "list" }"#, "Invalid node policy: "),
        (
            r#"node { }"#,
            r#"Invalid node policy: &acl.NodePolicy{Policy:""}"#,
        ),
        (
            r#"operator { policy = "foo" }"#,
            "Invalid operator policy: ",
        ),
        (
            r#"operator { capabilities = ["bogus"] }"#,
            "Invalid operator capability 'bogus'",
        ),
        (r#"quota { policy = "foo" }"#, "Invalid quota policy: "),
        (r#"plugin { policy = "scale" }"#, "Invalid plugin policy: "),
        (
            r#"node_pool "a b" { policy = "read" }"#,
            "Invalid node pool name 'a b'",
        ),
        (
            r#"node_pool "p" { policy = "all" }"#,
            "Invalid node pool policy 'all' for 'p'",
        ),
        (
            r#"node_pool "p" { capabilities = ["exec"] }"#,
            "Invalid node pool capability 'exec' for 'p'",
        ),
        (
            r#"host_volume "v" { capabilities = ["mount"] }"#,
            "Invalid host volume capability 'mount': ",
        ),
        (
            r#"namespace "d" { variables { } }"#,
            "Invalid variable policy: no variable paths in namespace d",
        ),
        (
            r#"namespace "d" { variables { path "/abs" { capabilities = ["read"] } } }"#,
            r#"Invalid variable path "/abs" in namespace d: cannot start with a leading '/'"#,
        ),
        (
            r#"namespace "d" { variables { path "x" { capabilities = ["exec"] } } }"#,
            "Invalid variable capability 'exec' in namespace d",
        ),
        (
            r#"{"Name": "my-policy", "Rules": "anything"}"#,
            "Invalid policy: ",
        ),
        (r#"bogus { policy = "read" }"#, "Invalid policy: "),
        (
            r#"
            namespace "default" { policy = "read" }
            bogus { policy = "read" }
            node { policy = "read" }
            node { policy = "write" }
            anotherbogus = "x"
            "#,
            "Invalid or duplicate policy keys: anotherbogus, bogus, node",
        ),
        (
            r#"namespace "d" { capabilities = "list-jobs" policy = 3 }"#,
            "Failed to parse ACL Policy: namespace \"d\": policy must be a string",
        ),
    ];
    for (rules, want) in cases {
        let err = parse_policy(rules).expect_err(rules).to_string();
        assert!(err.starts_with(want), "{rules}\n got: {err}\nwant: {want}");
    }
}

#[test]
fn hcl1_one_line_forms() {
    let p = parse_policy(
        r#"namespace "d" { policy = "read" capabilities = ["alloc-exec"] } node { policy = "read" } agent { policy = "read" }"#,
    )
    .expect("one-liner");
    assert_eq!(p.namespaces[0].capabilities[0], "alloc-exec");
    assert_eq!(p.node, Some(Level::Read));
    assert_eq!(p.agent, Some(Level::Read));
    let p = parse_policy(
        r#"namespace "d" { variables { path "a/*" { capabilities = ["read",] } } }, namespace e { policy = "deny" }"#,
    )
    .expect("nested one-liner");
    assert_eq!(p.namespaces[0].variable_paths()[0].0, "a/*");
    assert_eq!(p.namespaces[1].name, "e");
    // Still a syntax error (reported with HCL2's position) when neither
    // grammar accepts it.
    assert!(matches!(
        parse_policy(r#"namespace "d" { policy = "read" "#),
        Err(PolicyError::Syntax { .. })
    ));
}

#[test]
fn lenient_ignores_unknown_keys() {
    let rules = r#"
        namespace "default" { policy = "read" }
        bogus { policy = "read" }
    "#;
    assert!(parse_policy(rules).is_err());
    let p = parse_policy_lenient(rules).expect("lenient");
    assert_eq!(p.namespaces.len(), 1);
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let hcl = "namespace \"default\" {\n  policy = \"read\"\n  capabilities = [\"list-jobs\"\n}\n";
    match parse_policy(hcl) {
        Err(PolicyError::Syntax { line, column, .. }) => {
            assert_eq!(line, 4, "line");
            assert!(column >= 1);
        }
        other => panic!("want syntax error, got {other:?}"),
    }
    let msg = parse_policy("namespace \"x\" {\n  policy = \n}")
        .expect_err("bad")
        .to_string();
    assert!(
        msg.starts_with("Failed to parse ACL Policy: At 2:12: "),
        "{msg}"
    );

    let json = "{\n  \"namespace\": {\n    \"default\": {\"policy\": \"read\",}\n  }\n}";
    match parse_policy(json) {
        Err(PolicyError::Syntax {
            line,
            column,
            message,
        }) => {
            assert_eq!(line, 3);
            assert!(column > 1);
            assert!(!message.contains(" at line "), "{message}");
        }
        other => panic!("want syntax error, got {other:?}"),
    }
}

#[test]
fn empty_rules_are_an_empty_policy() {
    let p = parse_policy("").expect("empty");
    assert!(p.namespaces.is_empty() && p.node.is_none());
    // Whitespace only is non-empty text that grants nothing.
    assert!(parse_policy("  \n").is_err());
}

#[test]
fn rules_json_roundtrip() {
    let p = parse_policy(
        r#"namespace "default" { policy = "read" }
           node { policy = "write" }
           node_pool "all" { policy = "read" }"#,
    )
    .expect("valid");
    let v = serde_json::to_value(&p).expect("serialize");
    assert_eq!(v["Namespaces"][0]["Name"], "default");
    assert_eq!(v["Namespaces"][0]["Variables"], serde_json::Value::Null);
    assert_eq!(v["Node"]["Policy"], "write");
    assert_eq!(v["Agent"], serde_json::Value::Null);
    assert_eq!(v["HostVolumes"], serde_json::Value::Null);
    assert_eq!(v["NodePools"][0]["Capabilities"][0], "read");
    let back: crate::Policy = serde_json::from_value(v).expect("deserialize");
    assert_eq!(back, p);
}

#[test]
fn odd_input_never_panics() {
    let deep = format!("a = {}{}", "[".repeat(5000), "]".repeat(5000));
    let deep_blocks = format!("{}{}", "a { ".repeat(5000), "}".repeat(5000));
    let inputs = [
        "\u{0}",
        "{",
        "}",
        "[1,2]",
        "\"unterminated",
        "namespace \"é\" { policy = \"read\" }",
        "namespace \"d\" { policy = \"${var.x}\" }",
        "namespace \"d\" { capabilities = [1, true] }",
        "namespace \"d\" { policy = <<EOF\nread\nEOF\n }",
        "/* unterminated comment",
        "{\"namespace\": \"x\"}",
        "{\"namespace\": {\"d\": {\"capabilities\": \"list-jobs\"}}}",
        deep.as_str(),
        deep_blocks.as_str(),
    ];
    for input in inputs {
        let _ = parse_policy(input);
        let _ = parse_policy_lenient(input);
    }
}
