//! Go text/template behaviour the renderer must match.

use std::collections::BTreeMap;

use super::*;

struct Env;

impl Funcs for Env {
    fn call(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        match name {
            "env" => Some(Ok(Value::Str(match args.first() {
                Some(Value::Str(k)) if k == "NOMAD_TASK_NAME" => "web".into(),
                _ => String::new(),
            }))),
            "creds" => Some(Ok(Value::from_strings(&BTreeMap::from([
                ("user".to_string(), "app".to_string()),
                ("pass".to_string(), "s3cret".to_string()),
            ])))),
            "toUpper" => Some(Ok(Value::Str(args[0].to_string().to_uppercase()))),
            _ => None,
        }
    }
}

fn r(src: &str) -> String {
    render(src, &Value::Nil, &Env).unwrap_or_else(|e| format!("ERR {e}"))
}

fn data() -> Value {
    Value::from(&serde_json::json!({
        "Name": "web", "Count": 3, "Tags": ["a", "b"], "Meta": {"x": "1", "y": "2"},
        "Empty": [], "On": true, "Nested": {"Deep": {"Leaf": "ok"}}
    }))
}

#[test]
fn text_actions_and_functions() {
    assert_eq!(r("plain"), "plain");
    assert_eq!(r(r#"task={{ env "NOMAD_TASK_NAME" }}"#), "task=web");
    assert_eq!(r(r#"{{ env "NOMAD_TASK_NAME" | toUpper }}"#), "WEB");
    assert_eq!(r(r#"{{ "a" | printf "%s-%s" "b" }}"#), "b-a");
    assert_eq!(
        r(r#"{{ printf "%d%% %q %.2f" 5 "x" 1.5 }}"#),
        "5% \"x\" 1.50"
    );
    assert_eq!(r("{{/* a comment */}}x"), "x");
    assert_eq!(r("a  {{- 1 -}}  b"), "a1b");
    assert_eq!(r("{{ print 1 2 \"s\" 3 }}"), "1 2s3");
}

#[test]
fn with_range_if_and_variables() {
    let src = r#"{{ with creds }}{{ .user }}:{{ .pass }}{{ end }}"#;
    assert_eq!(r(src), "app:s3cret");
    assert_eq!(r(r#"{{ with creds }}{{ .user.Value }}{{ end }}"#), "app");
    let src = r#"{{ range $k, $v := creds }}{{ $k }}={{ $v }};{{ end }}"#;
    assert_eq!(r(src), "pass=s3cret;user=app;");
    let d = data();
    let t = |src: &str| {
        Template::parse(src, "", "")
            .and_then(|t| t.render(&d, &Env, MissingKey::Default))
            .unwrap_or_else(|e| format!("ERR {e}"))
    };
    assert_eq!(t("{{ .Name }} {{ .Nested.Deep.Leaf }}"), "web ok");
    assert_eq!(t("{{ range .Tags }}[{{ . }}]{{ end }}"), "[a][b]");
    assert_eq!(
        t("{{ range $i, $t := .Tags }}{{ $i }}{{ $t }}{{ end }}"),
        "0a1b"
    );
    assert_eq!(t("{{ range .Empty }}x{{ else }}none{{ end }}"), "none");
    assert_eq!(
        t("{{ if gt .Count 5 }}big{{ else if eq .Count 3 }}three{{ else }}small{{ end }}"),
        "three"
    );
    assert_eq!(t("{{ if and .On (not .Empty) }}yes{{ end }}"), "yes");
    assert_eq!(
        t("{{ $n := .Name }}{{ range .Tags }}{{ $n }}{{ end }}"),
        "webweb"
    );
    assert_eq!(
        t("{{ index .Meta \"y\" }} {{ index .Tags 1 }} {{ len .Tags }}"),
        "2 b 2"
    );
    assert_eq!(t("{{ range .Tags }}{{ $.Name }}{{ end }}"), "webweb");
    assert_eq!(t("{{ .Missing }}"), "<no value>");
    assert_eq!(t("{{ (index .Nested \"Deep\").Leaf }}"), "ok");
}

#[test]
fn delimiters_and_errors() {
    let t = Template::parse("[[ env \"NOMAD_TASK_NAME\" ]] {{ kept }}", "[[", "]]").unwrap();
    assert_eq!(
        t.render(&Value::Nil, &Env, MissingKey::Default).unwrap(),
        "web {{ kept }}"
    );
    assert!(r("{{ nope }}").contains("function \"nope\" not defined"));
    assert!(r("{{ if 1 }}x").contains("unexpected EOF"));
    assert!(r("{{ end }}").contains("unexpected {{end}}"));
    assert!(
        r("{{ \"unterminated }}").contains("unclosed action")
            || r("{{ \"unterminated }}").contains("unterminated")
    );
    let strict = Template::parse("{{ .Missing }}", "", "")
        .unwrap()
        .render(&data(), &Env, MissingKey::Error)
        .unwrap_err();
    assert_eq!(strict, "map has no entry for key \"Missing\"");
}
